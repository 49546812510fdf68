//! A real application service built with mautrix-python (PyPI `mautrix`) against the real
//! binary started with `--appservice FILE`. The service side is
//! `tests/appservice/mautrix_bridge.py` (see its header): it registers a ghost, acts as it
//! (display name, join, message with `?user_id=` masquerading), receives transactions (the
//! first answered 500, so the gateway sends it again) with events and typing (MSC2409), and
//! answers user and alias queries by creating the user or room.
//!
//! Needs a Python with mautrix: `MIXGATE_MAUTRIX_PYTHON`, or `target/mautrix-venv/bin/python`
//! (`.ci/run` creates it). Set MIXGATE_SKIP_MAUTRIX=1 to skip it on a machine without them.

use std::{path::PathBuf, process::Stdio, time::Duration};

use mixgate_tests::{http::enc, Http, Options, TestGateway};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};

/// How long one step of the service may take.
const STEP: Duration = Duration::from_secs(90);

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MIXGATE_MAUTRIX_PYTHON") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/mautrix-venv/bin/python")
}

fn registration(port: u16) -> String {
    format!(
        "id: mautrix\nurl: \"http://127.0.0.1:{port}\"\nas_token: mx-as-token\n\
         hs_token: mx-hs-token\nsender_localpart: mxbot\nrate_limited: false\n\
         de.sorunome.msc2409.push_ephemeral: true\n\
         namespaces:\n  users:\n    - exclusive: true\n      regex: '@_mx_.*'\n  \
         aliases:\n    - exclusive: true\n      regex: '#_mx_.*'\n"
    )
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The next JSON line of the service that has `key`, or a failure naming what was awaited.
async fn next_line(lines: &mut Lines<BufReader<tokio::process::ChildStdout>>, key: &str) -> Value {
    let line = tokio::time::timeout(STEP, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("the mautrix service printed no {key:?} in {STEP:?}"))
        .expect("read the service's stdout")
        .unwrap_or_else(|| panic!("the mautrix service exited before printing {key:?}"));
    let value: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the mautrix service printed {line:?}: {e}"));
    assert!(
        value.get(key).is_some(),
        "the mautrix service printed {value} instead of {key:?}"
    );
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mautrix_python_service_bridges_through_the_gateway() {
    if std::env::var_os("MIXGATE_SKIP_MAUTRIX").is_some() {
        eprintln!("SKIPPED: MIXGATE_SKIP_MAUTRIX is set");
        return;
    }
    let python = python();
    assert!(
        python.exists(),
        "no Python with mautrix at {}: run .ci/run (it creates target/mautrix-venv) or set \
         MIXGATE_MAUTRIX_PYTHON (or MIXGATE_SKIP_MAUTRIX=1)",
        python.display()
    );
    let port = free_port();
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("mautrix.yaml");
    std::fs::write(&file, registration(port)).expect("write registration");
    let gw = TestGateway::start_with(Options {
        args: vec!["--appservice".into(), file.display().to_string()],
        ..Options::default()
    })
    .await;
    let anon = Http::new(gw.url());
    let alice_account = anon.register_ok("alice", "alice-password").await;
    let alice = anon.as_user(&alice_account);
    let domain = alice_account
        .user_id
        .split_once(':')
        .map(|(_, d)| d.to_owned())
        .expect("server name");
    let room = alice
        .create_room(&json!({ "preset": "public_chat" }))
        .await
        .expect("room");

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("appservice/mautrix_bridge.py");
    let cfg = json!({
        "port": port, "homeserver": gw.url(), "domain": domain, "room": room,
        "as_token": "mx-as-token", "hs_token": "mx-hs-token", "bot_localpart": "mxbot",
        "id": "mautrix",
    });
    let mut child = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(cfg.to_string())
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stderr = child.stderr.take().expect("stderr");
    let log = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut all = String::new();
        while let Ok(Some(l)) = lines.next_line().await {
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let run = async {
        next_line(&mut out, "ready").await;
        let sent = next_line(&mut out, "sent").await["sent"].clone();
        let ghost = format!("@_mx_carol:{domain}");

        // The ghost's message, as another member sees it.
        let r = alice
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                enc(&room),
                enc(sent.as_str().expect("event id"))
            ))
            .await
            .expect("event");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["sender"], ghost.as_str());
        assert_eq!(r.body["content"]["body"], "bridged hello");
        let r = alice
            .get(&format!("/_matrix/client/v3/profile/{}", enc(&ghost)))
            .await
            .expect("profile");
        assert_eq!(r.body["displayname"], "Carol (bridged)", "{}", r.body);

        // A message from a real user reaches the service in a transaction.
        let r = alice
            .send_text(&room, "a1", "hello ghost")
            .await
            .expect("send");
        assert_eq!(r.status, 200, "{}", r.body);
        // Typing reaches it as an ephemeral event (MSC2409).
        let r = alice
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/typing/{}",
                    enc(&room),
                    enc(&alice_account.user_id)
                ),
                &json!({ "typing": true, "timeout": 30000 }),
            )
            .await
            .expect("typing");
        assert_eq!(r.status, 200, "{}", r.body);
        let received = next_line(&mut out, "received").await["received"].clone();
        let events = received.as_array().expect("events");
        assert!(
            events.iter().any(|e| e["content"]["body"] == "hello ghost"
                && e["sender"] == alice_account.user_id.as_str()),
            "{received}"
        );
        assert!(
            events
                .iter()
                .any(|e| e["event_id"] == sent && e["sender"] == ghost.as_str()),
            "the ghost's own message is in a transaction: {received}"
        );
        assert!(
            events.iter().any(|e| e["type"] == "m.typing"
                && e["user_ids"] == json!([alice_account.user_id.as_str()])),
            "typing is in an ephemeral transaction: {received}"
        );
        assert!(
            events.iter().any(|e| e["type"] == "m.room.member"
                && e["state_key"] == ghost.as_str()
                && e["content"]["membership"] == "join"),
            "the ghost's join is in a transaction: {received}"
        );

        // A user of the namespace that does not exist yet: the gateway asks the service,
        // which creates it.
        let dave = format!("@_mx_dave:{domain}");
        let r = alice
            .get(&format!("/_matrix/client/v3/profile/{}", enc(&dave)))
            .await
            .expect("profile");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["displayname"], "Dave (bridged)", "{}", r.body);
        // One the service does not know stays unknown.
        let r = alice
            .get(&format!(
                "/_matrix/client/v3/profile/{}",
                enc(&format!("@_mx_nobody:{domain}"))
            ))
            .await
            .expect("profile");
        r.expect_error(404, "M_NOT_FOUND");
        // An alias of the namespace: the service creates the room.
        let lobby = format!("#_mx_lobby:{domain}");
        let r = alice
            .get(&format!(
                "/_matrix/client/v3/directory/room/{}",
                enc(&lobby)
            ))
            .await
            .expect("alias");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body["room_id"].as_str().is_some(), "{}", r.body);
        // Nobody else may take an alias of the exclusive namespace.
        let r = alice
            .put(
                &format!(
                    "/_matrix/client/v3/directory/room/{}",
                    enc(&format!("#_mx_taken:{domain}"))
                ),
                &json!({ "room_id": room }),
            )
            .await
            .expect("alias");
        r.expect_error(400, "M_EXCLUSIVE");

        drop(child.stdin.take());
        let end = next_line(&mut out, "transactions").await;
        let txns = end["transactions"].as_array().expect("transactions");
        assert!(txns.len() >= 2, "{end}");
        assert_eq!(txns[0][1], 500, "{end}");
        assert_eq!(
            txns[1],
            json!([txns[0][0].clone(), 200]),
            "the transaction answered 500 is sent again with the same id: {end}"
        );
        let queries = end["queries"].as_array().expect("queries");
        assert!(queries.contains(&json!(["user", dave])), "{end}");
        assert!(queries.contains(&json!(["alias", lobby])), "{end}");
    };
    let result = tokio::time::timeout(Duration::from_secs(300), async {
        futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await
    })
    .await;
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let service_log = tokio::time::timeout(Duration::from_secs(10), log)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    match result {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => {
            eprintln!(
                "--- mautrix service log ---\n{service_log}\n--- gateway log ---\n{}",
                gw.log_tail(6000)
            );
            std::panic::resume_unwind(panic);
        }
        Err(_) => panic!(
            "the mautrix test did not finish in 300 s\n--- mautrix service log ---\n{service_log}\n--- gateway log ---\n{}",
            gw.log_tail(6000)
        ),
    }
}
