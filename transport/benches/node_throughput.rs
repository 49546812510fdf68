//! Mix node throughput: a real mix node, alone on one thread (a current-thread runtime),
//! fed through real Noise links on loopback by several senders, forwarding to a sink node
//! over its own Noise link. Run with:
//!
//! `cargo bench -p transport --bench node_throughput`
//!
//! The senders and the sink are fake nodes registered with a real directory (so the mix
//! accepts their links and knows the sink as a next hop). Every packet has two hops: the mix
//! under test (with a sender-chosen Exp(μ) delay) and the sink. The sink recognises each
//! packet by the ephemeral key `α₁` the mix exposes, so it measures the *added* latency:
//! arrival − send − chosen delay. The offered rate climbs a ladder; a step passes when every
//! packet arrives, the node counts no drop and the added latency's p99 stays under μ (the mean
//! delay a sender chose; 10 ms if μ is smaller).
//! Printed per step: offered and achieved packets/s, the node thread's CPU use, CPU µs per
//! packet, losses and added latency. `MIXGATE_BENCH_SECS` sets the step length (default 2),
//! `MIXGATE_BENCH_RATES` the ladder (comma-separated packets/s), `MIXGATE_BENCH_MU_MS` μ.
//! `MIXGATE_BENCH_FLOOD=1` adds a fifth peer flooding forged packets from its own thread,
//! to show what the measured senders keep.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/fake_nodes.rs"]
mod fake_nodes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_nodes::*;
use transport::directory::{Role, TrafficParams};
use transport::link::{Frame, FrameKind, LinkSender};
use transport::node::{NodeConfig, NodeStats};

const SENDERS: usize = 4;

fn env<T: std::str::FromStr>(k: &str) -> Option<T> {
    std::env::var(k).ok().and_then(|v| v.parse().ok())
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let secs: f64 = env("MIXGATE_BENCH_SECS").unwrap_or(2.0);
    let mu_ms: f64 = env("MIXGATE_BENCH_MU_MS").unwrap_or(50.0);
    let rates: Vec<u64> = std::env::var("MIXGATE_BENCH_RATES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![2_000, 5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 40_000]);
    let gen = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let params = TrafficParams {
        mix_loop_per_s: 0.0,
        ..TrafficParams::default()
    };
    let (dir_addr, authority) = gen.block_on(start_directory(params.clone()));
    // The mix under test, on its own thread and current-thread runtime.
    let mut cfg = NodeConfig::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Role::Mix { layer: 1 },
        [7; 32],
        dir_addr,
        vec![authority],
    );
    cfg.refresh = Duration::from_millis(200);
    cfg.epoch_ms = EPOCH_MS;
    cfg.replay_capacity = 2_000_000;
    let (mix_id, mix_addr, stats, clock) = node_thread(cfg);
    let base = Instant::now();
    let log = Arc::new(Mutex::new(SinkLog::default()));
    let sink = Fake::new(200);
    let senders: Vec<Fake> = (0..SENDERS).map(|i| Fake::new(100 + i as u8)).collect();
    let (mix_hop, sink_hop, links) = gen.block_on(async {
        start_sink(&sink, dir_addr, log.clone(), base).await;
        for s in &senders {
            s.register(dir_addr, Role::Provider, "127.0.0.1:9".into())
                .await;
        }
        let (mix_hop, mix_link) = listed(dir_addr, authority, mix_id).await;
        let mut links = vec![];
        for s in &senders {
            links.push(open_link(mix_addr, &s.link, &mix_link).await);
        }
        (mix_hop, sink.hop(), links)
    });
    let links: Vec<Arc<tokio::sync::Mutex<LinkSender>>> = links
        .into_iter()
        .map(|l| Arc::new(tokio::sync::Mutex::new(l)))
        .collect();
    // Optionally a fifth peer floods the node with forged packets (each costs a full X25519)
    // from its own thread, as fast as its link goes, for the whole run.
    let flood = std::env::var("MIXGATE_BENCH_FLOOD").is_ok_and(|v| v == "1");
    let flooded = Arc::new(AtomicU64::new(0));
    if flood {
        let flooder = Fake::new(150);
        gen.block_on(flooder.register(dir_addr, Role::Provider, "127.0.0.1:9".into()));
        let (flooded, mix_hop_key) = (flooded.clone(), mix_hop.clone());
        let _ = std::thread::Builder::new()
            .name("flooder".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let (_, mix_link) = listed(dir_addr, authority, mix_hop_key.id).await;
                    let mut tx = open_link(mix_addr, &flooder.link, &mix_link).await;
                    let mut junk = [0u8; transport::packet::PACKET_SIZE];
                    let mut n = 0u64;
                    loop {
                        n += 1;
                        junk[..8].copy_from_slice(&n.to_le_bytes());
                        junk[0] = transport::packet::VERSION;
                        if tx
                            .send(&Frame::new(FrameKind::Packet, &junk))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        flooded.fetch_add(1, Ordering::Relaxed);
                    }
                });
            });
        std::thread::sleep(Duration::from_secs(1));
    }
    println!(
        "mix node on one thread; {SENDERS} sender links; μ = {mu_ms} ms; {secs} s per step{}",
        if flood {
            "; a fifth peer flooding forged packets"
        } else {
            ""
        }
    );
    println!("| offered pkt/s | achieved pkt/s | node CPU | CPU µs/pkt | lost | node drops | added latency p50 / p99 / max ms | pass |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut best = 0u64;
    for (step, &rate) in rates.iter().enumerate() {
        let n = (rate as f64 * secs) as usize;
        let prepared = prepare(n, &mix_hop, &sink_hop, mu_ms, step as u64 + 1);
        log.lock().unwrap().expect(&prepared);
        let drops_before = drop_count(&stats, flood);
        let flood0 = (
            flooded.load(Ordering::Relaxed),
            stats.get("dropped_peer_full"),
        );
        let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let prepared = Arc::new(prepared);
        let cpu0 = clock.seconds();
        let t0 = Instant::now();
        gen.block_on(async {
            let mut tasks = vec![];
            for (k, link) in links.iter().enumerate() {
                let link = link.clone();
                let prepared = prepared.clone();
                let sent_at = sent_at.clone();
                tasks.push(tokio::spawn(async move {
                    let mut link = link.lock().await;
                    let start = Instant::now();
                    // Packets k, k + SENDERS, …; packet i is due at i / rate.
                    let mut i = k;
                    while i < n {
                        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                        let now = Instant::now();
                        if due > now {
                            tokio::time::sleep_until(due.into()).await;
                        }
                        let f = Frame::new(FrameKind::Packet, prepared[i].packet.as_bytes());
                        sent_at[i].store(base.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        link.send(&f).await.unwrap();
                        i += SENDERS;
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            // Drain: wait for the longest delays plus a margin.
            let deadline = Instant::now()
                + Duration::from_secs(2)
                + Duration::from_secs_f64(mu_ms * 12.0 / 1000.0);
            while Instant::now() < deadline && log.lock().unwrap().received < n as u64 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let wall = t0.elapsed().as_secs_f64();
        let cpu = clock.seconds() - cpu0;
        let l = log.lock().unwrap();
        let mut added = vec![];
        let mut last_arrival = 0u64;
        for i in 0..n {
            let a = l.arrivals[i];
            if a == 0 {
                continue;
            }
            last_arrival = last_arrival.max(a);
            let s = sent_at[i].load(Ordering::Relaxed);
            let d = u64::from(prepared[i].delay_us) * 1000;
            added.push((a as f64 - s as f64 - d as f64) / 1e6);
        }
        let got = added.len();
        let first_send = sent_at
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        let span = (last_arrival.saturating_sub(first_send)) as f64 / 1e9;
        let achieved = got as f64 / span.max(1e-9);
        let lost = n - got;
        let drops = drop_count(&stats, flood) - drops_before;
        if flood {
            println!(
                "  (flood: {:.0} forged frames/s sent, {:.0}/s dropped at its own queue)",
                (flooded.load(Ordering::Relaxed) - flood0.0) as f64 / wall,
                (stats.get("dropped_peer_full") - flood0.1) as f64 / wall
            );
        }
        let (p50, p99, max) = (
            pct(&mut added, 0.5),
            pct(&mut added, 0.99),
            pct(&mut added, 1.0),
        );
        let pass = lost == 0 && drops == 0 && p99 < mu_ms.max(10.0);
        if pass {
            best = best.max(rate);
        }
        println!(
            "| {rate} | {achieved:.0} | {:.0}% | {:.1} | {lost} | {drops} | {p50:.2} / {p99:.2} / {max:.2} | {} |",
            100.0 * cpu / wall,
            cpu * 1e6 / got.max(1) as f64,
            if pass { "yes" } else { "no" }
        );
        drop(l);
        if !pass {
            break;
        }
    }
    println!("sustained: {best} packets/s through one mix node thread");
}

/// Drops that hit the measured traffic (with a flood, forged packets' bad MACs and the
/// flooder's own queue overflowing are the flood's, not the measured senders').
fn drop_count(s: &NodeStats, flood: bool) -> u64 {
    let mut keys = vec![
        "dropped_overload",
        "dropped_malformed",
        "dropped_replay",
        "dropped_unknown_hop",
    ];
    if !flood {
        keys.push("dropped_bad_mac");
        keys.push("dropped_peer_full");
    }
    keys.iter().map(|k| s.get(k)).sum()
}
