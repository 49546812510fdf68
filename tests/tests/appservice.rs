//! Application services against the real binary: a registration loaded from the config, a
//! service on loopback that registers a ghost, acts as it and receives transactions (one
//! answered 500 and retried); and a bad registration on the command line stops the gateway.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{extract::State, routing::put, Json, Router};
use mixgate_tests::{http::enc, mixgate_binary, Http, Options, TestGateway};
use serde_json::{json, Value};

#[derive(Default)]
struct Seen {
    txns: Vec<(String, u16, Value)>,
}

async fn service() -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    async fn txn(
        State(seen): State<Arc<Mutex<Seen>>>,
        axum::extract::Path(id): axum::extract::Path<String>,
        Json(body): Json<Value>,
    ) -> (axum::http::StatusCode, Json<Value>) {
        let mut s = seen.lock().expect("lock");
        let status = if s.txns.is_empty() { 500 } else { 200 };
        s.txns.push((id, status, body));
        (
            axum::http::StatusCode::from_u16(status).expect("status"),
            Json(json!({})),
        )
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

fn registration(url: &str, users: &str) -> String {
    format!(
        "id: bridge\nurl: \"{url}\"\nas_token: as-secret\nhs_token: hs-secret\n\
         sender_localpart: bridgebot\nnamespaces:\n  users:\n    - exclusive: true\n      \
         regex: '{users}'\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_registers_a_ghost_acts_as_it_and_gets_transactions() {
    let (url, seen) = service().await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("bridge.yaml");
    std::fs::write(&file, registration(&url, "@_bridge_.*")).expect("write");
    let gw = TestGateway::start_with(Options {
        config: format!(
            "auth_attempts_per_minute = 10000\nappservices = [{:?}]\n",
            file.display().to_string()
        ),
        ..Options::default()
    })
    .await;
    let anon = Http::new(gw.url());
    let bridge = anon.with_token("as-secret");
    let r = bridge
        .post(
            "/_matrix/client/v3/register",
            &json!({ "type": "m.login.application_service", "username": "_bridge_carol" }),
        )
        .await
        .expect("register ghost");
    assert_eq!(r.status, 200, "{}", r.body);
    let ghost = r.body["user_id"].as_str().expect("user id").to_owned();

    let alice_account = anon.register_ok("alice", "alice-password").await;
    let alice = anon.as_user(&alice_account);
    let room = alice
        .create_room(&json!({ "preset": "public_chat" }))
        .await
        .expect("room");
    let as_ghost = |path: String| format!("{path}?user_id={}", enc(&ghost));
    let r = bridge
        .post(
            &as_ghost(format!("/_matrix/client/v3/join/{}", enc(&room))),
            &json!({}),
        )
        .await
        .expect("join");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = bridge
        .put(
            &as_ghost(format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/t1",
                enc(&room)
            )),
            &json!({ "msgtype": "m.text", "body": "bridged hello" }),
        )
        .await
        .expect("send as ghost");
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = r.body["event_id"].clone();
    let r = alice
        .send_text(&room, "a1", "hello ghost")
        .await
        .expect("send");
    assert_eq!(r.status, 200);
    // Masquerading outside the namespace, and a wrong token.
    let r = bridge
        .get(&format!(
            "/_matrix/client/v3/account/whoami?user_id={}",
            enc(&alice_account.user_id)
        ))
        .await
        .expect("whoami");
    assert_eq!(r.status, 403, "{}", r.body);
    let r = anon
        .with_token("as-wrong")
        .get("/_matrix/client/v3/account/whoami")
        .await
        .expect("whoami");
    r.expect_error(401, "M_UNKNOWN_TOKEN");

    let acked = |s: &Seen| -> Vec<Value> {
        s.txns
            .iter()
            .filter(|(_, status, _)| *status == 200)
            .flat_map(|(_, _, b)| b["events"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let mut events = Vec::new();
    for _ in 0..500 {
        events = acked(&seen.lock().expect("lock"));
        if events.iter().any(|e| e["content"]["body"] == "hello ghost") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        events.iter().any(|e| e["content"]["body"] == "hello ghost"),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|e| e["event_id"] == sent && e["sender"] == ghost.as_str()));
    let s = seen.lock().expect("lock");
    assert_eq!(s.txns[0].1, 500);
    assert_eq!(
        s.txns[0].0, s.txns[1].0,
        "the failed transaction is sent again"
    );
    assert_eq!(s.txns[0].2, s.txns[1].2);
}

#[test]
fn a_bad_registration_stops_the_gateway_naming_file_and_key() {
    let dir = tempfile::tempdir().expect("dir");
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, registration("http://127.0.0.1:9", "@_irc_.*")).expect("write");
    std::fs::write(
        &b,
        registration("http://127.0.0.1:9", "@_irc_bob:localhost")
            .replace("id: bridge", "id: other")
            .replace("as-secret", "as-other"),
    )
    .expect("write");
    let out = std::process::Command::new(mixgate_binary())
        .args(["gateway", "--memory-only", "--listen", "127.0.0.1:0"])
        .arg("--appservice")
        .arg(&a)
        .arg("--appservice")
        .arg(&b)
        .output()
        .expect("run mixgate");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&b.display().to_string()), "{err}");
    assert!(err.contains("namespaces.users"), "{err}");
}
