//! The documented deployment, as processes: `scripts/network.sh start` fills in the
//! `config/network/` templates (3 directory authorities, 3 mix nodes, 2 providers, 2 gateways),
//! checks every file with `mixgate config check` and starts one process per role on loopback;
//! a message crosses from a user of the first gateway to a user of the second; every role's
//! metrics listener answers with Prometheus text; `scripts/network.sh stop` stops every
//! process with SIGTERM, none needing SIGKILL.

use std::{path::PathBuf, process::Command, time::Duration};

use mixgate_tests::{mixgate_binary, ops::scrape, within, Http};
use serde_json::{json, Value};

/// A port base with its 80 following loopback ports free (checked by binding them).
fn free_base() -> u16 {
    for _ in 0..50 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = probe.local_addr().expect("addr").port();
        drop(probe);
        let Some(base) = port.checked_sub(1) else {
            continue;
        };
        if base.checked_add(80).is_none() {
            continue;
        }
        let free =
            (1..=80u16).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free range of 80 loopback ports");
}

fn script(args: &[&str]) -> std::process::Output {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    Command::new(root.join("scripts/network.sh"))
        .args(args)
        .env("MIXGATE_BIN", mixgate_binary())
        .output()
        .expect("run scripts/network.sh")
}

/// Stops the network even when the test fails.
struct Network(PathBuf);

impl Drop for Network {
    fn drop(&mut self) {
        let dir = self.0.display().to_string();
        if std::thread::panicking() {
            for log in ["directory1", "mix1", "provider1", "gateway1", "gateway2"] {
                let text = std::fs::read_to_string(self.0.join(format!("log/{log}.log")))
                    .unwrap_or_default();
                let tail: String = text.lines().rev().take(15).collect::<Vec<_>>().join("\n");
                eprintln!("--- {log} (last lines, newest first) ---\n{tail}");
            }
        }
        let _ = script(&["stop", &dir]);
    }
}

/// Syncs (1 s long-polls) until `pred` holds. The budget is generous: on a loaded 2-core CI
/// machine the ten debug-build processes can take over a minute for the gateways' first
/// contact (the directory round, then the first Olm claim between them).
const SYNCS: usize = 180;

async fn sync_until(http: &Http, what: &str, pred: impl Fn(&Value) -> bool) {
    let mut since: Option<String> = None;
    for _ in 0..SYNCS {
        let reply = http.sync(since.as_deref(), 1000, None).await.expect("sync");
        if pred(&reply.body) {
            return;
        }
        since = reply.body["next_batch"].as_str().map(str::to_owned);
    }
    panic!("{what}: not seen within {SYNCS} syncs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_network_starts_carries_a_message_and_stops() {
    let tmp = tempfile::tempdir().expect("temp");
    let dir = tmp.path().join("net");
    let base = free_base().to_string();
    let started = script(&["start", &dir.display().to_string(), &base]);
    let net = Network(dir.clone());
    assert!(
        started.status.success(),
        "scripts/network.sh start failed: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let ready: Value = serde_json::from_slice(&started.stdout).expect("a JSON ready line");
    let urls: Vec<String> = ready["gateways"]
        .as_array()
        .expect("gateways")
        .iter()
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect();
    assert_eq!(urls.len(), 2);
    let pids = std::fs::read_dir(dir.join("pids")).expect("pids").count();
    assert_eq!(pids, 10, "one process per role instance");

    let alice = Http::new(urls[0].clone());
    let alice = alice.as_user(&alice.register_ok("alice", "password-of-alice").await);
    let bob = Http::new(urls[1].clone());
    let bob_account = bob.register_ok("bob", "password-of-bob").await;
    let bob = bob.as_user(&bob_account);
    let room = alice
        .create_room(&json!({ "invite": [bob_account.user_id] }))
        .await
        .expect("createRoom");
    sync_until(&bob, "bob's invite", |b| {
        b["rooms"]["invite"][&room].is_object()
    })
    .await;
    within(180, "join across gateways", bob.join(&room))
        .await
        .expect("join")
        .ok();
    alice
        .send_text(&room, "t1", "over the mixnet")
        .await
        .expect("send")
        .ok();
    sync_until(&bob, "alice's message", |b| {
        b["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .is_some_and(|evs| {
                evs.iter()
                    .any(|e| e["content"]["body"] == "over the mixnet")
            })
    })
    .await;

    for url in ready["metrics"].as_array().expect("metrics") {
        let url = url.as_str().expect("url");
        let s = scrape(url).await;
        assert!(
            s.samples.iter().any(|x| x.name.starts_with("mixgate_")),
            "{url}: no mixgate_ samples"
        );
    }
    let mix1 = scrape(ready["metrics"][3].as_str().expect("mix1 metrics")).await;
    assert!(
        mix1.get("mixgate_node_packets_forwarded_total", &[]) > 0.0,
        "mix 1 forwarded packets"
    );

    let stopped = script(&["stop", &dir.display().to_string()]);
    assert!(
        stopped.status.success(),
        "stop: {}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gone = reqwest::get(format!("{}/_matrix/client/versions", urls[0])).await;
    assert!(gone.is_err(), "gateway 1 still answers after stop");
    let log = std::fs::read_to_string(dir.join("log/gateway1.log")).unwrap_or_default();
    assert!(
        log.contains("stopped"),
        "gateway 1 flushed and stopped cleanly"
    );
    drop(net);
}
