//! Durability: history survives a restart, and a kill -9 during a burst of concurrent sends
//! loses nothing the gateway acknowledged.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use mixgate_tests::{http::enc, within, Http, TestGateway};
use serde_json::json;

/// Every `m.room.message` body in the room, oldest first, paging back from the end.
async fn all_bodies(http: &Http, room: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..1000 {
        let body = http
            .messages(room, from.as_deref(), "b", 100)
            .await
            .unwrap()
            .ok();
        let chunk = body["chunk"].as_array().cloned().unwrap_or_default();
        for e in &chunk {
            if e["type"] == "m.room.message" {
                out.push(e["content"]["body"].as_str().unwrap_or_default().to_owned());
            }
        }
        match body["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
            _ => {
                out.reverse();
                return out;
            }
        }
    }
    panic!("pagination did not end");
}

#[tokio::test]
async fn history_survives_restart() {
    let mut gw = TestGateway::start().await;
    let anon = gw.http();
    let account = anon.register_ok("alice", "secret-password").await;
    let room = anon
        .as_user(&account)
        .create_room(&json!({ "name": "durable" }))
        .await
        .expect("createRoom");
    let alice = anon.as_user(&account);
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = alice
            .send_text(&room, &format!("t{i}"), &format!("m{i}"))
            .await
            .unwrap()
            .ok();
        ids.push(r["event_id"].as_str().unwrap().to_owned());
    }
    gw.stop();
    gw.restart().await;
    // Same data folder: the token, the room and the history are still there.
    let alice = gw.http().as_user(&account);
    let who = alice
        .get("/_matrix/client/v3/account/whoami")
        .await
        .unwrap()
        .ok();
    assert_eq!(who["user_id"], account.user_id.as_str());
    let expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(all_bodies(&alice, &room).await, expected);
    let sync = alice.sync(None, 0, None).await.unwrap().ok();
    assert!(
        sync["rooms"]["join"][&room].is_object(),
        "room missing after restart: {sync}"
    );
    // Retrying a transaction after the restart returns the same event, not a duplicate.
    let again = alice.send_text(&room, "t3", "m3").await.unwrap().ok();
    assert_eq!(
        again["event_id"],
        ids[3].as_str(),
        "txn id reused after restart"
    );
    let r = alice.send_text(&room, "t20", "m20").await.unwrap().ok();
    assert!(r["event_id"].is_string());
    // And the same after a kill -9 right after the writes.
    gw.kill9();
    gw.restart().await;
    let alice = gw.http().as_user(&account);
    let mut expected = expected;
    expected.push("m20".into());
    assert_eq!(all_bodies(&alice, &room).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_burst_loses_nothing_acknowledged() {
    let mut gw = TestGateway::start().await;
    let anon = gw.http();
    let account = anon.register_ok("alice", "secret-password").await;
    let alice = anon.as_user(&account);
    let room = alice.create_room(&json!({})).await.expect("createRoom");

    const SENDERS: usize = 10;
    let stop = Arc::new(AtomicBool::new(false));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let http = alice.clone();
        let room = room.clone();
        let stop = stop.clone();
        let acked_count = acked_count.clone();
        tasks.push(tokio::spawn(async move {
            // (txn, body, Some(event_id) if acknowledged)
            let mut log: Vec<(String, String, Option<String>)> = Vec::new();
            for j in 0..10_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let txn = format!("s{s}-{j}");
                let body = format!("burst {s}/{j}");
                match http.send_text(&room, &txn, &body).await {
                    Ok(r) if r.status == 200 => {
                        let id = r.body["event_id"].as_str().map(str::to_owned);
                        assert!(id.is_some(), "200 without event_id: {}", r.body);
                        acked_count.fetch_add(1, Ordering::Relaxed);
                        log.push((txn, body, id));
                    }
                    _ => {
                        // Connection reset by the kill, or an error status: not acknowledged.
                        log.push((txn, body, None));
                        break;
                    }
                }
            }
            log
        }));
    }
    within(60, "burst before the kill", async {
        while acked_count.load(Ordering::Relaxed) < 150 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    gw.kill9();
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for t in tasks {
        logs.extend(within(60, "senders stop", t).await.expect("sender task"));
    }
    let acked: Vec<&(String, String, Option<String>)> =
        logs.iter().filter(|(_, _, id)| id.is_some()).collect();
    assert!(acked.len() >= 150);

    gw.restart().await;
    let alice = gw.http().as_user(&account);
    // Every acknowledged event is readable by ID...
    for (_, body, id) in &acked {
        let id = id.as_deref().unwrap();
        let r = alice
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                enc(&room),
                enc(id)
            ))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "acknowledged {id} lost: {}", r.body);
        assert_eq!(r.body["content"]["body"], body.as_str());
    }
    // ...and in the history, exactly once.
    let history = all_bodies(&alice, &room).await;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for b in &history {
        *counts.entry(b.as_str()).or_default() += 1;
    }
    for (_, body, _) in &acked {
        assert_eq!(counts.get(body.as_str()), Some(&1), "{body} in /messages");
    }
    // Clients retry unacknowledged sends with the same transaction ID (matrix-sdk's send
    // queue does): each retry succeeds and nothing appears twice.
    let acked_ids: HashSet<&str> = acked
        .iter()
        .filter_map(|(_, _, id)| id.as_deref())
        .collect();
    for (txn, body, id) in &logs {
        let r = alice.send_text(&room, txn, body).await.unwrap().ok();
        let event_id = r["event_id"].as_str().expect("event_id");
        if let Some(id) = id {
            assert_eq!(
                event_id, id,
                "retrying acknowledged txn {txn} made a new event"
            );
        } else {
            assert!(!acked_ids.contains(event_id));
        }
    }
    let history = all_bodies(&alice, &room).await;
    let unique: HashSet<&String> = history.iter().collect();
    assert_eq!(unique.len(), history.len(), "duplicates after retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_all_complete() {
    // Ten clients sending into one room at once (as the load tool does) must all get answers,
    // and every message must be in the history once.
    let gw = TestGateway::start().await;
    let anon = gw.http();
    let account = anon.register_ok("alice", "secret-password").await;
    let alice = anon.as_user(&account);
    let room = alice.create_room(&json!({})).await.expect("createRoom");
    let mut tasks = Vec::new();
    for s in 0..10 {
        let http = alice.clone();
        let room = room.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..60 {
                let r = http
                    .send_text(&room, &format!("c{s}-{j}"), &format!("c {s}/{j}"))
                    .await
                    .map(|r| (r.status, r.body));
                assert!(
                    matches!(r, Ok((200, _))),
                    "send {s}/{j} failed: {r:?} (a request timing out means the gateway hung)"
                );
            }
        }));
    }
    within(
        45,
        "600 concurrent sends (a hang here is a gateway deadlock)",
        async {
            for t in tasks {
                t.await.expect("sender");
            }
        },
    )
    .await;
    let history = all_bodies(&alice, &room).await;
    assert_eq!(history.len(), 600);
    let unique: HashSet<&String> = history.iter().collect();
    assert_eq!(unique.len(), 600);
}
