//! Traffic shape: what a client sends to its provider looks the same idle and busy. A proxy on
//! loopback records the client→provider byte stream as a link observer sees it; every frame
//! must have the same size, and the gaps between frames idle vs busy must not be told apart
//! by a two-sample Kolmogorov–Smirnov test at the 1% level.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use transport::client::{Client, MemoryOutbox};
use transport::directory::TrafficParams;
use transport::link::FRAME_WIRE;

const HANDSHAKE: usize = 96;

type Log = Arc<Mutex<Vec<(Instant, usize)>>>;

/// Forwards one connection at a time to `upstream`, logging client→provider reads.
async fn proxy(listener: TcpListener, upstream: String, log: Log) {
    loop {
        let Ok((mut c, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut u) = TcpStream::connect(&upstream).await else {
            return;
        };
        log.lock().unwrap().clear();
        let log = log.clone();
        tokio::spawn(async move {
            let (mut cr, mut cw) = c.split();
            let (mut ur, mut uw) = u.split();
            let up = async {
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    log.lock().unwrap().push((Instant::now(), n));
                    if uw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = uw.shutdown().await;
            };
            let down = tokio::io::copy(&mut ur, &mut cw);
            let _ = tokio::join!(up, down);
        });
    }
}

/// Frame completion times from a byte log.
fn frame_times(log: &[(Instant, usize)]) -> (Vec<Instant>, usize) {
    let mut total = 0usize;
    let mut out = vec![];
    for (t, n) in log {
        total += n;
        while total >= HANDSHAKE + (out.len() + 1) * FRAME_WIRE {
            out.push(*t);
        }
    }
    (out, total)
}

fn gaps(times: &[Instant], from: Instant, to: Instant) -> Vec<f64> {
    let w: Vec<&Instant> = times.iter().filter(|t| **t >= from && **t < to).collect();
    w.windows(2)
        .map(|p| (*p[1] - *p[0]).as_secs_f64())
        .collect()
}

/// Two-sample Kolmogorov–Smirnov statistic.
fn ks(a: &[f64], b: &[f64]) -> f64 {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0, 0, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

/// The network (nodes, the receiver, the capturing proxy) runs on its own runtime, as it would
/// on other machines; the measured client runs alone on another.
#[test]
fn idle_and_busy_look_the_same() {
    let rt = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .unwrap()
    };
    let net_rt = rt("network");
    let client_rt = rt("client");
    let params = TrafficParams {
        lambda_per_s: 30.0,
        loop_per_s: 3.0,
        mix_loop_per_s: 1.0,
        mu_ms: 1.0,
        poll_per_s: 10.0,
        poll_batch: 10,
        ..TrafficParams::default()
    };
    let log: Log = Arc::default();
    let (net, paddr, proxy_task, b) = net_rt.block_on(async {
        let net = start_net(params, 1, 1).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let paddr = listener.local_addr().unwrap().to_string();
        let prov_addr = net.providers[0].addr.to_string();
        let proxy_task = tokio::spawn(proxy(listener, prov_addr, log.clone()));
        let b = client(&net, 1, 0, Arc::new(MemoryOutbox::default())).await;
        (net, paddr, proxy_task, b)
    });
    let ba = b.address();
    let mut cfg = client_cfg(&net, 0, 0, Arc::new(MemoryOutbox::default()));
    cfg.provider_address_override = Some(paddr);

    let (idle_from, idle_to, busy_from, busy_to, real_sent) = client_rt.block_on(async {
        let a = Client::start(cfg).await.unwrap();
        let window = Duration::from_secs(6);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle_from = Instant::now();
        tokio::time::sleep(window).await;
        let idle_to = Instant::now();
        let real_before = a.stats().get("sent_real");

        // Busy: keep the send queue non-empty for the whole window.
        let msgs: Vec<Vec<u8>> = (0..30u8).map(|i| vec![i; 12_000]).collect();
        let mut handles = Vec::with_capacity(msgs.len());
        for m in &msgs {
            handles.push(a.send(&ba, m.clone()).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let busy_from = Instant::now();
        tokio::time::sleep(window).await;
        let busy_to = Instant::now();
        let real_sent = a.stats().get("sent_real") - real_before;
        drop(handles);
        drop(a);
        tokio::time::sleep(Duration::from_millis(300)).await;
        (idle_from, idle_to, busy_from, busy_to, real_sent)
    });

    let log = log.lock().unwrap().clone();
    let (times, total) = frame_times(&log);
    assert_eq!(
        (total - HANDSHAKE) % FRAME_WIRE,
        0,
        "stream is not a whole number of frames"
    );
    let idle = gaps(&times, idle_from, idle_to);
    let busy = gaps(&times, busy_from, busy_to);
    let d = ks(&idle, &busy);
    let (n, m) = (idle.len() as f64, busy.len() as f64);
    let crit = 1.628 * ((n + m) / (n * m)).sqrt();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    eprintln!(
        "frames {} total; idle gaps {} (mean {:.2} ms), busy gaps {} (mean {:.2} ms), real packets in busy window {real_sent}; KS D = {d:.4}, critical(1%) = {crit:.4}",
        times.len(),
        idle.len(),
        mean(&idle) * 1e3,
        busy.len(),
        mean(&busy) * 1e3
    );
    assert!(real_sent > 50, "busy phase did not send real packets");
    assert!(idle.len() > 100 && busy.len() > 100);
    assert!(d < crit, "KS rejects: D = {d} >= {crit}");
    net_rt.block_on(async move {
        proxy_task.abort();
        drop(b);
        drop(net);
    });
    net_rt.shutdown_background();
    client_rt.shutdown_background();
}
