//! Provider throughput: a real provider, alone on one thread, serving many polling gateways
//! over real Noise links while mixes deliver packets into their mailboxes. Run with:
//!
//! `cargo bench -p transport --bench provider_throughput`
//!
//! `MIXGATE_BENCH_GATEWAYS` gateways (default 1000) each hold a link and poll at
//! `MIXGATE_BENCH_POLL` per second (default 2, as the default parameters; each poll is
//! answered with exactly 8 frames). Four fake layer-3 mixes deliver packets, each with a
//! SURB-ACK the provider must send on after storing (to a sink, which times it), to random
//! gateways at a climbing rate. Printed per step: deliveries offered and stored, polls
//! answered, frames sent to gateways, the provider thread's CPU use and CPU µs per delivery
//! (with the poll serving counted in), and the ack latency (arrival at the sink − send).
//! A step passes when every delivery is stored and acknowledged, every poll answered and
//! the ack latency's p99 stays under 50 ms. `MIXGATE_BENCH_RATES` and `MIXGATE_BENCH_SECS`
//! as for `node_throughput`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/fake_nodes.rs"]
mod fake_nodes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_nodes::*;
use rand::{Rng, SeedableRng};
use tokio::net::TcpStream;
use transport::directory::{mailbox_id, Role, TrafficParams};
use transport::link::{connect, Frame, FrameKind, LinkConfig, LinkKeypair, LinkSender};
use transport::node::{poll, NodeConfig};
use transport::packet::{
    create_forward_with, create_surb_with, ForwardSecrets, RouteHop, SecretKey,
};

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

/// Deliveries to random gateways' mailboxes, each with a one-hop SURB-ACK to the sink; the
/// sink sees the ack's α (its first ephemeral).
fn deliveries(
    n: usize,
    provider: &RouteHop,
    sink: &RouteHop,
    mailboxes: &[[u8; 16]],
    seed: u64,
) -> Vec<Prepared> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..2u64)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 16 + t);
                    let recipient = SecretKey::random().public();
                    (0..n.div_ceil(2))
                        .map(|_| {
                            let eph = SecretKey::random();
                            let alpha = eph.public();
                            let (ack, _) = create_surb_with(
                                std::slice::from_ref(sink),
                                &[0; 16],
                                &[eph],
                                rng.gen(),
                                rng.gen(),
                            )
                            .unwrap();
                            let mb = mailboxes[rng.gen_range(0..mailboxes.len())];
                            let secrets = ForwardSecrets::random(&mut rng, 1);
                            let packet = create_forward_with(
                                std::slice::from_ref(provider),
                                &mb,
                                &recipient,
                                Some(&ack),
                                b"bench",
                                &secrets,
                            )
                            .unwrap();
                            Prepared {
                                packet,
                                alpha1: alpha,
                                delay_us: 0,
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<Prepared> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.truncate(n);
        all
    })
}

/// One gateway: polls at `rate` per second, acknowledging what it got, and counts frames.
async fn gateway(
    addr: SocketAddr,
    provider_link: [u8; 32],
    key: LinkKeypair,
    rate: f64,
    frames: Arc<AtomicU64>,
    items: Arc<AtomicU64>,
) {
    let sock = TcpStream::connect(addr).await.unwrap();
    let (mut tx, mut rx) = connect(sock, &key, &provider_link, &LinkConfig::default())
        .await
        .unwrap();
    let acks: Arc<Mutex<Vec<u64>>> = Arc::default();
    let acks2 = acks.clone();
    tokio::spawn(async move {
        while let Ok(f) = rx.recv().await {
            frames.fetch_add(1, Ordering::Relaxed);
            if let Some((id, _)) = poll::decode_answer(&f.body[..]) {
                items.fetch_add(1, Ordering::Relaxed);
                acks2.lock().unwrap().push(id);
            }
        }
    });
    // Polls at a constant rate, each gateway at its own phase.
    let phase = rand::thread_rng().gen_range(0.0..1.0 / rate);
    tokio::time::sleep(Duration::from_secs_f64(phase)).await;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    loop {
        tick.tick().await;
        let ids: Vec<u64> = {
            let mut a = acks.lock().unwrap();
            let n = a.len().min(poll::MAX_POLL_ACKS);
            a.drain(..n).collect()
        };
        if tx
            .send(&Frame::new(FrameKind::Poll, &poll::encode_poll(&ids, &[])))
            .await
            .is_err()
        {
            return;
        }
    }
}

fn main() {
    let secs: f64 = env("MIXGATE_BENCH_SECS").unwrap_or(3.0);
    let gateways: usize = env("MIXGATE_BENCH_GATEWAYS").unwrap_or(1000);
    let poll_rate: f64 = env("MIXGATE_BENCH_POLL").unwrap_or(2.0);
    let rates: Vec<u64> = std::env::var("MIXGATE_BENCH_RATES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 2_000, 4_000, 6_000, 8_000, 10_000, 12_000]);
    let gen = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let params = TrafficParams {
        mix_loop_per_s: 0.0,
        ..TrafficParams::default()
    };
    let (dir, authority) = gen.block_on(start_directory(params));
    let mut cfg = NodeConfig::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Role::Provider,
        [6; 32],
        dir,
        vec![authority],
    );
    cfg.refresh = Duration::from_millis(200);
    cfg.epoch_ms = EPOCH_MS;
    cfg.replay_capacity = 2_000_000;
    let (prov_id, prov_addr, stats, clock) = node_thread(cfg);
    let base = Instant::now();
    let log = Arc::new(Mutex::new(SinkLog::default()));
    let sink = Fake::new(201);
    let senders: Vec<Fake> = (0..SENDERS).map(|i| Fake::new(120 + i as u8)).collect();
    let frames = Arc::new(AtomicU64::new(0));
    let items = Arc::new(AtomicU64::new(0));
    let keys: Vec<LinkKeypair> = (0..gateways).map(|_| LinkKeypair::random()).collect();
    let mailboxes: Vec<[u8; 16]> = keys.iter().map(|k| mailbox_id(&k.public)).collect();
    let (prov_hop, links) = gen.block_on(async {
        // The sink stands in for the layer-1 mix the acks go to.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap().to_string();
        tokio::spawn(run_sink(l, sink.link.clone(), log.clone(), base));
        sink.register(dir, Role::Mix { layer: 1 }, a).await;
        for s in &senders {
            s.register(dir, Role::Mix { layer: 3 }, "127.0.0.1:9".into())
                .await;
        }
        let (prov_hop, prov_link) = listed(dir, authority, prov_id).await;
        let mut links = vec![];
        for s in &senders {
            links.push(open_link(prov_addr, &s.link, &prov_link).await);
        }
        for k in keys {
            tokio::spawn(gateway(
                prov_addr,
                prov_link,
                k,
                poll_rate,
                frames.clone(),
                items.clone(),
            ));
        }
        (prov_hop, links)
    });
    let links: Vec<Arc<tokio::sync::Mutex<LinkSender>>> = links
        .into_iter()
        .map(|l| Arc::new(tokio::sync::Mutex::new(l)))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "provider on one thread; {gateways} gateways polling {poll_rate}/s each; {secs} s per step"
    );
    println!("| deliveries offered /s | stored /s | polls answered /s | frames to gateways /s | items handed out /s | provider CPU | CPU µs per delivery | lost | ack latency p50 / p99 ms | pass |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut best = 0;
    for (step, &rate) in rates.iter().enumerate() {
        let n = (rate as f64 * secs) as usize;
        let prepared = Arc::new(deliveries(
            n,
            &prov_hop,
            &sink.hop(),
            &mailboxes,
            step as u64 + 1,
        ));
        log.lock().unwrap().expect(&prepared);
        let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let (stored0, polls0, frames0, items0) = (
            stats.get("stored"),
            stats.get("polls_answered"),
            frames.load(Ordering::Relaxed),
            items.load(Ordering::Relaxed),
        );
        let cpu0 = clock.seconds();
        let t0 = Instant::now();
        gen.block_on(async {
            let mut tasks = vec![];
            for (k, link) in links.iter().enumerate() {
                let (link, prepared, sent_at) = (link.clone(), prepared.clone(), sent_at.clone());
                tasks.push(tokio::spawn(async move {
                    let mut link = link.lock().await;
                    let start = Instant::now();
                    let mut i = k;
                    while i < n {
                        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                        if due > Instant::now() {
                            tokio::time::sleep_until(due.into()).await;
                        }
                        sent_at[i].store(base.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        link.send(&Frame::new(
                            FrameKind::Packet,
                            prepared[i].packet.as_bytes(),
                        ))
                        .await
                        .unwrap();
                        i += SENDERS;
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline && log.lock().unwrap().arrived() < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let wall = t0.elapsed().as_secs_f64();
        let cpu = clock.seconds() - cpu0;
        let l = log.lock().unwrap();
        let mut lat: Vec<f64> = (0..n)
            .filter(|&i| l.arrivals[i] != 0)
            .map(|i| (l.arrivals[i] as f64 - sent_at[i].load(Ordering::Relaxed) as f64) / 1e6)
            .collect();
        let lost = n - lat.len();
        drop(l);
        let stored = stats.get("stored") - stored0;
        let polls = stats.get("polls_answered") - polls0;
        let fr = frames.load(Ordering::Relaxed) - frames0;
        let it = items.load(Ordering::Relaxed) - items0;
        let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
        let expected_polls = gateways as f64 * poll_rate * wall;
        let pass =
            lost == 0 && stored as usize == n && polls as f64 > 0.95 * expected_polls && p99 < 50.0;
        if pass {
            best = rate;
        }
        println!(
            "| {rate} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0}% | {:.1} | {lost} | {p50:.2} / {p99:.2} | {} |",
            stored as f64 / wall,
            polls as f64 / wall,
            fr as f64 / wall,
            it as f64 / wall,
            100.0 * cpu / wall,
            cpu * 1e6 / n.max(1) as f64,
            if pass { "yes" } else { "no" }
        );
        if !pass {
            break;
        }
    }
    println!("sustained: {best} deliveries/s with {gateways} gateways polling {poll_rate}/s, one provider thread");
}
