//! Group keys across gateways: members on three gateways read each other under epochs; a
//! kicked gateway holds ciphertext it cannot read; a joiner under `joined` visibility cannot
//! decrypt what came before; replays are refused; a lost Olm session recovers; and after the
//! retention window nothing captured decrypts with everything a gateway stores.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use super::*;
use crate::{
    peering::{groupkeys::megolm::decrypt_with_every_held_session, KeyPolicy},
    service::clock::Clock,
};

/// Every message `name` received on the hub, decoded (its envelope's body).
fn received_by(net: &Net, i: usize) -> Vec<(Vec<u8>, Body)> {
    let me = net.name(i);
    net.hub
        .recorded()
        .into_iter()
        .filter_map(|bytes| {
            let envelope = wire::decode(me, &bytes).ok()?;
            Some((bytes, envelope.body))
        })
        .collect()
}

/// The sealed messages gateway `i` received, as `(session id, ciphertext)`.
fn sealed_for(net: &Net, i: usize) -> Vec<(String, String)> {
    received_by(net, i)
        .into_iter()
        .filter_map(|(_, body)| match body {
            Body::Sealed {
                session_id,
                ciphertext,
            } => Some((session_id, ciphertext)),
            _ => None,
        })
        .collect()
}

async fn three_in_a_room(net: &Net, preset: Value) -> (Vec<(OwnedUserId, String)>, OwnedRoomId) {
    let users = vec![
        net.user(0, "alice").await,
        net.user(1, "bob").await,
        net.user(2, "carol").await,
    ];
    let room = create_room(net, 0, &users[0].1, preset).await;
    for (i, (user, token)) in users.iter().enumerate().skip(1) {
        net.join_and_wait(i, user, token, &room).await;
    }
    (users, room)
}

async fn sees(net: &Net, i: usize, token: &str, room: &OwnedRoomId, text: &str) {
    until_async(&format!("gateway {i} shows {text:?}"), || async {
        net.bodies(i, token, room).await.iter().any(|b| b == text)
    })
    .await;
}

#[tokio::test]
async fn members_on_three_gateways_read_each_other_and_the_wire_holds_no_plaintext() {
    let net = Net::new(3);
    net.hub.record();
    let (users, room) = three_in_a_room(&net, json!({"preset": "public_chat"})).await;
    let texts = [
        "alpaca words from A",
        "bison words from B",
        "cougar words from C",
    ];
    for (i, text) in texts.iter().enumerate() {
        net.send(i, &users[i].1, &room, text).await;
    }
    for (i, (_, token)) in users.iter().enumerate() {
        for text in texts {
            sees(&net, i, token, &room, text).await;
        }
    }
    // Each gateway holds an epoch of each of the other two for the room.
    for i in 0..3 {
        let epochs = net.nodes[i]
            .peer
            .keys
            .received_epochs()
            .await
            .expect("epochs");
        let rooms: Vec<_> = epochs.iter().filter(|e| e.1 == room).collect();
        assert!(rooms.len() >= 2, "gateway {i} holds {rooms:?}");
    }
    // Nothing that crossed the hub shows a message, and room traffic never goes in the clear.
    for bytes in net.hub.recorded() {
        let text = String::from_utf8_lossy(&bytes);
        for t in texts {
            assert!(!text.contains(t), "plaintext on the wire");
        }
        for i in 0..3 {
            if let Ok(e) = wire::decode(net.name(i), &bytes) {
                let json = serde_json::to_string(&e).expect("json");
                for t in texts {
                    assert!(!json.contains(t), "plaintext inside an envelope: {json}");
                }
                assert!(
                    !matches!(e.body, Body::Txn { .. } | Body::Invite { .. }),
                    "unsealed room traffic"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_kicked_gateway_holds_ciphertext_it_cannot_read() {
    let net = Net::with_keys(
        3,
        Default::default(),
        KeyPolicy {
            ask_after_secs: 1,
            ..KeyPolicy::default()
        },
    );
    net.hub.record();
    let (users, room) = three_in_a_room(&net, json!({"preset": "public_chat"})).await;
    net.send(0, &users[0].1, &room, "before the kick").await;
    sees(&net, 1, &users[1].1, &room, "before the kick").await;
    let epoch_before = net.nodes[0]
        .peer
        .keys
        .current_epoch(&room)
        .await
        .expect("epoch");
    net.ok(
        0,
        Method::POST,
        &format!("/_matrix/client/v3/rooms/{}/kick", enc(room.as_str())),
        &users[0].1,
        Some(json!({"user_id": users[1].0})),
    )
    .await;
    until("bob kicked on B", || {
        net.membership(1, &room, &users[1].0).as_deref() == Some("leave")
    })
    .await;
    net.send(0, &users[0].1, &room, "after the kick").await;
    sees(&net, 2, &users[2].1, &room, "after the kick").await;
    let epoch_after = net.nodes[0]
        .peer
        .keys
        .current_epoch(&room)
        .await
        .expect("epoch");
    assert_ne!(epoch_before, epoch_after, "the kick started a new epoch");
    assert!(net.nodes[0].stats.noted("rotated_reader_left") >= 1);

    // What C received under the new epoch reaches B too (as a seized provider or a relay
    // could hand it over), signed by A: B holds it and cannot read it.
    let after = epoch_after.expect("an epoch");
    let captured: Vec<_> = sealed_for(&net, 2)
        .into_iter()
        .filter(|(s, _)| *s == after)
        .collect();
    assert!(
        !captured.is_empty(),
        "C received the new epoch's ciphertext"
    );
    for (session_id, ciphertext) in &captured {
        net.nodes[0]
            .peer
            .send(
                net.name(1),
                Body::Sealed {
                    session_id: session_id.clone(),
                    ciphertext: ciphertext.clone(),
                },
            )
            .await
            .expect("send");
    }
    until_async("B holds it, asks for its key and is refused", || async {
        net.nodes[1].stats.noted("held_for_key") >= 1
            && net.nodes[0].stats.drops_of("key_not_entitled") >= 1
    })
    .await;
    let b_keys = &net.nodes[1].peer.keys;
    assert!(
        b_keys.held_count().await.expect("held") >= 1,
        "B holds the ciphertext"
    );
    for (_, ciphertext) in &captured {
        assert!(!decrypt_with_every_held_session(b_keys, ciphertext).expect("try"));
    }
    assert!(!net
        .bodies(1, &users[1].1, &room)
        .await
        .iter()
        .any(|b| b == "after the kick"));
}

#[tokio::test]
async fn a_joiner_cannot_decrypt_what_came_before_and_reads_shared_history_by_scrollback() {
    for visibility in ["joined", "shared"] {
        let net = Net::new(3);
        net.hub.record();
        let users = [
            net.user(0, "alice").await,
            net.user(1, "bob").await,
            net.user(2, "carol").await,
        ];
        let room = create_room(
            &net,
            0,
            &users[0].1,
            json!({"preset": "public_chat", "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": {"history_visibility": visibility}}]}),
        )
        .await;
        net.join_and_wait(1, &users[1].0, &users[1].1, &room).await;
        net.send(0, &users[0].1, &room, "said before carol came")
            .await;
        sees(&net, 1, &users[1].1, &room, "said before carol came").await;
        let captured = sealed_for(&net, 1);
        net.join_and_wait(2, &users[2].0, &users[2].1, &room).await;
        net.send(0, &users[0].1, &room, "said after carol came")
            .await;
        sees(&net, 2, &users[2].1, &room, "said after carol came").await;
        // Carol's gateway holds keys now, and none opens what was sent before she came.
        let c_keys = &net.nodes[2].peer.keys;
        assert!(!c_keys.received_epochs().await.expect("epochs").is_empty());
        for (_, ciphertext) in &captured {
            assert!(
                !decrypt_with_every_held_session(c_keys, ciphertext).expect("try"),
                "{visibility}: an earlier ciphertext opened"
            );
        }
        let before_shown = net
            .bodies(2, &users[2].1, &room)
            .await
            .iter()
            .any(|b| b == "said before carol came");
        match visibility {
            "joined" => {
                assert!(net.nodes[0].stats.noted("rotated_joiner") >= 1);
                assert!(!before_shown, "joined: the past stays hidden");
            }
            _ => {
                // Shared: the past is read through scrollback (re-served to the joiner under
                // a key used once), not through old keys.
                if !before_shown {
                    sees(&net, 2, &users[2].1, &room, "said before carol came").await;
                }
            }
        }
    }
}

#[tokio::test]
async fn a_replayed_sealed_message_is_refused() {
    let net = Net::new(2);
    net.hub.record();
    let (alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let room = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;
    net.join_and_wait(1, &bob, &bt, &room).await;
    net.send(0, &at, &room, "only once").await;
    sees(&net, 1, &bt, &room, "only once").await;
    let _ = alice;
    let replay: Vec<Vec<u8>> = received_by(&net, 1)
        .into_iter()
        .filter(|(_, b)| matches!(b, Body::Sealed { .. }))
        .map(|(bytes, _)| bytes)
        .collect();
    assert!(!replay.is_empty());
    let (evil, _inbox) = net
        .hub
        .attach(&ServerName::parse("replayer.example").expect("name"));
    for bytes in &replay {
        evil.send(net.name(1), bytes.clone()).await.expect("send");
    }
    until("replays refused", || {
        net.nodes[1].stats.drops_of("megolm_replay") >= replay.len() as u64
    })
    .await;
    let shown = net.bodies(1, &bt, &room).await;
    assert_eq!(shown.iter().filter(|b| *b == "only once").count(), 1);
}

#[tokio::test]
async fn a_gateway_whose_olm_session_was_deleted_recovers() {
    let net = Net::with_keys(
        2,
        Default::default(),
        KeyPolicy {
            ask_after_secs: 1,
            ..KeyPolicy::default()
        },
    );
    let (_alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let room = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;
    net.join_and_wait(1, &bob, &bt, &room).await;
    net.send(0, &at, &room, "first epoch").await;
    sees(&net, 1, &bt, &room, "first epoch").await;
    // B loses its Olm sessions (a crash of its store, a restore from backup).
    net.nodes[1]
        .peer
        .keys
        .forget_olm_sessions(net.name(0))
        .await
        .expect("forget");
    // A new epoch: its key goes to B under A's old session, which B cannot open.
    set_visibility(&net, &at, &room, "invited").await;
    net.send(0, &at, &room, "second epoch").await;
    sees(&net, 1, &bt, &room, "second epoch").await;
    let (b, a) = (&net.nodes[1].stats, &net.nodes[0].stats);
    assert!(b.drops_of("olm_undecryptable") >= 1, "{:?}", b.drops());
    assert!(b.noted("key_recovered") >= 1, "{:?}", b.notes());
    until("A heard of the reset", || a.noted("olm_reset") >= 1).await;
    // The next epoch's key goes under a new session, without asking.
    let recovered = b.noted("key_recovered");
    set_visibility(&net, &at, &room, "shared").await;
    net.send(0, &at, &room, "third epoch").await;
    sees(&net, 1, &bt, &room, "third epoch").await;
    assert_eq!(b.noted("key_recovered"), recovered, "no request needed");
}

/// Sets the room's history visibility (a new epoch) as gateway 0's user.
async fn set_visibility(net: &Net, token: &str, room: &OwnedRoomId, visibility: &str) {
    net.ok(
        0,
        Method::PUT,
        &format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.history_visibility/",
            enc(room.as_str())
        ),
        token,
        Some(json!({ "history_visibility": visibility })),
    )
    .await;
}

/// A clock the test moves.
struct Hand(AtomicU64);

impl Clock for Hand {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[tokio::test]
async fn after_the_retention_window_nothing_captured_decrypts_with_the_whole_store() {
    let clock = Arc::new(Hand(AtomicU64::new(crate::service::users::now_ms())));
    let net = Net::with_options(
        2,
        crate::peering::PeeringOptions {
            clock: clock.clone(),
            ..Default::default()
        },
    );
    net.hub.record();
    let (_alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let room = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;
    net.join_and_wait(1, &bob, &bt, &room).await;
    for n in 0..5 {
        net.send(0, &at, &room, &format!("captured {n}")).await;
    }
    sees(&net, 1, &bt, &room, "captured 4").await;
    let captured = received_by(&net, 1);
    assert!(captured.iter().any(|(_, b)| matches!(b, Body::Olm { .. })));
    assert!(captured
        .iter()
        .any(|(_, b)| matches!(b, Body::Sealed { .. })));

    clock
        .0
        .fetch_add(KeyPolicy::default().retention_ms() + 1, Ordering::Relaxed);
    crate::peering::seal::expire(&net.nodes[1].peer).await;

    // Everything B stores: its store (the same database, every table) and its keys.
    let keys = &net.nodes[1].peer.keys;
    assert!(keys.received_epochs().await.expect("epochs").is_empty());
    assert!(keys.olm_peers().await.expect("peers").is_empty());
    let origin = net.name(0).to_owned();
    let mut tried = 0;
    for (_, body) in captured {
        match body {
            Body::Sealed { ciphertext, .. } => {
                assert!(!decrypt_with_every_held_session(keys, &ciphertext).expect("try"));
                tried += 1;
            }
            Body::Olm { message } => {
                assert!(keys.olm_decrypt(&origin, &message).await.is_err());
                tried += 1;
            }
            // Answers were encrypted to keys that lived only for one request, never stored.
            _ => {}
        }
    }
    assert!(tried >= 2, "{tried} captured messages tried");
}

#[tokio::test]
async fn a_flood_of_key_requests_is_refused_and_counted() {
    let net = Net::new(2);
    let (_alice, at) = net.user(0, "alice").await;
    let room = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;
    let name = ServerName::parse("flood.example").expect("name");
    let (link, _inbox) = net.hub.attach(&name);
    let asker = crate::peering::start(net.nodes[1].gw.clone(), link, Default::default());
    let mut limited = 0;
    for _ in 0..80 {
        let answer = asker
            .ask_within(
                net.name(0),
                Body::KeyRequest {
                    session_id: "nope".into(),
                },
                &[Duration::from_secs(2)],
            )
            .await;
        if let Err(crate::peering::AskError::Refused { errcode, .. }) = answer {
            if errcode == "M_LIMIT_EXCEEDED" {
                limited += 1;
            }
        }
    }
    assert!(limited >= 15, "{limited} limited");
    assert!(net.nodes[0].stats.drops_of("key_request_flood") >= 15);
    // The room is unaffected.
    net.send(0, &at, &room, "still here").await;
}
