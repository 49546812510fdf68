//! An admin deletes a room shared with another gateway: that gateway sees the local members
//! leave (the leaves go out before the purge removes them), nothing of the room is left on
//! the deleting gateway (group keys included), and a blocked room cannot be joined again
//! through the other gateway.

use super::*;
use crate::service::admin::users::{upsert, UserChange};

#[tokio::test]
async fn an_admin_deletes_a_shared_room_the_other_gateway_sees_the_leaves() {
    let net = Net::new(2);
    let (root, rt) = net.user(0, "root").await;
    upsert(
        &net.nodes[0].gw,
        &root,
        UserChange {
            admin: Some(true),
            ..Default::default()
        },
    )
    .await
    .expect("make root an admin");
    let (alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let room = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;
    let join = format!("/_matrix/client/v3/join/{}", enc(room.as_str()));
    net.ok(1, Method::POST, &join, &bt, Some(json!({}))).await;
    until("bob joined on A", || {
        net.membership(0, &room, &bob).as_deref() == Some("join")
    })
    .await;

    let result = net
        .ok(
            0,
            Method::DELETE,
            &format!("/_synapse/admin/v1/rooms/{}", enc(room.as_str())),
            &rt,
            Some(json!({"block": true})),
        )
        .await;
    assert_eq!(result["kicked_users"], json!([alice]), "{result}");
    assert!(net.nodes[0].gw.rooms.meta(&room).expect("read").is_none());
    until("alice's leave reached B", || {
        net.membership(1, &room, &alice).as_deref() == Some("leave")
    })
    .await;
    assert_eq!(net.membership(1, &room, &bob).as_deref(), Some("join"));
    let needle = room.as_str().as_bytes();
    let left: Vec<String> = net.nodes[0]
        .gw
        .db
        .dump()
        .expect("dump")
        .into_iter()
        .filter(|(k, v)| {
            [k, v]
                .iter()
                .any(|b| b.windows(needle.len()).any(|w| w == needle))
        })
        .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
        .collect();
    assert_eq!(
        left,
        vec![format!("blocked_rooms\0{room}")],
        "only the block is left on A"
    );

    // The room lives on at B; A's users cannot get back in through B.
    let (status, body) = net.call(0, Method::POST, &join, &at, Some(json!({}))).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
        "{body}"
    );
    assert_eq!(net.membership(1, &room, &alice).as_deref(), Some("leave"));
}
