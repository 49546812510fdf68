//! Catching up beyond the mailbox, and what a peer may read of history it asks for.

use super::*;
use crate::peering::{catchup::PeeringOptions, Peer};

fn fast_catchup() -> PeeringOptions {
    PeeringOptions {
        catchup_first: Duration::from_millis(20),
        catchup_every: Duration::from_millis(100),
        ..PeeringOptions::default()
    }
}

async fn join(net: &Net, i: usize, token: &str, room: &OwnedRoomId) {
    net.ok(
        i,
        Method::POST,
        &format!("/_matrix/client/v3/join/{}", enc(room.as_str())),
        token,
        Some(json!({})),
    )
    .await;
}

async fn set_topic(net: &Net, i: usize, token: &str, room: &OwnedRoomId, topic: &str) {
    net.ok(
        i,
        Method::PUT,
        &room_path(room, "state/m.room.topic/"),
        token,
        Some(json!({ "topic": topic })),
    )
    .await;
}

fn topic(net: &Net, i: usize, room: &OwnedRoomId) -> Value {
    net.nodes[i]
        .gw
        .rooms
        .state_content(room, "m.room.topic", "")
        .ok()
        .flatten()
        .map(|c| c["topic"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_gateway_whose_mail_expired_catches_up_from_its_peers() {
    let net = Net::with_options(3, fast_catchup());
    let (_alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let (carol, ct) = net.user(2, "carol").await;
    let room = create_room(
        &net,
        0,
        &at,
        json!({
            "preset": "public_chat",
            "power_level_content_override": {"events": {"m.room.topic": 0}}
        }),
    )
    .await;
    join(&net, 1, &bt, &room).await;
    join(&net, 2, &ct, &room).await;
    until("both joined on every gateway", || {
        (0..3).all(|i| {
            net.membership(i, &room, &bob).as_deref() == Some("join")
                && net.membership(i, &room, &carol).as_deref() == Some("join")
        })
    })
    .await;

    // C goes down; the room moves on: 150 messages, a topic from B, 100 more messages.
    net.hub.set_online(net.name(2), false);
    let sent: Vec<String> = (0..250).map(|i| format!("m{i}")).collect();
    for text in &sent[..150] {
        net.send(0, &at, &room, text).await;
    }
    set_topic(&net, 1, &bt, &room, "while C was away").await;
    until("topic on A", || topic(&net, 0, &room) == "while C was away").await;
    for text in &sent[150..] {
        net.send(0, &at, &room, text).await;
    }
    // C's mailbox outlives its time to live: everything sent to C while it was down is gone.
    until("A and B sent everything", || {
        net.hub.pending(net.name(2)) >= 3
    })
    .await;
    assert!(net.hub.expire_mail(net.name(2)) > 0, "mail was waiting");
    assert_eq!(net.hub.pending(net.name(2)), 0);

    // Back online, C asks its peers for their extremities and fills the gap in pages.
    net.hub.set_online(net.name(2), true);
    until_async("all 250 on C", || async {
        net.bodies(2, &ct, &room).await.len() >= 250
    })
    .await;
    assert_eq!(net.bodies(2, &ct, &room).await, sent, "in order, once");
    until("topic on C", || topic(&net, 2, &room) == "while C was away").await;
    assert_eq!(net.state_of(2, &room), net.state_of(0, &room));
    assert_eq!(
        net.nodes[2].stats.drops_of("gap_accepted"),
        0,
        "no gap left"
    );
}

/// A peer handle for gateway `i` alone (its own counters), to ask another gateway directly.
fn probe(net: &Net, i: usize) -> Arc<Peer> {
    let name = ServerName::parse(format!("probe{i}.example")).expect("name");
    let (link, _inbox) = net.hub.attach(&name);
    crate::peering::start(net.nodes[i].gw.clone(), link, PeeringOptions::default())
}

/// Message bodies in a `MissingEvents` answer, `None` for a message whose content was withheld.
async fn bodies_served(net: &Net, asker: usize, room: &OwnedRoomId) -> Vec<Option<String>> {
    let answer = probe(net, asker)
        .ask(
            net.name(0),
            Body::MissingEvents {
                room_id: room.clone(),
                earliest: vec![],
                latest: net.nodes[0].gw.rooms.heads(room).expect("heads"),
                limit: 100,
            },
        )
        .await
        .expect("answered");
    let Body::Events { pdus } = answer else {
        panic!("not events: {answer:?}")
    };
    pdus.iter()
        .map(|p| serde_json::from_str::<Value>(p.get()).expect("json"))
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn history_a_gateway_may_not_read_is_served_redacted() {
    let net = Net::new(4);
    let (_alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let (carol, ct) = net.user(2, "carol").await;
    let room = create_room(
        &net,
        0,
        &at,
        json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": {"history_visibility": "joined"}
            }]
        }),
    )
    .await;
    join(&net, 1, &bt, &room).await;
    until("B joined on A", || {
        net.membership(0, &room, &bob).as_deref() == Some("join")
    })
    .await;
    net.send(0, &at, &room, "before carol").await;
    join(&net, 2, &ct, &room).await;
    until("C joined on A", || {
        net.membership(0, &room, &carol).as_deref() == Some("join")
    })
    .await;
    net.send(0, &at, &room, "after carol").await;
    net.send(0, &at, &room, "last").await;

    // B's user was joined for both: B gets both whole.
    assert_eq!(
        bodies_served(&net, 1, &room).await,
        vec![Some("before carol".into()), Some("after carol".into())]
    );
    // C's user joined in between: the earlier message reaches C without its content.
    assert_eq!(
        bodies_served(&net, 2, &room).await,
        vec![None, Some("after carol".into())]
    );
    // A gateway with nobody in the room is refused.
    let refused = probe(&net, 3)
        .ask(
            net.name(0),
            Body::RoomHeads {
                room_id: room.clone(),
            },
        )
        .await;
    assert!(
        matches!(&refused, Err(crate::peering::AskError::Refused { errcode, .. }) if errcode == "M_FORBIDDEN"),
        "{refused:?}"
    );
}
