//! A late joiner pages back through history held on another gateway, and sees exactly what
//! history visibility allows it.

use super::*;

/// Every message body `user` reads paging `/messages` backwards `limit` at a time, oldest
/// first, and the number of pages it took.
async fn page_back(
    net: &Net,
    i: usize,
    token: &str,
    room: &OwnedRoomId,
    limit: usize,
) -> (Vec<String>, usize) {
    let mut bodies = Vec::new();
    let mut from: Option<String> = None;
    let mut pages = 0;
    for _ in 0..500 {
        let mut uri = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit={limit}",
            enc(room.as_str())
        );
        if let Some(f) = &from {
            uri.push_str(&format!("&from={f}"));
        }
        let page = net.ok(i, Method::GET, &uri, token, None).await;
        pages += 1;
        for e in page["chunk"].as_array().cloned().unwrap_or_default() {
            if e["type"] == "m.room.message" {
                bodies.push(e["content"]["body"].as_str().unwrap_or("?").to_owned());
            }
        }
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    bodies.reverse();
    (bodies, pages)
}

async fn send_all(net: &Net, i: usize, token: &str, room: &OwnedRoomId, texts: &[String]) {
    for t in texts {
        net.send(i, token, room, t).await;
    }
}

fn texts(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

async fn set_visibility(net: &Net, token: &str, room: &OwnedRoomId, v: &str) {
    net.ok(
        0,
        Method::PUT,
        &room_path(room, "state/m.room.history_visibility/"),
        token,
        Some(json!({ "history_visibility": v })),
    )
    .await;
}

/// Bob of gateway B joins `room` (held on A) and waits until A knows.
async fn bob_joins(net: &Net, bob: &UserId, bt: &str, room: &OwnedRoomId) {
    net.join_and_wait(1, bob, bt, room).await;
}

#[tokio::test]
async fn a_late_joiner_pages_back_through_shared_history() {
    let net = Net::new(2);
    let (_alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let room = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;
    let before = texts("old", 500);
    send_all(&net, 0, &at, &room, &before).await;
    bob_joins(&net, &bob, &bt, &room).await;
    let after = texts("new", 3);
    send_all(&net, 0, &at, &room, &after).await;
    until_async("new messages on B", || async {
        net.bodies(1, &bt, &room).await.len() >= 3
    })
    .await;

    let (seen, pages) = page_back(&net, 1, &bt, &room, 40).await;
    let mut want = before.clone();
    want.extend(after.iter().cloned());
    assert_eq!(seen, want, "every message once, in order");
    assert!(pages > 10, "paged in pages of 40, took {pages}");
    // The room's creation is part of the history too.
    let (status, page) = net
        .call(
            1,
            Method::GET,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000&from=b0",
                enc(room.as_str())
            ),
            &bt,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = page["chunk"]
        .as_array()
        .map(|c| c.iter().filter_map(|e| e["type"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kinds.last(), Some(&"m.room.create"), "{kinds:?}");
    // Paging again reads what is stored: no second fetch.
    let asked = net.nodes[0].stats.messages_in();
    let (again, _) = page_back(&net, 1, &bt, &room, 100).await;
    assert_eq!(again, want);
    assert_eq!(
        net.nodes[0].stats.messages_in(),
        asked,
        "served from the store"
    );
}

#[tokio::test]
async fn history_visibility_decides_what_a_late_joiner_reads() {
    let net = Net::new(2);
    let (_alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let room = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;

    // shared, then joined, then invited (bob is invited), then bob joins.
    let shared = texts("shared", 10);
    send_all(&net, 0, &at, &room, &shared).await;
    set_visibility(&net, &at, &room, "joined").await;
    let joined_era = texts("joined", 10);
    send_all(&net, 0, &at, &room, &joined_era).await;
    set_visibility(&net, &at, &room, "invited").await;
    let before_invite = texts("uninvited", 5);
    send_all(&net, 0, &at, &room, &before_invite).await;
    net.ok(
        0,
        Method::POST,
        &room_path(&room, "invite"),
        &at,
        Some(json!({ "user_id": bob })),
    )
    .await;
    let invited = texts("invited", 5);
    send_all(&net, 0, &at, &room, &invited).await;
    bob_joins(&net, &bob, &bt, &room).await;

    let (seen, _) = page_back(&net, 1, &bt, &room, 7).await;
    let mut want = shared.clone();
    want.extend(invited.iter().cloned());
    assert_eq!(
        seen, want,
        "shared history and what came after the invite, nothing from the joined era or before the invite"
    );
}

#[tokio::test]
async fn a_page_does_not_wait_for_a_peer_that_is_gone() {
    let net = Net::new(2);
    let (_alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let room = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;
    send_all(&net, 0, &at, &room, &texts("old", 20)).await;
    bob_joins(&net, &bob, &bt, &room).await;
    // A goes away: B's client still gets its page (its own events, no history, no end).
    net.hub.set_online(net.name(0), false);
    let (status, page) = net
        .call(
            1,
            Method::GET,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
                enc(room.as_str())
            ),
            &bt,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page["chunk"]
            .as_array()
            .is_some_and(|c| c.iter().all(|e| e["type"] != "m.room.message")),
        "{page}"
    );
    // Back online, the same request reads the history.
    net.hub.set_online(net.name(0), true);
    let (seen, _) = page_back(&net, 1, &bt, &room, 50).await;
    assert_eq!(seen, texts("old", 20));
}

#[tokio::test]
async fn garbage_history_answers_are_refused_and_counted() {
    use crate::peering::{backfill::accept, catchup::PeeringOptions};
    let net = Net::new(2);
    let (alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let room = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;
    let other = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;
    net.send(0, &at, &other, "elsewhere").await;
    bob_joins(&net, &bob, &bt, &room).await;
    let a = &net.nodes[0].gw.rooms;
    let (_, stray) = a
        .get_pdu(&a.heads(&other).expect("heads")[0])
        .expect("read")
        .expect("event");
    let peer = crate::peering::start(
        net.nodes[1].gw.clone(),
        net.hub
            .attach(&ServerName::parse("probe.example").expect("name"))
            .0,
        PeeringOptions::default(),
    );
    let from = net.name(0).to_owned();
    let pdus = vec![stray.json.clone()];
    // Reader lists that do not line up with the events.
    assert!(accept(&peer, &from, &room, pdus.clone(), vec![], vec![], vec![]).is_none());
    // Readers that are not this gateway's users.
    assert!(accept(
        &peer,
        &from,
        &room,
        pdus.clone(),
        vec![],
        vec![alice.clone()],
        vec![vec![0]]
    )
    .is_none());
    // An event of another room: dropped and counted, nothing accepted.
    let (_, events) = accept(
        &peer,
        &from,
        &room,
        pdus,
        vec![],
        vec![bob.clone()],
        vec![vec![0]],
    )
    .expect("ok");
    assert!(events.is_empty());
    assert_eq!(
        peer.stats.drops().values().sum::<u64>(),
        1,
        "{:?}",
        peer.stats.drops()
    );
}
