//! End-to-end latency on the loopback network (ignored by default; prints figures):
//!
//! `cargo test --release -p transport --test latency -- --ignored --nocapture`
//!
//! Latency is from `send` to the receiver's `recv` for single-fragment messages, compared
//! with a Monte-Carlo run of the Poisson model (Poisson send slots with the build margin,
//! three mix delays Exp(μ), polling at a constant rate; the message completes with the first
//! of its two packets). Also printed: the time from `send` to the `Delivered` outcome, which
//! waits for the recipient's end-to-end confirmation to come back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rand::Rng;
use transport::client::MemoryOutbox;
use transport::directory::TrafficParams;
use transport::util::exp_sample;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The client's build margin (packets are built this long before their slot).
const BUILD_MARGIN_S: f64 = 0.005;

/// Model: send slots are a Poisson(λ) process; the packet for slot `k` is built at
/// `max(slot k-1, slot k - margin)`, so a message queued at time 0 leaves in the first slot
/// built after 0 (data) and the next one (parity). Each packet crosses three Exp(μ) delays and
/// is seen at the first poll after it arrives; the message completes with the first of the two.
fn model(p: &TrafficParams, n: usize) -> Vec<f64> {
    let mut rng = rand::thread_rng();
    let poll = 1.0 / p.poll_per_s;
    let gap = 1.0 / p.lambda_per_s;
    (0..n)
        .map(|_| {
            let phase: f64 = rng.gen_range(0.0..poll);
            // Slots around time 0: start well before it.
            let mut prev = -10.0 * gap - 1.0;
            let mut slot = prev + exp_sample(&mut rng, gap);
            while (prev.max(slot - BUILD_MARGIN_S)) < 0.0 {
                prev = slot;
                slot += exp_sample(&mut rng, gap);
            }
            let slots = [slot, slot + exp_sample(&mut rng, gap)];
            let mut best = f64::MAX;
            for t in slots {
                let arrive = t
                    + (0..3)
                        .map(|_| exp_sample(&mut rng, p.mu_ms / 1000.0))
                        .sum::<f64>();
                let seen = phase + ((arrive - phase) / poll).ceil().max(0.0) * poll;
                best = best.min(seen);
            }
            best * 1000.0
        })
        .collect()
}

async fn measure(params: TrafficParams, n: usize, spacing: Duration) -> (Vec<f64>, Vec<f64>) {
    let poll_per_s = params.poll_per_s;
    let net = start_net(params, 2, 2).await;
    let a = client(&net, 0, 0, Arc::new(MemoryOutbox::default())).await;
    let mut b = client(&net, 1, 1, Arc::new(MemoryOutbox::default())).await;
    let ba = b.address();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut out = vec![];
    let mut confirmed = vec![];
    for i in 0..n {
        let t0 = Instant::now();
        let h = a
            .send(&ba, (i as u32).to_be_bytes().to_vec())
            .await
            .unwrap();
        let r = tokio::time::timeout(Duration::from_secs(60), b.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.bytes, (i as u32).to_be_bytes());
        out.push(t0.elapsed().as_secs_f64() * 1000.0);
        let o = tokio::time::timeout(Duration::from_secs(60), h.outcome())
            .await
            .unwrap();
        assert_eq!(o, transport::client::Outcome::Delivered);
        confirmed.push(t0.elapsed().as_secs_f64() * 1000.0);
        // Random extra wait so that send times are not phase-locked to the poll schedule.
        let jitter = rand::thread_rng().gen_range(0.0..1.0 / poll_per_s);
        tokio::time::sleep(spacing + Duration::from_secs_f64(jitter)).await;
    }
    (out, confirmed)
}

fn report(name: &str, p: &TrafficParams, (mut got, mut confirmed): (Vec<f64>, Vec<f64>)) {
    let mut m = model(p, 20_000);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    eprintln!(
        "{name}: λ={}/s μ={} ms poll={}/s n={}: measured p50 {:.1} ms, p90 {:.1} ms, mean {:.1} ms | model p50 {:.1} ms, p90 {:.1} ms, mean {:.1} ms",
        p.lambda_per_s,
        p.mu_ms,
        p.poll_per_s,
        got.len(),
        pct(&mut got, 0.5),
        pct(&mut got, 0.9),
        mean(&got),
        pct(&mut m, 0.5),
        pct(&mut m, 0.9),
        mean(&m)
    );
    eprintln!(
        "{name}: send → Delivered (the recipient's confirmation back): p50 {:.1} ms, p90 {:.1} ms, mean {:.1} ms",
        pct(&mut confirmed, 0.5),
        pct(&mut confirmed, 0.9),
        mean(&confirmed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn latency_mu_zero() {
    let p = TrafficParams {
        lambda_per_s: 200.0,
        loop_per_s: 2.0,
        mix_loop_per_s: 1.0,
        mu_ms: 0.0,
        poll_per_s: 200.0,
        poll_batch: 4,
        ..TrafficParams::default()
    };
    let got = measure(p.clone(), 200, Duration::from_millis(30)).await;
    report("mu=0", &p, got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn latency_defaults() {
    let p = TrafficParams::default();
    let got = measure(p.clone(), 40, Duration::from_millis(1500)).await;
    report("defaults", &p, got);
}
