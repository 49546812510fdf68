//! Relations across gateways: an edit and a thread reply sent on one gateway are bundled on
//! the other, which computes them from the events peering stored in its timeline.

use super::*;

#[tokio::test]
async fn remote_edits_and_thread_replies_are_bundled() {
    let net = Net::new(2);
    let (_alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let room = create_room(&net, 0, &at, json!({ "preset": "public_chat" })).await;
    net.join_and_wait(1, &bob, &bt, &room).await;

    let root = net.send(0, &at, &room, "typo").await;
    let send_raw = |content: Value, token: String| {
        let net = &net;
        let room = room.clone();
        async move {
            let txn = crate::service::users::random_string(10);
            net.ok(
                1,
                Method::PUT,
                &room_path(&room, &format!("send/m.room.message/{txn}")),
                &token,
                Some(content),
            )
            .await["event_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    // Bob (gateway B) answers in a thread; his edit of Alice's message is no valid edit.
    let reply = send_raw(
        json!({ "msgtype": "m.text", "body": "in thread",
                "m.relates_to": { "rel_type": "m.thread", "event_id": root } }),
        bt.clone(),
    )
    .await;
    send_raw(
        json!({ "msgtype": "m.text", "body": "* hijack",
                "m.new_content": { "msgtype": "m.text", "body": "hijack" },
                "m.relates_to": { "rel_type": "m.replace", "event_id": root } }),
        bt.clone(),
    )
    .await;
    let event_path = room_path(&room, &format!("event/{}", enc(&root)));
    until_async("the thread reply bundled on A", || async {
        let ev = net.ok(0, Method::GET, &event_path, &at, None).await;
        ev["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"] == reply.as_str()
    })
    .await;
    let ev = net.ok(0, Method::GET, &event_path, &at, None).await;
    assert!(
        ev["unsigned"]["m.relations"].get("m.replace").is_none(),
        "another user's edit is not bundled: {ev}"
    );
    // Bob's gateway bundles the thread on Alice's (remote) root the same way.
    let ev = net.ok(1, Method::GET, &event_path, &bt, None).await;
    assert_eq!(
        ev["unsigned"]["m.relations"]["m.thread"]["count"], 1,
        "{ev}"
    );
    assert_eq!(
        ev["unsigned"]["m.relations"]["m.thread"]["current_user_participated"],
        true
    );
}
