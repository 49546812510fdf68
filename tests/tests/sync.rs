//! /sync over raw HTTP: long-poll wake-up, gappy syncs (`limited` + `prev_batch` usable as
//! `/messages` `from`), and a snapshot of the response shape.

use std::time::{Duration, Instant};

use mixgate_tests::{http::enc, within, Http, TestGateway};
use serde_json::{json, Value};

/// Bodies of the `m.room.message` events in `events`, in order.
fn bodies(events: &Value) -> Vec<String> {
    events
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["type"] == "m.room.message")
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The joined-room section of `room_id` in a sync body.
fn joined<'a>(sync: &'a Value, room_id: &str) -> &'a Value {
    &sync["rooms"]["join"][room_id]
}

/// Pages backwards from `from` until the start of the room; returns message bodies newest first.
async fn page_back_all(http: &Http, room_id: &str, from: &str, limit: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = from.to_owned();
    for _ in 0..100 {
        let body = http
            .messages(room_id, Some(&from), "b", limit)
            .await
            .unwrap()
            .ok();
        let chunk = &body["chunk"];
        out.extend(bodies(chunk));
        match body["end"].as_str() {
            Some(end) if !chunk.as_array().map(Vec::is_empty).unwrap_or(true) => {
                from = end.to_owned()
            }
            _ => return out,
        }
    }
    panic!("pagination did not end after 100 pages");
}

#[tokio::test]
async fn long_poll_returns_early_on_message() {
    let gw = TestGateway::start().await;
    let anon = gw.http();
    let alice = anon.as_user(&anon.register_ok("alice", "secret-password").await);
    let bob = anon.as_user(&anon.register_ok("bob", "secret-password").await);
    let room = alice
        .create_room(&json!({ "preset": "public_chat" }))
        .await
        .expect("createRoom");
    bob.join(&room).await.unwrap().ok();
    let first = bob.sync(None, 0, None).await.unwrap().ok();
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();

    // An idle long-poll waits for its timeout (it must not spin clients in a busy loop).
    let t = Instant::now();
    let idle = within(15, "idle sync", bob.sync(Some(&since), 1500, None))
        .await
        .unwrap()
        .ok();
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1200),
        "an idle sync with timeout=1500 returned after {waited:?}: {idle}"
    );
    let since = idle["next_batch"].as_str().unwrap_or(&since).to_owned();

    let poll = {
        let bob = bob.clone();
        let since = since.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let r = bob.sync(Some(&since), 30_000, None).await;
            (t.elapsed(), r)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    alice.send_text(&room, "t1", "wake up").await.unwrap().ok();
    let (elapsed, reply) = within(20, "woken sync", poll).await.unwrap();
    let body = reply.unwrap().ok();
    assert!(
        elapsed < Duration::from_secs(10),
        "sync took {elapsed:?} although a message arrived after 0.5 s"
    );
    let events = &joined(&body, &room)["timeline"]["events"];
    assert_eq!(bodies(events), ["wake up"], "{body}");
    assert_ne!(body["next_batch"].as_str(), Some(since.as_str()));
}

#[tokio::test]
async fn gappy_sync_prev_batch_pages_back() {
    let gw = TestGateway::start().await;
    let anon = gw.http();
    let alice = anon.as_user(&anon.register_ok("alice", "secret-password").await);
    let room = alice.create_room(&json!({})).await.expect("createRoom");
    for i in 0..25 {
        alice
            .send_text(&room, &format!("t{i}"), &format!("m{i}"))
            .await
            .unwrap()
            .ok();
    }
    let filter = r#"{"room":{"timeline":{"limit":5}}}"#;
    // Initial sync with an inline filter: the last five events, limited, with a prev_batch.
    let body = alice.sync(None, 0, Some(filter)).await.unwrap().ok();
    let timeline = &joined(&body, &room)["timeline"];
    assert_eq!(
        bodies(&timeline["events"]),
        ["m20", "m21", "m22", "m23", "m24"],
        "{body}"
    );
    assert_eq!(timeline["limited"], true, "{timeline}");
    let prev = timeline["prev_batch"].as_str().expect("prev_batch");
    let older = page_back_all(&alice, &room, prev, 7).await;
    let expected: Vec<String> = (0..20).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(older, expected, "paging back from prev_batch");

    // Incremental gappy sync.
    let since = body["next_batch"].as_str().expect("next_batch").to_owned();
    for i in 25..35 {
        alice
            .send_text(&room, &format!("t{i}"), &format!("m{i}"))
            .await
            .unwrap()
            .ok();
    }
    let body = alice
        .sync(Some(&since), 0, Some(filter))
        .await
        .unwrap()
        .ok();
    let timeline = &joined(&body, &room)["timeline"];
    assert_eq!(
        bodies(&timeline["events"]),
        ["m30", "m31", "m32", "m33", "m34"],
        "{body}"
    );
    assert_eq!(timeline["limited"], true, "{timeline}");
    let prev = timeline["prev_batch"].as_str().expect("prev_batch");
    let older = page_back_all(&alice, &room, prev, 4).await;
    let expected: Vec<String> = (0..30).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(
        older, expected,
        "paging back from an incremental prev_batch"
    );

    // Same incremental sync with a room timeline big enough: not limited.
    let body = alice
        .sync(
            Some(&since),
            0,
            Some(r#"{"room":{"timeline":{"limit":50}}}"#),
        )
        .await
        .unwrap()
        .ok();
    let timeline = &joined(&body, &room)["timeline"];
    let expected: Vec<String> = (25..35).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies(&timeline["events"]), expected);
    assert_ne!(timeline["limited"], true, "{timeline}");
}

#[tokio::test]
async fn sync_with_stored_filter() {
    let gw = TestGateway::start().await;
    let anon = gw.http();
    let account = anon.register_ok("alice", "secret-password").await;
    let alice = anon.as_user(&account);
    let room = alice.create_room(&json!({})).await.expect("createRoom");
    for i in 0..4 {
        alice
            .send_text(&room, &format!("t{i}"), &format!("m{i}"))
            .await
            .unwrap()
            .ok();
    }
    let created = alice
        .post(
            &format!("/_matrix/client/v3/user/{}/filter", enc(&account.user_id)),
            &json!({ "room": { "timeline": { "limit": 2 } } }),
        )
        .await
        .unwrap()
        .ok();
    let id = created["filter_id"].as_str().expect("filter_id");
    let body = alice.sync(None, 0, Some(id)).await.unwrap().ok();
    let timeline = &joined(&body, &room)["timeline"];
    assert_eq!(bodies(&timeline["events"]), ["m2", "m3"], "{body}");
}

/// Replaces everything that changes between runs (server name, IDs, timestamps, tokens).
fn normalise(v: &mut Value, server: &str, room: &str) {
    let fix = |s: &str| -> String {
        if s.starts_with('$') {
            return "$EVENT".into();
        }
        s.replace(room, "!ROOM:SERVER").replace(server, "SERVER")
    };
    match v {
        Value::Object(map) => {
            let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            for (k, mut val) in entries {
                match k.as_str() {
                    "origin_server_ts" | "age" => val = json!(0),
                    "next_batch" | "prev_batch" | "device_id" => val = json!("[token]"),
                    _ => normalise(&mut val, server, room),
                }
                map.insert(fix(&k), val);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| normalise(i, server, room)),
        Value::String(s) => *s = fix(s),
        _ => {}
    }
}

#[tokio::test]
async fn sync_shape_snapshot() {
    let gw = TestGateway::start().await;
    let anon = gw.http();
    let account = anon.register_ok("alice", "secret-password").await;
    let alice = anon.as_user(&account);
    let server = account.user_id.split_once(':').unwrap().1.to_owned();
    let room = alice
        .create_room(&json!({ "name": "Snapshot room", "preset": "private_chat" }))
        .await
        .expect("createRoom");
    alice.send_text(&room, "t1", "hello").await.unwrap().ok();
    let mut body = alice
        .sync(None, 0, Some(r#"{"room":{"timeline":{"limit":2}}}"#))
        .await
        .unwrap()
        .ok();
    // State and account data have no defined order: sort them.
    if let Some(joined) = body["rooms"]["join"].get_mut(&room) {
        for section in ["state", "account_data", "ephemeral"] {
            if let Some(events) = joined[section]["events"].as_array_mut() {
                events.sort_by_key(|e| format!("{}\u{0}{}", e["type"], e["state_key"]));
            }
        }
    }
    // The default push rules are long and not the subject here (push rules have their own tests).
    if let Some(events) = body["account_data"]["events"].as_array_mut() {
        for e in events.iter_mut().filter(|e| e["type"] == "m.push_rules") {
            e["content"] = json!("[default push rules]");
        }
    }
    normalise(&mut body, &server, &room);
    insta::assert_json_snapshot!("initial_sync_shape", body);
}
