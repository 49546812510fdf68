//! Prometheus metrics of every role, read with Python's official text parser
//! (`tests/ops/prom_parse.py`; `.ci/run` installs it in `target/ops-venv`):
//! - `mixgate up --metrics`: the whole network in one scrape; the CS API, storage, peering and
//!   transport counters move when two users on two gateways chat, and no label carries a user
//!   id, room id, server name or message text;
//! - `mixgate directory`, `mixnode`, `provider` and `gateway` as separate processes, each with
//!   its own listener (from the file's `metrics_listen` or `--metrics`);
//! - a metrics address that cannot be bound stops the process with an error naming the key.

use std::time::Duration;

use mixgate_tests::{
    ops::{free_port, scrape, wait_metrics, RoleProcess, Scrape},
    within, Http, Options, TestGateway, TestNetwork,
};
use serde_json::json;

/// Scrapes `base` until `pred` holds (bounded: `secs`); the last scrape.
async fn scrape_until(base: &str, secs: u64, what: &str, pred: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = Scrape::default();
    for _ in 0..secs * 4 {
        last = scrape(base).await;
        if pred(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "{what}: never seen in {secs} s; last scrape: {:?}",
        last.samples
    );
}

/// Syncs `http` until `pred` holds on a response (bounded: `secs`).
async fn sync_until(http: &Http, secs: u64, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
    let mut since: Option<String> = None;
    for _ in 0..secs {
        let reply = http.sync(since.as_deref(), 1000, None).await.expect("sync");
        if pred(&reply.body) {
            return;
        }
        since = reply.body["next_batch"].as_str().map(str::to_owned);
    }
    panic!("{what}: not seen within {secs} syncs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_a_network_move_with_its_traffic() {
    let net = TestNetwork::start_with_metrics(2).await;
    let base = net
        .metrics
        .clone()
        .expect("a metrics URL in the ready line");
    let before = scrape(&base).await;
    assert_eq!(before.get("mixgate_users", &[("gateway", "0")]), 0.0);
    assert!(before.get("mixgate_directory_epoch", &[]) > 0.0);
    assert_eq!(before.get("mixgate_directory_signatures", &[]), 1.0);

    let (gw0, gw1) = (&net.gateways[0], &net.gateways[1]);
    let alice = Http::new(gw0.url.clone());
    let alice = alice.as_user(&alice.register_ok("alice", "password-of-alice").await);
    let bob = Http::new(gw1.url.clone());
    let bob = bob.as_user(&bob.register_ok("bob", "password-of-bob").await);
    let bob_id = format!("@bob:{}", gw1.server_name);
    let room = alice
        .create_room(&json!({ "invite": [bob_id], "name": "secret-room-name" }))
        .await
        .expect("createRoom");
    sync_until(&bob, 60, "bob's invite", |b| {
        b["rooms"]["invite"][&room].is_object()
    })
    .await;
    within(60, "join across gateways", bob.join(&room))
        .await
        .expect("join")
        .ok();
    alice
        .send_text(&room, "t1", "a-message-text")
        .await
        .expect("send")
        .ok();
    sync_until(&bob, 60, "alice's message at bob", |b| {
        b["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .is_some_and(|evs| evs.iter().any(|e| e["content"]["body"] == "a-message-text"))
    })
    .await;

    let g0 = [("gateway", "0")];
    let after = scrape_until(&base, 60, "a confirmed delivery", |s| {
        s.get(
            "mixgate_transport_deliveries_total",
            &[("gateway", "0"), ("outcome", "delivered")],
        ) > 0.0
    })
    .await;
    for (name, kind) in [
        ("mixgate_http_requests", "counter"),
        ("mixgate_users", "gauge"),
        ("mixgate_rooms", "gauge"),
        ("mixgate_events_stored", "gauge"),
        ("mixgate_transport_packets_sent", "counter"),
        ("mixgate_transport_mailbox_polls", "counter"),
        ("mixgate_transport_deliveries", "counter"),
        ("mixgate_transport_retransmissions", "counter"),
        ("mixgate_transport_unroutable_fragments", "counter"),
        ("mixgate_transport_delivery_latency_seconds", "histogram"),
        ("mixgate_peering_messages_sent", "counter"),
        ("mixgate_node_packets_received", "counter"),
        ("mixgate_node_packets_dropped", "counter"),
        ("mixgate_node_mailbox_offered_again", "counter"),
        ("mixgate_node_queue_depth", "gauge"),
        ("mixgate_node_links", "gauge"),
        ("mixgate_directory_epoch", "gauge"),
        ("mixgate_directory_signatures", "gauge"),
    ] {
        assert!(after.has_family(name, kind), "no {kind} {name}");
    }
    assert_eq!(after.get("mixgate_users", &g0), 1.0);
    assert_eq!(after.get("mixgate_users", &[("gateway", "1")]), 1.0);
    assert!(after.get("mixgate_rooms", &g0) >= 1.0);
    assert!(
        after.get("mixgate_events_stored", &g0) > before.get("mixgate_events_stored", &g0),
        "events stored grew"
    );
    let requests = |s: &Scrape, group: &str| {
        s.get(
            "mixgate_http_requests_total",
            &[("gateway", "0"), ("group", group)],
        )
    };
    assert!(requests(&after, "client/register") >= 1.0);
    assert!(requests(&after, "client/createRoom") >= 1.0);
    assert_eq!(
        after.get(
            "mixgate_http_requests_total",
            &[
                ("gateway", "0"),
                ("group", "client/rooms/send"),
                ("status", "200")
            ]
        ),
        1.0
    );
    assert!(
        after.get(
            "mixgate_http_request_duration_seconds_count",
            &[("gateway", "0"), ("group", "client/rooms/send")]
        ) >= 1.0
    );
    assert!(after.get("mixgate_peering_messages_sent_total", &g0) > 0.0);
    assert!(
        after.get(
            "mixgate_peering_messages_received_total",
            &[("gateway", "1")]
        ) > 0.0
    );
    let real = |s: &Scrape| {
        s.get(
            "mixgate_transport_packets_sent_total",
            &[("gateway", "0"), ("kind", "real")],
        )
    };
    assert!(real(&after) > real(&before), "real packets were sent");
    assert!(
        after.get("mixgate_transport_delivery_latency_seconds_count", &g0) >= 1.0,
        "a delivery latency was observed"
    );
    assert!(
        after.get("mixgate_node_packets_received_total", &[("node", "mix1.0")])
            + after.get("mixgate_node_packets_received_total", &[("node", "mix1.1")])
            > 0.0
    );
    // Nothing identifying in the labels.
    for v in after.label_values() {
        for secret in [
            gw0.server_name.as_str(),
            gw1.server_name.as_str(),
            room.as_str(),
            "alice",
            "bob",
            "secret-room-name",
            "a-message-text",
        ] {
            assert!(!v.contains(secret), "label value {v:?} shows {secret:?}");
        }
        assert!(
            !v.contains(':'),
            "label value {v:?} looks like an id or an address"
        );
    }
}

/// A 32-byte seed file and the Ed25519 public key (hex) it makes.
fn seed_file(path: &std::path::Path, byte: u8) -> String {
    let seed = [byte; 32];
    std::fs::write(path, seed).expect("write a key file");
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    key.verifying_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_serves_its_own_metrics() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let d = dir.path();
    let authority = seed_file(&d.join("authority.key"), 7);
    let dir_port = free_port();
    let dir_metrics = free_port();
    std::fs::write(
        d.join("directory.toml"),
        format!(
            "listen = \"127.0.0.1:{dir_port}\"\nkey_file = \"{}\"\nmetrics_listen = \"127.0.0.1:{dir_metrics}\"\n",
            d.join("authority.key").display()
        ),
    )
    .expect("write directory.toml");
    let node_file = |role: &str, extra: &str, port: u16| {
        let file = d.join(format!("{role}.toml"));
        std::fs::write(
            &file,
            format!(
                "listen = \"127.0.0.1:{port}\"\nkey_file = \"{}\"\nrole = \"{role}\"\n{extra}\
                 directory = \"127.0.0.1:{dir_port}\"\nauthorities = [\"{authority}\"]\n",
                d.join(format!("{role}.key")).display()
            ),
        )
        .expect("write a node file");
        file
    };
    let mix_metrics = free_port();
    let mix = node_file(
        "mix",
        &format!("layer = 1\nmetrics_listen = \"127.0.0.1:{mix_metrics}\"\n"),
        free_port(),
    );
    let provider = node_file("provider", "", free_port());
    let provider_metrics = free_port();

    let s = |p: &std::path::Path| p.display().to_string();
    let _directory = RoleProcess::start(
        &["directory", "--config", &s(&d.join("directory.toml"))],
        d.join("directory.log"),
    );
    let dir_base = format!("http://127.0.0.1:{dir_metrics}");
    wait_metrics(&dir_base, 30).await;
    let _mix = RoleProcess::start(&["mixnode", "--config", &s(&mix)], d.join("mix.log"));
    let _provider = RoleProcess::start(
        &[
            "provider",
            "--config",
            &s(&provider),
            "--metrics",
            &format!("127.0.0.1:{provider_metrics}"),
        ],
        d.join("provider.log"),
    );
    // The directory's node count moves as the two nodes register.
    let dir_scrape = scrape_until(&dir_base, 30, "two registered nodes", |s| {
        s.get("mixgate_directory_nodes", &[]) >= 2.0
    })
    .await;
    assert!(dir_scrape.get("mixgate_directory_epoch", &[]) > 0.0);
    assert_eq!(dir_scrape.get("mixgate_directory_signatures", &[]), 1.0);
    assert!(dir_scrape.get("mixgate_directory_registrations_total", &[]) >= 2.0);
    assert!(
        !dir_scrape.has_family("mixgate_http_requests", "counter")
            || dir_scrape
                .samples
                .iter()
                .all(|x| !x.name.starts_with("mixgate_http_requests"))
    );

    for (base, node) in [
        (format!("http://127.0.0.1:{mix_metrics}"), "mix"),
        (format!("http://127.0.0.1:{provider_metrics}"), "provider"),
    ] {
        wait_metrics(&base, 30).await;
        let sc = scrape(&base).await;
        assert!(
            sc.has_family("mixgate_node_packets_received", "counter"),
            "{node}"
        );
        assert!(sc.has_family("mixgate_node_queue_depth", "gauge"), "{node}");
        assert!(sc.has_family("mixgate_node_links", "gauge"), "{node}");
        assert!(
            sc.value(
                "mixgate_node_packets_dropped_total",
                &[("node", node), ("reason", "replay")]
            )
            .is_some(),
            "{node}: drops by reason"
        );
        assert!(!sc.has_family("mixgate_directory_epoch", "gauge"));
    }

    // A lone gateway with `metrics_listen` in its file.
    let gw_metrics = free_port();
    let gw = TestGateway::start_with(Options {
        config: format!(
            "auth_attempts_per_minute = 10000\nmetrics_listen = \"127.0.0.1:{gw_metrics}\"\n"
        ),
        ..Options::default()
    })
    .await;
    let gw_base = format!("http://127.0.0.1:{gw_metrics}");
    let before = scrape(&gw_base).await;
    gw.http().register_ok("carol", "password-of-carol").await;
    let after = scrape(&gw_base).await;
    assert_eq!(after.get("mixgate_users", &[("gateway", "0")]), 1.0);
    let reg = |s: &Scrape| {
        s.get(
            "mixgate_http_requests_total",
            &[("group", "client/register")],
        )
    };
    assert!(reg(&after) > reg(&before), "the register counter moved");
    assert!(
        !after.has_family("mixgate_transport_packets_sent", "counter"),
        "a lone gateway"
    );
}

#[tokio::test]
async fn a_metrics_address_in_use_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, format!("metrics_listen = \"127.0.0.1:{port}\"\n")).expect("write");
    let mut gw = RoleProcess::start(
        &[
            "gateway",
            "--config",
            &config.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--data",
            &dir.path().join("data").display().to_string(),
        ],
        dir.path().join("gateway.log"),
    );
    let status = gw.wait_exit(30).await.expect("the gateway exits");
    assert!(!status.success());
    let log = gw.log();
    assert!(log.contains("metrics_listen"), "{log}");
    assert!(
        log.contains(&config.display().to_string()),
        "names the file: {log}"
    );

    let dir_file = dir.path().join("directory.toml");
    std::fs::write(
        &dir_file,
        format!(
            "listen = \"127.0.0.1:{}\"\nkey_file = \"{}\"\n",
            free_port(),
            dir.path().join("a.key").display()
        ),
    )
    .expect("write");
    let mut d = RoleProcess::start(
        &[
            "directory",
            "--config",
            &dir_file.display().to_string(),
            "--metrics",
            &format!("127.0.0.1:{port}"),
        ],
        dir.path().join("directory.log"),
    );
    let status = d.wait_exit(30).await.expect("the directory exits");
    assert!(!status.success());
    let log = d.log();
    assert!(
        log.contains("metrics_listen") && log.contains("--metrics"),
        "{log}"
    );
    drop(taken);
}
