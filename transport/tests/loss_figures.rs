//! Delivery under packet loss (ignored by default; prints figures):
//!
//! `cargo test --release -p transport --test loss_figures -- --ignored --nocapture`
//!
//! For each loss rate (0, 1%, 5%, 10% of the data frames every link direction carries, on
//! node-to-node links and on the gateway–provider links alike), two sender→receiver pairs
//! each send a paced mix of 1 000 B, 10 000 B and 64 KiB messages. Printed per size: the
//! fraction received, the fraction `Delivered` (confirmed) within the capped retries, latency
//! from `send` to the receiver's `recv`, and the sender's real packets per data fragment (the
//! bandwidth the repair costs, in Poisson send slots that would otherwise carry cover).
//! Set `MIXGATE_LOSS_SCALE` (default 1) to multiply the message counts,
//! `MIXGATE_LOSS_RATES` (comma-separated fractions) to choose the loss rates,
//! `MIXGATE_LOSS_COUNTS` (three numbers: messages of each size per pair, default `60,20,10`),
//! `MIXGATE_LOSS_LAMBDA` (send rate per client, default 50/s), `MIXGATE_LOSS_PACE`
//! (messages started per second per sender, default 2) and `MIXGATE_LOSS_PAIRS` (default 2)
//! for long runs, and `MIXGATE_LOSS_DUPLEX=1` to have both clients of each pair send to
//! each other (twice the messages for the same cover traffic); a long run prints its progress to stderr every 30 s. Each rate ends with a
//! line giving, per size, the 95% upper bound on the loss rate (exact binomial, from the
//! number of messages that did not arrive).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use transport::client::{MemoryOutbox, Outcome};
use transport::directory::TrafficParams;
use transport::link::{FaultSpec, LinkFaults};

const SIZES: [usize; 3] = [1_000, 10_000, 65_536];
/// Messages of each size per pair.
const COUNTS: [usize; 3] = [60, 20, 10];
/// Sender→receiver pairs (default; `MIXGATE_LOSS_PAIRS` overrides).
const PAIRS: usize = 2;
/// How long the harness waits, after the last message was started, for every outcome.
const TAIL: Duration = Duration::from_secs(1800);
/// How often a run prints its progress (to stderr, so the table stays clean).
const PROGRESS: Duration = Duration::from_secs(30);
/// Messages per second each sender starts (paced well under its send rate).
const PACE: f64 = 2.0;

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn counts() -> [usize; 3] {
    let v: Vec<usize> = std::env::var("MIXGATE_LOSS_COUNTS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_default();
    v.try_into().unwrap_or(COUNTS)
}

fn pace() -> f64 {
    env_f64("MIXGATE_LOSS_PACE", PACE)
}

/// Whether both clients of a pair send (`MIXGATE_LOSS_DUPLEX=1`).
fn duplex() -> bool {
    std::env::var("MIXGATE_LOSS_DUPLEX").is_ok_and(|v| v == "1")
}

fn pairs() -> usize {
    env_f64("MIXGATE_LOSS_PAIRS", PAIRS as f64).max(1.0) as usize
}

/// The 95% upper bound on a loss probability after `lost` of `n` (Clopper–Pearson, by
/// bisection on the binomial tail).
fn upper_bound_95(lost: usize, n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    // P(X ≤ lost | p) for X ~ Binomial(n, p), summed in log space.
    let cdf = |p: f64| -> f64 {
        let mut sum = 0.0;
        let mut log_c = 0.0f64; // log C(n, 0)
        for k in 0..=lost {
            if k > 0 {
                log_c += ((n - k + 1) as f64).ln() - (k as f64).ln();
            }
            sum += (log_c + k as f64 * p.ln() + (n - k) as f64 * (1.0 - p).ln()).exp();
        }
        sum
    };
    let (mut lo, mut hi) = (lost as f64 / n as f64, 1.0);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if cdf(mid) > 0.05 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

fn params() -> TrafficParams {
    let lambda = env_f64("MIXGATE_LOSS_LAMBDA", 50.0);
    TrafficParams {
        lambda_per_s: lambda,
        loop_per_s: 2.0,
        mix_loop_per_s: 1.0,
        mu_ms: 2.0,
        // Poll capacity (× 16) must exceed 1.25 × 2(λ + loop): 20/s up to λ = 126/s.
        poll_per_s: (20.0f64).max((2.6 * (lambda + 2.0) / 16.0).ceil()),
        poll_batch: 16,
        ..TrafficParams::default()
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Data fragments (with the 458-byte confirmation header) of a message.
fn data_frags(len: usize) -> usize {
    (len + 458).div_ceil(1550)
}

struct Run {
    loss: f64,
    /// Per size: (sent, received, delivered, latencies ms).
    per_size: Vec<(usize, usize, usize, Vec<f64>)>,
    real_packets: u64,
    data_fragments: u64,
    retransmits: u64,
    resends: u64,
    /// Mailbox items the providers handed out again (lost poll answers, lost receipts).
    offered_again: u64,
}

async fn run(loss: f64, scale: usize) -> Run {
    let faults = Arc::new(LinkFaults::new(
        FaultSpec::loss(loss),
        FaultSpec::default(),
        0x5eed,
    ));
    let mut cfg = net_cfg(params(), 2, 2);
    cfg.seed = seed("loss figures", (loss * 1000.0) as usize);
    cfg.link.faults = Some(faults.clone());
    let net = TestNet::start(cfg).await.unwrap();
    // Every client runs the real retry policy: default retries, slack and transmissions.
    // Client 2i sends to client 2i + 1 (on the other provider); with `duplex`, 2i + 1 sends
    // to 2i as well, so the receivers' Poisson slots carry data instead of cover.
    let mut senders = vec![];
    let mut receivers = vec![];
    for i in 0..2 * pairs() {
        let mut c = client_cfg(&net, i, i % 2, Arc::new(MemoryOutbox::default()));
        let d = transport::client::ClientConfig::new(net.directory, vec![], [0; 32], [0; 32]);
        c.ack_slack = d.ack_slack;
        c.max_retries = d.max_retries;
        c.max_sends = d.max_sends;
        let (tx, rx) = transport::client::Client::start(c).await.unwrap().split();
        senders.push(Arc::new(tx));
        receivers.push(rx);
    }
    let mut addrs: Vec<_> = senders.iter().map(|s| s.address()).collect();
    for pair in addrs.chunks_mut(2) {
        pair.swap(0, 1);
    }
    if !duplex() {
        senders = senders.into_iter().step_by(2).collect();
        addrs = addrs.into_iter().step_by(2).collect();
    }
    let received: Arc<Mutex<HashMap<u32, Instant>>> = Arc::default();
    let mut rx_tasks = vec![];
    for mut r in receivers {
        let received = received.clone();
        rx_tasks.push(tokio::spawn(async move {
            while let Some(m) = r.recv().await {
                let tag = u32::from_be_bytes(m.bytes[..4].try_into().unwrap());
                received.lock().unwrap().insert(tag, Instant::now());
            }
        }));
    }
    // Each sender: the sizes interleaved, one message every 1/PACE s.
    let mut send_tasks = vec![];
    for (p, (s, to)) in senders.iter().zip(addrs).enumerate() {
        let mut kinds = vec![];
        for (k, &n) in counts().iter().enumerate() {
            kinds.extend(std::iter::repeat_n(k, n * scale));
        }
        let len = kinds.len();
        let mixed: Vec<usize> = (0..len).map(|i| kinds[(i * 7) % len]).collect();
        let s = s.clone();
        send_tasks.push(tokio::spawn(async move {
            let mut out = vec![];
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / pace()));
            for (j, k) in mixed.into_iter().enumerate() {
                tick.tick().await;
                let tag = (p * 1_000_000 + j) as u32;
                let mut body = vec![0u8; SIZES[k]];
                body[..4].copy_from_slice(&tag.to_be_bytes());
                let t0 = Instant::now();
                let h = s.send(&to, body).await.unwrap();
                out.push((tag, k, t0, tokio::spawn(h.outcome())));
            }
            out
        }));
    }
    // Progress, every PROGRESS, to stderr: what was started, received and resolved, and what
    // the senders spent, so a slow tail is visible while the run goes on.
    let started = Instant::now();
    let progress = {
        let received = received.clone();
        let stats: Vec<_> = senders.iter().map(|s| s.stats()).collect();
        let total: usize = senders.len() * counts().iter().sum::<usize>() * scale;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROGRESS);
            tick.tick().await;
            loop {
                tick.tick().await;
                let stat = |name| stats.iter().map(|s| s.get(name)).sum::<u64>();
                eprintln!(
                    "[{:>5.0} s, loss {:.0}%] {total} to send; received {}; delivered {}, failed {}; real packets {}, retransmits {}, resends {}",
                    started.elapsed().as_secs_f64(),
                    loss * 100.0,
                    received.lock().unwrap().len(),
                    stat("delivered"),
                    stat("failed"),
                    stat("sent_real"),
                    stat("retransmits"),
                    stat("resends"),
                );
            }
        })
    };
    let mut sent = vec![];
    for t in send_tasks {
        sent.extend(t.await.unwrap());
    }
    // Each outcome resolves within the capped retries; the deadline only guards hangs.
    let deadline = tokio::time::Instant::now() + TAIL;
    let mut per_size: Vec<(usize, usize, usize, Vec<f64>)> =
        SIZES.iter().map(|_| (0, 0, 0, vec![])).collect();
    let mut data_fragments = 0u64;
    for (tag, k, t0, outcome) in sent {
        let o = tokio::time::timeout_at(deadline, outcome).await;
        let e = &mut per_size[k];
        e.0 += 1;
        data_fragments += data_frags(SIZES[k]) as u64;
        if matches!(o, Ok(Ok(Outcome::Delivered))) {
            e.2 += 1;
        }
        if let Some(t) = received.lock().unwrap().get(&tag) {
            e.1 += 1;
            e.3.push(t.duration_since(t0).as_secs_f64() * 1000.0);
        }
    }
    let stat = |name| senders.iter().map(|s| s.stats().get(name)).sum::<u64>();
    let r = Run {
        loss,
        per_size,
        real_packets: stat("sent_real"),
        data_fragments,
        retransmits: stat("retransmits"),
        resends: stat("resends"),
        offered_again: net.total("offered_again"),
    };
    progress.abort();
    for t in rx_tasks {
        t.abort();
    }
    drop(faults);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn delivery_under_loss() {
    let scale: usize = std::env::var("MIXGATE_LOSS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let p = params();
    println!(
        "λ = {}/s, μ = {} ms, polls {}/s × {}; {} pairs{}; pace {} msg/s per sender; {:?} messages of each size per pair, × {scale}",
        p.lambda_per_s, p.mu_ms, p.poll_per_s, p.poll_batch, pairs(), if duplex() { ", both ways" } else { "" }, pace(), counts()
    );
    println!("| loss | size | sent | received | delivered | p50 / p90 / p99 / max ms | real packets per data fragment | retransmits | resends |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let rates: Vec<f64> = std::env::var("MIXGATE_LOSS_RATES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![0.0, 0.01, 0.05, 0.10]);
    for loss in rates {
        let mut r = run(loss, scale).await;
        let overhead = r.real_packets as f64 / r.data_fragments.max(1) as f64;
        for (k, (sent, recv, deliv, lat)) in r.per_size.iter_mut().enumerate() {
            let (a, b, c, d) = (pct(lat, 0.5), pct(lat, 0.9), pct(lat, 0.99), pct(lat, 1.0));
            println!(
                "| {:.0}% | {} B | {sent} | {:.2}% | {:.2}% | {a:.0} / {b:.0} / {c:.0} / {d:.0} | {} | {} | {} |",
                r.loss * 100.0,
                SIZES[k],
                100.0 * *recv as f64 / *sent as f64,
                100.0 * *deliv as f64 / *sent as f64,
                if k == 0 { format!("{overhead:.2}") } else { String::new() },
                if k == 0 { r.retransmits.to_string() } else { String::new() },
                if k == 0 { r.resends.to_string() } else { String::new() },
            );
        }
        let bounds: Vec<String> = r
            .per_size
            .iter()
            .enumerate()
            .map(|(k, (sent, recv, _, _))| {
                let ub = upper_bound_95(sent - recv, *sent);
                format!(
                    "{} B: {} of {sent} lost, ≤ {:.3}%",
                    SIZES[k],
                    sent - recv,
                    100.0 * ub
                )
            })
            .collect();
        let (sent, recv) = r
            .per_size
            .iter()
            .fold((0, 0), |(a, b), (s, v, _, _)| (a + s, b + v));
        println!(
            "95% upper bound on the loss rate at {:.0}%: {}; all sizes: {} of {sent} lost, ≤ {:.3}%; mailbox items offered again: {}",
            r.loss * 100.0,
            bounds.join("; "),
            sent - recv,
            100.0 * upper_bound_95(sent - recv, sent),
            r.offered_again
        );
    }
}

#[test]
fn upper_bound_matches_the_rule_of_three() {
    // 0 of n: the bound is 1 − 0.05^(1/n) ≈ 3/n.
    let b = upper_bound_95(0, 3000);
    assert!((b - (1.0 - 0.05f64.powf(1.0 / 3000.0))).abs() < 1e-9, "{b}");
    // 1 of 100: Clopper–Pearson one-sided gives 4.66%.
    assert!((upper_bound_95(1, 100) - 0.0466).abs() < 0.0005);
}
