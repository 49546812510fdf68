//! Typing, read receipts (MSC2409) and to-device messages (MSC4203) reach a service that
//! asked for them.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{extract::State, routing::put, Json, Router};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    service::pusher::PushOptions,
    testkit::{enc, kit_with},
};

type Seen = Arc<Mutex<Vec<Value>>>;

async fn service() -> (String, Seen) {
    let seen = Seen::default();
    async fn txn(State(seen): State<Seen>, Json(body): Json<Value>) -> Json<Value> {
        seen.lock().expect("lock").push(body);
        Json(json!({}))
    }
    let app = Router::new()
        .route("/_matrix/app/v1/transactions/{id}", put(txn))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://127.0.0.1:{port}"), seen)
}

#[tokio::test]
async fn typing_receipts_and_to_device_reach_a_service_that_asked() {
    let dir = tempfile::tempdir().expect("dir");
    let (url, seen) = service().await;
    let file = dir.path().join("bridge.yaml");
    std::fs::write(
        &file,
        format!(
            "id: bridge\nurl: {url}\nas_token: as-bridge\nhs_token: hs-bridge\n\
             sender_localpart: bridgebot\nde.sorunome.msc2409.push_ephemeral: true\n\
             org.matrix.msc3202: true\n\
             namespaces:\n  users:\n    - exclusive: true\n      regex: '@_bridge_.*'\n"
        ),
    )
    .expect("write");
    let k = kit_with(|c| c.appservices = vec![file]);
    k.gw.appservices
        .ensure_senders(&k.gw)
        .await
        .expect("sender");
    let (alice, at) = k.user("alice").await;
    let room = k.room(&alice).await;
    let (s, b) = k
        .call(
            Method::POST,
            "/_matrix/client/v3/register",
            Some("as-bridge"),
            Some(
                json!({ "type": "m.login.application_service", "username": "_bridge_gus",
                         "device_id": "GUSDEV" }),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = k
        .call(
            Method::POST,
            &format!(
                "/_matrix/client/v3/join/{}?user_id={}",
                enc(room.as_str()),
                enc("@_bridge_gus:example.org")
            ),
            Some("as-bridge"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let options = PushOptions {
        base_backoff: Duration::from_millis(10),
        ..PushOptions::default()
    };
    let tasks = super::txn::spawn_all(&k.gw, options);
    // Let the task take its first ephemeral cursor before anything ephemeral happens.
    let service = k.gw.appservices.all()[0].clone();
    for _ in 0..500 {
        if super::ephemeral::cursor(&k.gw, &service)
            .expect("cursor")
            .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        super::ephemeral::cursor(&k.gw, &service)
            .expect("cursor")
            .is_some(),
        "the transaction task did not start"
    );
    let (s, b) = k
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/a1",
                enc(room.as_str())
            ),
            Some(&at),
            Some(json!({ "msgtype": "m.text", "body": "hi" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let event = b["event_id"].as_str().expect("event id").to_owned();
    let (s, b) = k
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/typing/{}",
                enc(room.as_str()),
                enc(alice.as_str())
            ),
            Some(&at),
            Some(json!({ "typing": true, "timeout": 30000 })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = k
        .call(
            Method::POST,
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                enc(room.as_str()),
                enc(&event)
            ),
            Some(&at),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let ghost = "@_bridge_gus:example.org";
    let (s, b) = k
        .call(
            Method::PUT,
            "/_matrix/client/v3/sendToDevice/m.test/t1",
            Some(&at),
            Some(json!({ "messages": { ghost: { "GUSDEV": { "hello": "gus" } } } })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let found = |bodies: &[Value]| {
        let edus: Vec<Value> = bodies
            .iter()
            .flat_map(|b| b["ephemeral"].as_array().cloned().unwrap_or_default())
            .collect();
        let typing = edus.iter().any(|e| {
            e["type"] == "m.typing"
                && e["room_id"] == room.as_str()
                && e["content"]["user_ids"]
                    .as_array()
                    .is_some_and(|u| u.contains(&json!(alice.as_str())))
        });
        let receipt = edus.iter().any(|e| {
            e["type"] == "m.receipt"
                && e["room_id"] == room.as_str()
                && e["content"][&event]["m.read"][alice.as_str()]["ts"].is_u64()
        });
        let to_device = bodies
            .iter()
            .flat_map(|b| b["to_device"].as_array().cloned().unwrap_or_default())
            .any(|e| {
                e["type"] == "m.test"
                    && e["sender"] == alice.as_str()
                    && e["to_user_id"] == ghost
                    && e["to_device_id"] == "GUSDEV"
                    && e["content"]["hello"] == "gus"
            });
        typing && receipt && to_device
    };
    for _ in 0..500 {
        if found(&seen.lock().expect("lock")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bodies = seen.lock().expect("lock").clone();
    assert!(found(&bodies), "{bodies:#?}");
    // Every ephemeral transaction has `events` (services require it) and the MSC2409 copy.
    for b in bodies.iter().filter(|b| b.get("ephemeral").is_some()) {
        assert_eq!(b["events"], json!([]));
        assert_eq!(b["ephemeral"], b["de.sorunome.msc2409.ephemeral"]);
        assert_eq!(b["to_device"], b["de.sorunome.msc2409.to_device"]);
    }
    // Delivered to the service, the message left the device's inbox.
    assert_eq!(
        k.gw.to_device
            .pending_count(&ruma::UserId::parse(ghost).expect("ghost"), "GUSDEV")
            .expect("count"),
        0
    );
    for t in tasks {
        t.abort();
    }
}
