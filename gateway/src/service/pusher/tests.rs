//! Push delivery against a push gateway on loopback.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{extract::State, routing::post, Json, Router};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{backoff, notify, queue::Job, PushOptions};
use crate::testkit::{enc, kit_with, Kit};

/// What the fake push gateway saw: every body, and how often each pushkey called.
#[derive(Default)]
struct Seen {
    bodies: Vec<Value>,
    calls: HashMap<String, usize>,
}

/// A push gateway answering 500 to the first request for each pushkey, then 200, rejecting
/// `bad-key`.
async fn push_gateway() -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    async fn notify_handler(
        State(seen): State<Arc<Mutex<Seen>>>,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        let key = body["notification"]["devices"][0]["pushkey"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut s = seen.lock().expect("lock");
        s.bodies.push(body);
        let n = s.calls.entry(key.clone()).or_default();
        *n += 1;
        if *n == 1 {
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({})));
        }
        let rejected: Vec<&str> = if key == "bad-key" {
            vec!["bad-key"]
        } else {
            vec![]
        };
        (StatusCode::OK, Json(json!({ "rejected": rejected })))
    }
    let app = Router::new()
        .route("/_matrix/push/v1/notify", post(notify_handler))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (
        format!("http://127.0.0.1:{}/_matrix/push/v1/notify", addr.port()),
        seen,
    )
}

async fn set_pusher(k: &Kit, token: &str, pushkey: &str, url: &str) {
    let (s, b) = k
        .call(
            Method::POST,
            "/_matrix/client/v3/pushers/set",
            Some(token),
            Some(json!({
                "kind": "http", "app_id": "im.example.app", "pushkey": pushkey,
                "app_display_name": "Example", "device_display_name": "Phone",
                "lang": "en", "data": { "url": url, "format": "full" },
            })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

async fn send(k: &Kit, token: &str, room: &str, content: Value) -> String {
    let txn = crate::service::users::random_string(10);
    let (s, b) = k
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                enc(room)
            ),
            Some(token),
            Some(content),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["event_id"].as_str().expect("id").to_owned()
}

fn fast() -> PushOptions {
    PushOptions {
        timeout: Duration::from_secs(2),
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..PushOptions::default()
    }
}

#[tokio::test]
async fn mentions_are_pushed_with_retries_muted_rooms_are_not_rejected_keys_go() {
    let k = kit_with(|c| c.push_allowed_private_hosts = vec!["127.0.0.1".into()]);
    let (url, seen) = push_gateway().await;
    let (alice, at) = k.user("alice").await;
    let (bob, bt) = k.user("bob").await;
    let talk = k.room(&bob).await;
    let muted = k.room(&bob).await;
    k.join(&talk, &alice).await;
    k.join(&muted, &alice).await;
    set_pusher(&k, &at, "good-key", &url).await;
    set_pusher(&k, &at, "bad-key", &url).await;
    // A pusher whose push gateway is down: retried, and it holds nothing else up.
    set_pusher(
        &k,
        &at,
        "down-key",
        "http://127.0.0.1:9/_matrix/push/v1/notify",
    )
    .await;
    let (s, b) = k
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/pushrules/global/room/{}",
                enc(muted.as_str())
            ),
            Some(&at),
            Some(json!({ "actions": [] })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let worker = super::spawn(k.gw.clone(), fast());

    let quiet = send(
        &k,
        &bt,
        muted.as_str(),
        json!({ "msgtype": "m.text", "body": "muted chatter" }),
    )
    .await;
    let mention = send(
        &k,
        &bt,
        talk.as_str(),
        json!({ "msgtype": "m.text", "body": "alice: lunch?",
                "m.mentions": { "user_ids": [alice] } }),
    )
    .await;

    for _ in 0..1000 {
        let done = {
            let s = seen.lock().expect("lock");
            s.calls.get("good-key").copied().unwrap_or(0) >= 2
                && s.calls.get("bad-key").copied().unwrap_or(0) >= 2
        };
        let pushers = k.gw.account_data.pushers(&alice).expect("pushers");
        if done && pushers.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = seen.lock().expect("lock");
    assert!(
        s.calls.get("good-key").copied().unwrap_or(0) >= 2,
        "retried after the 500"
    );
    for body in &s.bodies {
        let n = &body["notification"];
        assert_eq!(n["event_id"], mention.as_str(), "only the mention: {body}");
        assert_ne!(n["event_id"], quiet.as_str());
        assert_eq!(n["room_id"], talk.as_str());
        assert_eq!(n["prio"], "high");
        assert_eq!(n["devices"][0]["tweaks"]["highlight"], true);
        for leak in [
            "sender",
            "content",
            "type",
            "sender_display_name",
            "room_name",
        ] {
            assert!(n.get(leak).is_none(), "{leak} left the gateway: {body}");
        }
        assert!(n["devices"][0]["data"].get("url").is_none());
        assert_eq!(n["devices"][0]["data"]["format"], "event_id_only");
    }
    let keys: Vec<String> =
        k.gw.account_data
            .pushers(&alice)
            .expect("pushers")
            .iter()
            .map(|p| p["pushkey"].as_str().unwrap_or_default().to_owned())
            .collect();
    assert!(
        !keys.contains(&"bad-key".to_owned()),
        "rejected pushkey removed: {keys:?}"
    );
    assert!(keys.contains(&"good-key".to_owned()));
    // The down push gateway's job is still queued for a retry, not lost.
    let queued = super::queue::all(&k.gw.db).expect("queue");
    assert!(
        queued
            .iter()
            .any(|(_, j)| j.pushkey == "down-key" && j.attempts >= 1),
        "{queued:?}"
    );
    assert!(!queued.iter().any(|(_, j)| j.pushkey == "good-key"));
    // Bob, the sender, has no pusher and gets nothing; the sender is never notified.
    assert!(k.gw.account_data.pushers(&bob).expect("bob").is_empty());
    worker.abort();
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let o = fast();
    let ms: Vec<u128> = (1..=5).map(|a| backoff(&o, a).as_millis()).collect();
    assert_eq!(ms, vec![20, 40, 80, 100, 100]);
}

#[test]
fn notification_bodies_carry_no_content() {
    let job = Job {
        user: ruma::UserId::parse("@alice:example.org").expect("user"),
        app_id: "app".into(),
        pushkey: "key".into(),
        room_id: ruma::RoomId::parse("!room:example.org").expect("room"),
        event_id: ruma::EventId::parse("$event").expect("event"),
        unread: 3,
        highlight: false,
        attempts: 0,
        next_ms: 0,
        created_ms: 0,
    };
    let pusher = json!({ "data": { "url": "https://push.example/_matrix/push/v1/notify",
                                   "format": "full", "extra": 1 }, "pushkey_ts": 7 });
    insta::assert_json_snapshot!("push_notification", notify::body(&job, &pusher));
}
