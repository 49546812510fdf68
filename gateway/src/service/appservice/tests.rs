//! Application services: registration files, `as_token` callers, exclusive namespaces,
//! transactions with retries and ping, against a service on loopback.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{Path as UrlPath, State},
    http::HeaderMap,
    routing::{post, put},
    Json, Router,
};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::registration::{check_all, Registration};
use crate::{
    config::ConfigError,
    service::pusher::PushOptions,
    testkit::{enc, kit_with, Kit},
};

fn yaml(id: &str, url: &str, users: &str, exclusive: bool) -> String {
    format!(
        "id: {id}\nurl: {url}\nas_token: as-{id}\nhs_token: hs-{id}\nsender_localpart: {id}bot\n\
         namespaces:\n  users:\n    - exclusive: {exclusive}\n      regex: '{users}'\n  aliases: []\n  rooms: []\n"
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn bad_registrations_name_the_file_and_key() {
    let dir = tempfile::tempdir().expect("dir");
    let bad = write(dir.path(), "bad.yaml", "id: [unclosed");
    match Registration::load(&bad) {
        Err(ConfigError::Parse { file, .. }) => assert_eq!(file, bad),
        other => panic!("{other:?}"),
    }
    let missing = write(
        dir.path(),
        "missing.yaml",
        "id: x\nhs_token: h\nsender_localpart: b\n",
    );
    let err = Registration::load(&missing).expect_err("no as_token");
    assert!(err.to_string().contains("as_token"), "{err}");
    let regex = write(
        dir.path(),
        "regex.yaml",
        &yaml("r", "null", "@_r_(.*:example.org", true),
    );
    match Registration::load(&regex) {
        Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "namespaces.users"),
        other => panic!("{other:?}"),
    }
    let a = write(
        dir.path(),
        "a.yaml",
        &yaml("a", "null", "@_irc_.*:example.org", true),
    );
    let b = write(
        dir.path(),
        "b.yaml",
        &yaml("b", "null", "@_irc_bob:example.org", false),
    );
    let regs = [
        Registration::load(&a).expect("a"),
        Registration::load(&b).expect("b"),
    ];
    match check_all(&regs) {
        Err(ConfigError::Invalid { file, key, .. }) => {
            assert_eq!((file, key), (b.clone(), "namespaces.users"));
        }
        other => panic!("overlap not found: {other:?}"),
    }
    let c = write(
        dir.path(),
        "c.yaml",
        &yaml("c", "null", "@_slack_.*:example.org", true),
    );
    check_all(&[
        Registration::load(&a).expect("a"),
        Registration::load(&c).expect("c"),
    ])
    .expect("disjoint namespaces");
}

/// What the fake service saw.
#[derive(Default)]
struct Seen {
    /// `(txn id, body)` of every transaction PUT, answered or not.
    txns: Vec<(String, Value)>,
    /// Authorization headers seen.
    auth: Vec<String>,
    pings: usize,
}

async fn fake_service() -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    async fn txn(
        State(seen): State<Arc<Mutex<Seen>>>,
        UrlPath(id): UrlPath<String>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        let mut s = seen.lock().expect("lock");
        s.auth.push(
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        );
        let first = s.txns.is_empty();
        s.txns.push((id, body));
        if first {
            (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({})))
        } else {
            (StatusCode::OK, Json(json!({})))
        }
    }
    async fn ping(State(seen): State<Arc<Mutex<Seen>>>, headers: HeaderMap) -> StatusCode {
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer hs-bridge") {
            return StatusCode::FORBIDDEN;
        }
        seen.lock().expect("lock").pings += 1;
        StatusCode::OK
    }
    let app = Router::new()
        .route("/_matrix/app/v1/transactions/{id}", put(txn))
        .route("/_matrix/app/v1/ping", post(ping))
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

async fn bridge_kit(url: &str, dir: &Path) -> Kit {
    let file = write(
        dir,
        "bridge.yaml",
        &yaml("bridge", url, "@_bridge_.*:example.org", true),
    );
    let k = kit_with(|c| c.appservices = vec![file]);
    k.gw.appservices
        .ensure_senders(&k.gw)
        .await
        .expect("sender user");
    k
}

async fn call(
    k: &Kit,
    method: Method,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    k.call(method, uri, Some(token), body).await
}

#[tokio::test]
async fn as_token_masquerading_registration_and_exclusive_namespaces() {
    let dir = tempfile::tempdir().expect("dir");
    let k = bridge_kit("null", dir.path()).await;
    let whoami = "/_matrix/client/v3/account/whoami";
    let (s, b) = call(&k, Method::GET, whoami, "as-bridge", None).await;
    assert_eq!(
        (s, b["user_id"].as_str()),
        (StatusCode::OK, Some("@bridgebot:example.org"))
    );
    let (s, b) = call(&k, Method::GET, whoami, "as-wrong", None).await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_UNKNOWN_TOKEN"))
    );
    let ghost = "@_bridge_alice:example.org";
    let (s, _) = call(
        &k,
        Method::GET,
        &format!("{whoami}?user_id={}", enc(ghost)),
        "as-bridge",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "not registered yet");

    let register = "/_matrix/client/v3/register";
    let (s, b) = call(
        &k,
        Method::POST,
        register,
        "as-bridge",
        Some(json!({ "type": "m.login.application_service", "username": "_bridge_alice" })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["user_id"], ghost);
    let (s, b) = call(
        &k,
        Method::GET,
        &format!("{whoami}?user_id={}", enc(ghost)),
        "as-bridge",
        None,
    )
    .await;
    assert_eq!((s, b["user_id"].as_str()), (StatusCode::OK, Some(ghost)));

    // Outside the namespace: refused both ways.
    let (_, user_token) = k.user("alice").await;
    let (s, b) = call(
        &k,
        Method::GET,
        &format!("{whoami}?user_id={}", enc("@alice:example.org")),
        "as-bridge",
        None,
    )
    .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN"))
    );
    let (s, b) = call(
        &k,
        Method::POST,
        register,
        "as-bridge",
        Some(json!({ "type": "m.login.application_service", "username": "mallory" })),
    )
    .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_EXCLUSIVE"))
    );
    // A user's token cannot use the service login type; nobody else gets the namespace.
    let (s, _) = call(
        &k,
        Method::POST,
        register,
        &user_token,
        Some(json!({ "type": "m.login.application_service", "username": "_bridge_bob" })),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = k
        .call(
            Method::POST,
            register,
            None,
            Some(
                json!({ "username": "_bridge_eve", "password": "long enough password",
                         "auth": { "type": "m.login.dummy" } }),
            ),
        )
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_EXCLUSIVE"))
    );
    // The service logs its ghost in on a device of its own.
    let (s, b) = call(
        &k,
        Method::POST,
        "/_matrix/client/v3/login",
        "as-bridge",
        Some(json!({ "type": "m.login.application_service",
                     "identifier": { "type": "m.id.user", "user": "_bridge_alice" } })),
    )
    .await;
    assert_eq!(
        (s, b["user_id"].as_str()),
        (StatusCode::OK, Some(ghost)),
        "{b}"
    );
}

#[tokio::test]
async fn transactions_reach_the_service_and_a_failed_one_is_retried() {
    let dir = tempfile::tempdir().expect("dir");
    let (url, seen) = fake_service().await;
    let k = bridge_kit(&url, dir.path()).await;
    let options = PushOptions {
        timeout: Duration::from_secs(2),
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..PushOptions::default()
    };
    // The service's feed cursor starts here; its task starts after everything is sent, so
    // the first transaction holds all of it (a deterministic snapshot).
    let mut batch = storage::Batch::new();
    crate::service::feed::set_cursor(&mut batch, "as:bridge", k.gw.stream.current())
        .expect("cursor");
    k.gw.db.apply(batch).expect("apply");

    let (alice, at) = k.user("alice").await;
    let room = k.room(&alice).await;
    let ghost = "@_bridge_alice:example.org";
    let (s, b) = call(
        &k,
        Method::POST,
        "/_matrix/client/v3/register",
        "as-bridge",
        Some(
            json!({ "type": "m.login.application_service", "username": "_bridge_alice",
                     "inhibit_login": true }),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // The ghost joins and speaks through the service's token; Alice answers.
    let as_ghost = |path: String| format!("{path}?user_id={}", enc(ghost));
    let (s, b) = call(
        &k,
        Method::POST,
        &as_ghost(format!("/_matrix/client/v3/join/{}", enc(room.as_str()))),
        "as-bridge",
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = call(
        &k,
        Method::PUT,
        &as_ghost(format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/g1",
            enc(room.as_str())
        )),
        "as-bridge",
        Some(json!({ "msgtype": "m.text", "body": "hello from the bridge" })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = call(
        &k,
        Method::PUT,
        &format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/a1",
            enc(room.as_str())
        ),
        &at,
        Some(json!({ "msgtype": "m.text", "body": "hi ghost" })),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let tasks = super::txn::spawn_all(&k.gw, options);
    assert_eq!(tasks.len(), 1);

    let bodies = |s: &Seen| -> Vec<String> {
        s.txns
            .iter()
            .flat_map(|(_, b)| b["events"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
            .collect()
    };
    for _ in 0..1000 {
        let done = {
            let s = seen.lock().expect("lock");
            s.txns.len() >= 2 && bodies(&s).contains(&"hi ghost".to_owned())
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = seen.lock().expect("lock");
    assert!(bodies(&s).contains(&"hi ghost".to_owned()), "{:?}", s.txns);
    assert!(bodies(&s).contains(&"hello from the bridge".to_owned()));
    // The first transaction got a 500 and came again with the same id and body.
    assert!(s.txns.len() >= 2);
    assert_eq!(s.txns[0], s.txns[1], "the same transaction is retried");
    assert!(s.auth.iter().all(|a| a == "Bearer hs-bridge"));
    let mut first = s.txns[0].1.clone();
    crate::service::relations::tests_support::stable(&mut first);
    insta::assert_json_snapshot!("appservice_transaction", first);
    drop(s);
    for t in tasks {
        t.abort();
    }
}

#[tokio::test]
async fn ping_reaches_the_service_with_its_hs_token() {
    let dir = tempfile::tempdir().expect("dir");
    let (url, seen) = fake_service().await;
    let k = bridge_kit(&url, dir.path()).await;
    let (s, b) = call(
        &k,
        Method::POST,
        "/_matrix/client/v1/appservice/bridge/ping",
        "as-bridge",
        Some(json!({ "transaction_id": "t1" })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["duration_ms"].is_u64());
    assert_eq!(seen.lock().expect("lock").pings, 1);
    let (s, _) = call(
        &k,
        Method::POST,
        "/_matrix/client/v1/appservice/other/ping",
        "as-bridge",
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
