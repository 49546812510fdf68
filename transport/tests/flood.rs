//! A flooding peer does not stop anyone else's traffic: one registered peer floods a mix
//! node over four links with packets that each cost the node a full X25519 (forged headers),
//! while another peer sends at a tenth of that pace or less. Every packet of the quiet peer
//! still reaches the next hop; the flood is held to its own bounded queue (the node stops
//! reading its links while that queue is full).
//! No timing assertions: the waits only guard against hangs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fake_nodes::*;
use common::RunningNode;
use rand::RngCore;
use transport::directory::{Role, TrafficParams};
use transport::link::{Frame, FrameKind};
use transport::node::NodeConfig;
use transport::packet::{PACKET_SIZE, VERSION};

const QUIET: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_does_not_stop_another() {
    let params = TrafficParams {
        mix_loop_per_s: 0.0,
        ..TrafficParams::default()
    };
    let (dir, authority) = start_directory(params).await;
    let mut cfg = NodeConfig::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Role::Mix { layer: 1 },
        [7; 32],
        dir,
        vec![authority],
    );
    cfg.refresh = Duration::from_millis(100);
    cfg.epoch_ms = EPOCH_MS;
    cfg.replay_capacity = 1_000_000;
    let mix = RunningNode::start(cfg, None).await.unwrap();
    let base = Instant::now();
    let log = Arc::new(Mutex::new(SinkLog::default()));
    let (sink, flooder, quiet) = (Fake::new(200), Fake::new(100), Fake::new(101));
    start_sink(&sink, dir, log.clone(), base).await;
    flooder
        .register(dir, Role::Provider, "127.0.0.1:9".into())
        .await;
    quiet
        .register(dir, Role::Provider, "127.0.0.1:9".into())
        .await;
    let (mix_hop, mix_link) = listed(dir, authority, mix.id).await;
    let packets = prepare(QUIET, &mix_hop, &sink.hop(), 0.0, 1);
    log.lock().unwrap().expect(&packets);

    // The flood: forged packets (right version, random rest) as fast as four links go.
    let stop = Arc::new(AtomicBool::new(false));
    let flooded = Arc::new(AtomicU64::new(0));
    let mut floods = vec![];
    for _ in 0..4 {
        let mut tx = open_link(mix.addr, &flooder.link, &mix_link).await;
        let (stop, flooded) = (stop.clone(), flooded.clone());
        floods.push(tokio::spawn(async move {
            let mut junk = [0u8; PACKET_SIZE];
            let mut rng = rand::rngs::OsRng;
            while !stop.load(Ordering::Relaxed) {
                rng.fill_bytes(&mut junk[..64]);
                junk[0] = VERSION;
                if tx
                    .send(&Frame::new(FrameKind::Packet, &junk))
                    .await
                    .is_err()
                {
                    return;
                }
                flooded.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut quiet_tx = open_link(mix.addr, &quiet.link, &mix_link).await;
    // Let the flood fill its share before the quiet peer starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    for p in &packets {
        quiet_tx
            .send(&Frame::new(FrameKind::Packet, p.packet.as_bytes()))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let quiet_secs = t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.lock().unwrap().arrived() < QUIET && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flood_sent = flooded.load(Ordering::Relaxed);
    let flood_secs = base.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for f in floods {
        let _ = f.await;
    }
    let arrived = log.lock().unwrap().arrived();
    let s = &mix.stats;
    eprintln!(
        "flood: {flood_sent} frames ({:.0}/s); quiet: {QUIET} at {:.0}/s, {arrived} arrived; \
         node: bad mac {}, dropped_peer_full {}, dropped_overload {}",
        flood_sent as f64 / flood_secs,
        QUIET as f64 / quiet_secs,
        s.get("dropped_bad_mac"),
        s.get("dropped_peer_full"),
        s.get("dropped_overload"),
    );
    // The flood ran at far more than ten times the quiet peer's pace, and the node worked
    // through it (each forged packet refused after its X25519)...
    assert!(flood_sent as f64 / flood_secs > 10.0 * QUIET as f64 / quiet_secs);
    assert!(s.get("dropped_bad_mac") > 0, "the flood reached the worker");
    // ...held back at its own links (the node stops reading a peer whose queue is full)
    // rather than dropped, and nobody else's packets were dropped...
    assert_eq!(s.get("dropped_overload"), 0);
    // ...and every packet of the quiet peer went through.
    assert_eq!(arrived, QUIET, "the quiet peer lost packets to the flood");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_opening_many_links_keeps_only_a_few() {
    let params = TrafficParams {
        mix_loop_per_s: 0.0,
        ..TrafficParams::default()
    };
    let (dir, authority) = start_directory(params).await;
    let mut cfg = NodeConfig::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Role::Mix { layer: 1 },
        [8; 32],
        dir,
        vec![authority],
    );
    cfg.refresh = Duration::from_millis(100);
    cfg.epoch_ms = EPOCH_MS;
    cfg.replay_capacity = 1_000_000;
    let mix = RunningNode::start(cfg, None).await.unwrap();
    let (greedy, other) = (Fake::new(110), Fake::new(111));
    greedy
        .register(dir, Role::Provider, "127.0.0.1:9".into())
        .await;
    other
        .register(dir, Role::Provider, "127.0.0.1:9".into())
        .await;
    let (_, mix_link) = listed(dir, authority, mix.id).await;
    // The first link waits until the node's document lists the peer (earlier attempts are
    // refused as unknown keys); count from there.
    let mut links = vec![open_link(mix.addr, &greedy.link, &mix_link).await];
    let before = mix.stats.get("links_refused");
    for _ in 1..10 {
        links.push(open_link(mix.addr, &greedy.link, &mix_link).await);
    }
    // Handshakes complete, then the node closes every link beyond the peer's allowance.
    let refused = || mix.stats.get("links_refused") - before;
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused() < 6 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(refused(), 6, "4 links kept, 6 refused");
    // Another peer is not affected by the greedy one's links.
    let mut tx = open_link(mix.addr, &other.link, &mix_link).await;
    tx.send(&Frame::new(FrameKind::Padding, &[])).await.unwrap();
    drop(links);
}
