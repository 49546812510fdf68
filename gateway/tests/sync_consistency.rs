//! /sync under concurrent sends: every acknowledged event is delivered exactly once, in order.

use std::{collections::HashSet, time::Duration};

use gateway::{
    config::GatewayConfig,
    service::{caller::Caller, rooms::CreateRoom, sync, Gateway},
};
use ruma::{OwnedUserId, UserId};
use serde_json::json;

fn user(gw: &Gateway, name: &str) -> OwnedUserId {
    UserId::parse(format!("@{name}:{}", gw.server_name())).expect("user id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_are_synced_exactly_once() {
    let gw = Gateway::open(GatewayConfig {
        memory_only: true,
        ..Default::default()
    })
    .expect("open");
    let alice = user(&gw, "alice");
    let bob = user(&gw, "bob");
    gw.users.create(&alice, None).await.expect("alice");
    gw.users.create(&bob, None).await.expect("bob");
    let room = gw
        .rooms
        .create(
            &alice,
            CreateRoom {
                preset: "public_chat".into(),
                ..Default::default()
            },
        )
        .await
        .expect("room");
    gw.rooms
        .write(&room, None, |t| {
            t.append(
                &bob,
                "m.room.member",
                Some(bob.as_str()),
                json!({"membership": "join"}),
                None,
            )
        })
        .await
        .expect("join");

    // Initial sync first: every message below is sent after its token.
    let caller = Caller {
        user_id: bob.clone(),
        device_id: "BOBDEVICE".into(),
        appservice: None,
    };
    let first = sync::sync(&gw, &caller, sync::SyncRequest::default())
        .await
        .expect("initial sync");
    let mut since: u64 = first["next_batch"]
        .as_str()
        .expect("token")
        .parse()
        .expect("number");

    const SENDERS: usize = 8;
    const PER_SENDER: usize = 40;
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let gw = gw.clone();
        let (room, alice) = (room.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..PER_SENDER {
                let content = json!({"msgtype": "m.text", "body": format!("{s}-{i}")});
                let (pdu, _) = gw
                    .rooms
                    .write(&room, None, |t| {
                        t.append(&alice, "m.room.message", None, content, None)
                    })
                    .await
                    .expect("send");
                ids.push(pdu.event_id.to_string());
                tokio::task::yield_now().await;
            }
            ids
        }));
    }

    let mut seen = Vec::new();
    let mut seen_set = HashSet::new();
    let mut syncs = 0;
    while seen.len() < SENDERS * PER_SENDER && syncs < 10_000 {
        syncs += 1;
        let body = sync::sync(
            &gw,
            &caller,
            sync::SyncRequest {
                since: Some(since),
                timeout: Duration::from_millis(500),
                // Small pages force `limited` responses; the gap is paged with /messages
                // semantics below, as a client would.
                filter: Some(json!({"room": {"timeline": {"limit": 5}}})),
                ..Default::default()
            },
        )
        .await
        .expect("sync");
        let next: u64 = body["next_batch"]
            .as_str()
            .expect("token")
            .parse()
            .expect("number");
        assert!(next >= since, "tokens never go backwards");
        if let Some(r) = body["rooms"]["join"].get(room.as_str()) {
            let mut page: Vec<String> = Vec::new();
            if r["timeline"]["limited"] == json!(true) {
                // Fill the gap (since, prev_batch] from the timeline, oldest first.
                let prev: u64 = r["timeline"]["prev_batch"]
                    .as_str()
                    .expect("prev")
                    .parse()
                    .expect("num");
                let mut gap: Vec<_> = gw
                    .rooms
                    .timeline(&room, prev, true, 10_000)
                    .expect("timeline")
                    .into_iter()
                    .filter(|(pos, _)| *pos > since)
                    .map(|(_, id)| id.to_string())
                    .collect();
                gap.reverse();
                page.extend(gap);
            }
            for ev in r["timeline"]["events"].as_array().expect("events") {
                page.push(ev["event_id"].as_str().expect("id").to_owned());
            }
            for id in page {
                assert!(seen_set.insert(id.clone()), "event {id} delivered twice");
                seen.push(id);
            }
        }
        since = next;
    }
    let mut sent = HashSet::new();
    for t in tasks {
        sent.extend(t.await.expect("sender"));
    }
    assert_eq!(sent.len(), SENDERS * PER_SENDER);
    assert_eq!(
        seen_set, sent,
        "sync delivered a different set of events than was sent"
    );
    assert!(syncs > 1, "the test must interleave syncs with sends");
    // Order: positions of delivered events increase.
    let positions: Vec<u64> = seen
        .iter()
        .filter_map(|id| ruma::EventId::parse(id).ok())
        .filter_map(|id| gw.rooms.get_pdu(&id).ok().flatten().map(|(_, s)| s.pos))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "events delivered out of order"
    );
}
