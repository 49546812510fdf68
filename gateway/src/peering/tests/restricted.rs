//! Joining a restricted room held on another gateway: the resident vouches for a user who is
//! in an allowed room and co-signs the join; anyone else is refused.

use super::*;
use crate::service::rooms::membership::AUTHORISED_VIA;

async fn join(net: &Net, i: usize, token: &str, room: &OwnedRoomId) -> (StatusCode, Value) {
    net.call(
        i,
        Method::POST,
        &format!("/_matrix/client/v3/join/{}", enc(room.as_str())),
        token,
        Some(json!({})),
    )
    .await
}

#[tokio::test]
async fn a_restricted_room_admits_members_of_allowed_rooms_across_gateways() {
    let net = Net::new(3);
    let (alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let (carol, ct) = net.user(2, "carol").await;
    let space = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;
    let room = create_room(
        &net,
        0,
        &at,
        json!({
            "preset": "private_chat",
            "initial_state": [{
                "type": "m.room.join_rules", "state_key": "",
                "content": {"join_rule": "restricted",
                            "allow": [{"type": "m.room_membership", "room_id": space}]}
            }]
        }),
    )
    .await;

    // Carol is in no allowed room: refused, and nothing is stored for her.
    let (status, body) = join(&net, 2, &ct, &room).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(net.membership(0, &room, &carol), None);

    // Nor can her gateway vouch for her in alice's name: without A's signature the join
    // does not verify, and it is dropped and counted.
    let forged = {
        let a = &net.nodes[0].gw.rooms;
        let state = |t: &str, k: &str| {
            a.state_entry(&room, t, k)
                .expect("read")
                .expect("state")
                .event_id
        };
        let mut object: ruma::CanonicalJsonObject = serde_json::from_value(json!({
            "room_id": room, "sender": carol, "state_key": carol, "type": "m.room.member",
            "origin_server_ts": 1, "depth": 50,
            "content": {"membership": "join", AUTHORISED_VIA: alice},
            "prev_events": a.heads(&room).expect("heads"),
            "auth_events": [state("m.room.create", ""), state("m.room.power_levels", ""),
                            state("m.room.join_rules", ""), state("m.room.member", alice.as_str())],
        }))
        .expect("object");
        let gw2 = &net.nodes[2].gw;
        ruma::signatures::hash_and_sign_event(
            gw2.server_name().as_str(),
            gw2.identity.keypair(),
            &mut object,
            &crate::service::rooms::rules_for(&ruma::RoomVersionId::V10)
                .expect("rules")
                .redaction,
        )
        .expect("sign");
        serde_json::value::to_raw_value(&object).expect("raw")
    };
    // It comes the only way a gateway not in the room can bring an event: beside a room key,
    // under Olm, as the event that would make it a member.
    let before = net.nodes[0].stats.drops_of("signature");
    share_key_from(&net, 2, 0, &room, Some(forged)).await;
    until("forged join dropped", || {
        net.nodes[0].stats.drops_of("signature") > before
            && net.nodes[0].stats.drops_of("key_share_not_in_room") >= 1
    })
    .await;
    assert_eq!(net.membership(0, &room, &carol), None);

    // Bob joins the allowed room, then the restricted one, vouched for by alice.
    assert_eq!(join(&net, 1, &bt, &space).await.0, StatusCode::OK);
    until("bob in the space on A", || {
        net.membership(0, &space, &bob).as_deref() == Some("join")
    })
    .await;
    let (status, body) = join(&net, 1, &bt, &room).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until("bob in the room on A", || {
        net.membership(0, &room, &bob).as_deref() == Some("join")
    })
    .await;
    assert_eq!(net.membership(1, &room, &bob).as_deref(), Some("join"));
    let entry = net.nodes[1]
        .gw
        .rooms
        .state_entry(&room, "m.room.member", bob.as_str())
        .expect("read")
        .expect("bob's join");
    let (pdu, stored) = net.nodes[1]
        .gw
        .rooms
        .get_pdu(&entry.event_id)
        .expect("read")
        .expect("stored");
    assert_eq!(pdu.content_value()[AUTHORISED_VIA], json!(alice));
    let signed: Value = serde_json::from_str(stored.json.get()).expect("json");
    assert!(
        signed["signatures"][net.name(0).as_str()].is_object()
            && signed["signatures"][net.name(1).as_str()].is_object(),
        "signed by both gateways: {}",
        signed["signatures"]
    );
    // They chat.
    net.send(1, &bt, &room, "thanks for letting me in").await;
    until_async("message on A", || async {
        net.bodies(0, &at, &room).await == ["thanks for letting me in"]
    })
    .await;
}
