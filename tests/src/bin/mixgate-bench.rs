//! `mixgate-bench`: a small load tool for a mixgate gateway.
//!
//! ```text
//! # against a running gateway (give --pid for its peak RSS)
//! cargo run --release -p mixgate-tests --bin mixgate-bench -- --url http://127.0.0.1:8008 --pid 1234
//! # or let it build and start its own release gateway on a temporary data folder
//! cargo run --release -p mixgate-tests --bin mixgate-bench -- --spawn
//! ```
//!
//! It registers its own users and measures: `/send` throughput with concurrent senders,
//! send→`/sync` delivery latency to a second user (long-polling sync), the same through simplified
//! sliding sync (Element X's protocol), `/messages` page latency
//! (limit 10 and 100) over a room with N events, and the gateway's peak RSS (VmHWM).
//! The gateway's default login/registration limit (30 per minute per address) is enough: the
//! tool makes four such requests.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use mixgate_tests::{http::Account, peak_rss_kib, Http, Options, TestGateway};
use serde_json::json;

/// Load tool for a mixgate gateway.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Base URL of a running gateway (open registration).
    #[arg(long, conflicts_with = "spawn")]
    url: Option<String>,
    /// Process id of that gateway, for its peak RSS.
    #[arg(long)]
    pid: Option<u32>,
    /// Build (`cargo build --release -p gateway`) and start a gateway of our own.
    #[arg(long)]
    spawn: bool,
    /// With --spawn: do not run cargo; use MIXGATE_BIN or the `mixgate` next to this tool.
    #[arg(long)]
    no_build: bool,
    /// Messages sent in the throughput phase.
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Concurrent senders in the throughput phase.
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Messages timed from send to /sync delivery.
    #[arg(long, default_value_t = 200)]
    latency_samples: usize,
    /// Events in the room that /messages pages over.
    #[arg(long, default_value_t = 1000)]
    history: usize,
}

/// A short table cell for a failed phase: the root cause (e.g. "operation timed out").
fn failed(e: &anyhow::Error) -> String {
    let cause = e.root_cause().to_string();
    let first = e.to_string();
    let mut s = if cause == first {
        first
    } else {
        format!("{cause} ({first})")
    };
    s.truncate(120);
    format!("FAILED: {s}")
}

/// Percentile (0..=100) of sorted durations, in milliseconds.
fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Sends `total` messages into `room` from `senders` concurrent tasks; returns per-request
/// latencies and the wall time.
async fn burst(
    http: &Http,
    room: &str,
    total: usize,
    senders: usize,
    tag: &str,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..senders {
        let http = http.clone();
        let room = room.to_owned();
        let tag = tag.to_owned();
        let count = total / senders + usize::from(s < total % senders);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(count);
            for j in 0..count {
                let t = Instant::now();
                let r = http
                    .send_text(&room, &format!("{tag}-{s}-{j}"), &format!("{tag} {s}/{j}"))
                    .await?;
                if r.status != 200 {
                    bail!("send failed: {} {}", r.status, r.body);
                }
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await??);
    }
    let wall = start.elapsed();
    all.sort();
    Ok((all, wall))
}

/// Sends messages one at a time and times each until the receiver's long-poll sync returns it.
async fn delivery_latency(
    sender: &Http,
    receiver: &Http,
    room: &str,
    samples: usize,
) -> anyhow::Result<Vec<Duration>> {
    let filter = json!({ "room": { "rooms": [room], "timeline": { "limit": 50 } },
                         "presence": { "types": [] }, "account_data": { "types": [] } })
    .to_string();
    let first = receiver.sync(None, 0, Some(&filter)).await?.ok();
    let mut since = first["next_batch"]
        .as_str()
        .context("no next_batch")?
        .to_owned();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let recv = receiver.clone();
    let room_id = room.to_owned();
    let syncer = tokio::spawn(async move {
        loop {
            let r = match recv.sync(Some(&since), 30_000, Some(&filter)).await {
                Ok(r) if r.status == 200 => r.body,
                _ => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let now = Instant::now();
            if let Some(events) = r["rooms"]["join"][&room_id]["timeline"]["events"].as_array() {
                for e in events {
                    if let Some(b) = e["content"]["body"].as_str() {
                        if tx.send((b.to_owned(), now)).is_err() {
                            return;
                        }
                    }
                }
            }
            if let Some(nb) = r["next_batch"].as_str() {
                since = nb.to_owned();
            }
        }
    });
    let lat = time_deliveries(sender, room, samples, "latency", "/sync", &mut rx).await;
    syncer.abort();
    lat
}

/// Sends `samples` messages one at a time and times each until `seen` (fed by a task syncing as
/// the receiver) reports its body; `via` names that sync in errors. Sorted latencies.
async fn time_deliveries(
    sender: &Http,
    room: &str,
    samples: usize,
    tag: &str,
    via: &str,
    seen: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
) -> anyhow::Result<Vec<Duration>> {
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let body = format!("{tag} {i}");
        let t = Instant::now();
        let r = sender.send_text(room, &format!("{tag}-{i}"), &body).await?;
        if r.status != 200 {
            bail!("send failed: {} {}", r.status, r.body);
        }
        let deadline = t + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, seen.recv()).await {
                Ok(Some((b, at))) if b == body => {
                    lat.push(at - t);
                    break;
                }
                Ok(Some(_)) => continue,
                Ok(None) => bail!("{via} task ended"),
                Err(_) => bail!("message {i} not delivered by {via} within 10 s"),
            }
        }
    }
    lat.sort();
    Ok(lat)
}

/// Like [`delivery_latency`], with the receiver on simplified sliding sync (one list, the
/// room in range, long-polling on `pos`), as Element X syncs.
async fn sliding_delivery_latency(
    sender: &Http,
    receiver: &Http,
    room: &str,
    samples: usize,
) -> anyhow::Result<Vec<Duration>> {
    const PATH: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
    let body = json!({ "conn_id": "bench", "lists": { "all": {
        "ranges": [[0, 19]], "timeline_limit": 10,
        "required_state": [["m.room.name", ""], ["m.room.member", "$LAZY"]] } } });
    let first = receiver.post(PATH, &body).await?.ok();
    let mut pos = first["pos"].as_str().context("no pos")?.to_owned();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let recv = receiver.clone();
    let room_id = room.to_owned();
    let syncer = tokio::spawn(async move {
        loop {
            let path = format!("{PATH}?pos={pos}&timeout=30000");
            let r = match recv.post(&path, &body).await {
                Ok(r) if r.status == 200 => r.body,
                _ => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let now = Instant::now();
            if let Some(events) = r["rooms"][&room_id]["timeline"].as_array() {
                for e in events {
                    if let Some(b) = e["content"]["body"].as_str() {
                        if tx.send((b.to_owned(), now)).is_err() {
                            return;
                        }
                    }
                }
            }
            if let Some(p) = r["pos"].as_str() {
                pos = p.to_owned();
            }
        }
    });
    let lat = time_deliveries(sender, room, samples, "sliding", "sliding sync", &mut rx).await;
    syncer.abort();
    lat
}

/// Times `/messages` pages of `limit` events, paging back through the room (again from the
/// newest event when it reaches the start) until `max_requests` pages were fetched.
async fn messages_latency(
    http: &Http,
    room: &str,
    limit: u32,
    max_requests: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut lat = Vec::new();
    while lat.len() < max_requests {
        let mut from: Option<String> = None;
        loop {
            let t = Instant::now();
            let r = http.messages(room, from.as_deref(), "b", limit).await?;
            lat.push(t.elapsed());
            if r.status != 200 {
                bail!("/messages failed: {} {}", r.status, r.body);
            }
            let chunk_empty = r.body["chunk"]
                .as_array()
                .map(Vec::is_empty)
                .unwrap_or(true);
            match r.body["end"].as_str() {
                Some(end) if !chunk_empty && lat.len() < max_requests => {
                    from = Some(end.to_owned())
                }
                _ => break,
            }
        }
    }
    lat.sort();
    Ok(lat)
}

fn build_release_gateway() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building the release gateway (cargo build --release -p gateway)...");
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "-p", "gateway", "--bin", "mixgate"])
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo build --release -p gateway failed");
    }
    Ok(())
}

async fn register(anon: &Http, name: &str) -> anyhow::Result<Account> {
    let r = anon.register(name, "bench-password").await?;
    if r.status != 200 {
        bail!("register {name}: {} {}", r.status, r.body);
    }
    let s = |k: &str| r.body[k].as_str().unwrap_or_default().to_owned();
    Ok(Account {
        user_id: s("user_id"),
        access_token: s("access_token"),
        device_id: s("device_id"),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut own = None;
    let (url, pid) = if args.spawn {
        if !args.no_build && std::env::var_os("MIXGATE_BIN").is_none() {
            build_release_gateway()?;
        }
        let gw = TestGateway::start_with(Options::default()).await;
        let info = (gw.url(), gw.pid());
        eprintln!(
            "started {} at {} (data {})",
            mixgate_tests::mixgate_binary().display(),
            info.0,
            gw.data_dir().display()
        );
        own = Some(gw);
        info
    } else {
        let Some(url) = args.url.clone() else {
            bail!("give --url of a running gateway, or --spawn");
        };
        (url, args.pid)
    };

    let anon = Http::new(&url);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let tag = format!(
        "{:x}",
        (nanos ^ u128::from(std::process::id())) & 0xffff_ffff
    );
    let a = register(&anon, &format!("bench_a_{tag}")).await?;
    let b = register(&anon, &format!("bench_b_{tag}")).await?;
    let alice = anon.as_user(&a);
    let bob = anon.as_user(&b);
    let room = alice
        .create_room(&json!({ "preset": "public_chat", "name": "bench" }))
        .await
        .map_err(anyhow::Error::msg)?;
    let r = bob.join(&room).await?;
    if r.status != 200 {
        bail!("join: {} {}", r.status, r.body);
    }

    // Each phase reports its own failure, so one broken endpoint does not hide the others.
    let ms = |v: &[Duration]| format!("{:.1} / {:.1} ms", pct(v, 50.0), pct(v, 99.0));
    let mut rows: Vec<(String, String)> = Vec::new();

    eprintln!(
        "throughput: {} messages from {} senders...",
        args.messages, args.senders
    );
    let label = format!(
        "/send throughput ({} senders, {} msgs)",
        args.senders, args.messages
    );
    let phase = tokio::time::timeout(
        Duration::from_secs(300),
        burst(&alice, &room, args.messages, args.senders, "tp"),
    )
    .await
    .unwrap_or_else(|_| Err(anyhow::anyhow!("did not finish in 300 s")));
    match phase {
        Ok((send_lat, wall)) => {
            let throughput = args.messages as f64 / wall.as_secs_f64();
            rows.push((
                label,
                format!("{throughput:.0} msg/s ({:.2} s)", wall.as_secs_f64()),
            ));
            rows.push(("/send latency under load p50 / p99".into(), ms(&send_lat)));
        }
        Err(e) => rows.push((label, failed(&e))),
    }

    eprintln!("delivery latency: {} samples...", args.latency_samples);
    let label = format!("send→/sync delivery p50 / p99 (n={})", args.latency_samples);
    match delivery_latency(&alice, &bob, &room, args.latency_samples).await {
        Ok(d) => rows.push((label, ms(&d))),
        Err(e) => rows.push((label, failed(&e))),
    }

    eprintln!(
        "sliding sync delivery latency: {} samples...",
        args.latency_samples
    );
    let label = format!(
        "send→sliding sync delivery p50 / p99 (n={})",
        args.latency_samples
    );
    match sliding_delivery_latency(&alice, &bob, &room, args.latency_samples).await {
        Ok(d) => rows.push((label, ms(&d))),
        Err(e) => rows.push((label, failed(&e))),
    }

    eprintln!("history room: {} events...", args.history);
    let history = async {
        let history_room = alice
            .create_room(&json!({ "name": "bench history" }))
            .await
            .map_err(anyhow::Error::msg)?;
        // Filled by one sender: the throughput phase already covers concurrency.
        burst(&alice, &history_room, args.history, 1, "hist").await?;
        let m10 = messages_latency(&alice, &history_room, 10, 200).await?;
        let m100 = messages_latency(&alice, &history_room, 100, 50).await?;
        Ok::<_, anyhow::Error>((m10, m100))
    };
    let l10 = format!("/messages limit=10 p50 / p99 ({} events)", args.history);
    let l100 = format!("/messages limit=100 p50 / p99 ({} events)", args.history);
    match tokio::time::timeout(Duration::from_secs(300), history).await {
        Ok(Ok((m10, m100))) => {
            rows.push((l10, ms(&m10)));
            rows.push((l100, ms(&m100)));
        }
        Ok(Err(e)) => rows.push((l10, failed(&e))),
        Err(_) => rows.push((l10, "FAILED: did not finish in 300 s".into())),
    }

    rows.push((
        "gateway peak RSS (VmHWM)".into(),
        match pid.and_then(peak_rss_kib) {
            Some(kib) => format!("{:.1} MiB", kib as f64 / 1024.0),
            None => "n/a (give --pid)".into(),
        },
    ));
    println!("\nmixgate-bench against {url}\n");
    println!("| {:<44} | {:>24} |", "measure", "value");
    println!("|{}|{}|", "-".repeat(46), "-".repeat(26));
    for (name, value) in &rows {
        println!("| {name:<44} | {value:>24} |");
    }
    drop(own);
    Ok(())
}
