//! `clients-bench`: the cost of the issue-10 client features, measured in one run.
//!
//! ```text
//! cargo build --release -p gateway --bin mixgate
//! MIXGATE_BIN=target/release/mixgate cargo run --release -p mixgate-tests --bin clients-bench
//! ```
//!
//! It starts two gateways from the same binary: one as configured by default, one with
//! `bundled_aggregations = false` (events served as before relations existed). Each gets the
//! same room of `--messages` messages, of which every 10th is edited, every 20th has a thread
//! reply and every 5th a reaction. It then times, on both, `/messages` (limit 100) and an
//! initial `/sync` with a 100-event timeline, and on the first `/search` over the room
//! (a common word, a rare word, two words, ordered by rank and by recent). Medians and p90
//! of `--samples` calls each, one call at a time.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use mixgate_tests::{
    http::{enc, Account},
    Http, Options, TestGateway,
};
use serde_json::{json, Value};

/// Cost of bundled aggregations and search.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Messages in the room.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Timed calls per measure.
    #[arg(long, default_value_t = 40)]
    samples: usize,
    /// Concurrent senders while filling the room.
    #[arg(long, default_value_t = 8)]
    senders: usize,
}

const WORDS: [&str; 16] = [
    "tea", "garden", "river", "meeting", "lunch", "project", "rain", "music", "train", "book",
    "coffee", "window", "paper", "bridge", "market", "cloud",
];

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p / 100.0).round() as usize;
    v[i.min(v.len() - 1)].as_secs_f64() * 1000.0
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

async fn send(http: &Http, room: &str, kind: &str, content: Value) -> anyhow::Result<String> {
    let txn = format!("t{}", rand_u64());
    let r = http
        .put(
            &format!("/_matrix/client/v3/rooms/{}/send/{kind}/{txn}", enc(room)),
            &content,
        )
        .await?;
    if r.status != 200 {
        bail!("send: {} {}", r.status, r.body);
    }
    Ok(r.body["event_id"].as_str().unwrap_or_default().to_owned())
}

fn rand_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Fills `room` with `n` messages (and their edits, thread replies, reactions).
async fn fill(
    alice: &Http,
    bob: &Http,
    room: &str,
    n: usize,
    senders: usize,
) -> anyhow::Result<()> {
    let per = n.div_ceil(senders);
    let mut tasks = Vec::new();
    for s in 0..senders {
        let (alice, bob, room) = (alice.clone(), bob.clone(), room.to_owned());
        tasks.push(tokio::spawn(async move {
            for i in (s * per)..((s + 1) * per).min(n) {
                let text = format!(
                    "{} {} {} number {i}",
                    WORDS[i % 16],
                    WORDS[(i / 16) % 16],
                    if i % 500 == 7 { "zebra" } else { "and" }
                );
                let id = send(&alice, &room, "m.room.message",
                    json!({ "msgtype": "m.text", "body": text })).await?;
                if i % 10 == 0 {
                    send(&alice, &room, "m.room.message", json!({
                        "msgtype": "m.text", "body": "* edited",
                        "m.new_content": { "msgtype": "m.text", "body": "edited" },
                        "m.relates_to": { "rel_type": "m.replace", "event_id": id } })).await?;
                }
                if i % 20 == 0 {
                    send(&bob, &room, "m.room.message", json!({
                        "msgtype": "m.text", "body": "reply",
                        "m.relates_to": { "rel_type": "m.thread", "event_id": id } })).await?;
                }
                if i % 5 == 0 {
                    send(&bob, &room, "m.reaction", json!({
                        "m.relates_to": { "rel_type": "m.annotation", "event_id": id, "key": "👍" } })).await?;
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await.context("sender task")??;
    }
    Ok(())
}

async fn time<F, Fut>(samples: usize, mut call: F) -> anyhow::Result<(f64, f64)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    call().await?; // warm-up
    let mut v = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        call().await?;
        v.push(t.elapsed());
    }
    Ok((pct(&mut v, 50.0), pct(&mut v, 90.0)))
}

async fn ok(
    r: Result<mixgate_tests::http::Reply, mixgate_tests::http::HttpError>,
) -> anyhow::Result<Value> {
    let r = r?;
    if r.status != 200 {
        bail!("{} {}", r.status, r.body);
    }
    Ok(r.body)
}

struct Setup {
    _gw: TestGateway,
    alice: Http,
    room: String,
}

async fn setup(config: &str, args: &Args) -> anyhow::Result<Setup> {
    let gw = TestGateway::start_with(Options {
        config: format!("auth_attempts_per_minute = 10000\n{config}"),
        ..Options::default()
    })
    .await;
    let anon = Http::new(gw.url());
    let alice = anon.as_user(&register(&anon, "alice").await?);
    let bob = anon.as_user(&register(&anon, "bob").await?);
    let room = alice
        .create_room(&json!({ "preset": "public_chat" }))
        .await
        .map_err(anyhow::Error::msg)?;
    ok(bob.join(&room).await).await?;
    let t = Instant::now();
    fill(&alice, &bob, &room, args.messages, args.senders).await?;
    eprintln!(
        "filled {} messages in {:.1} s",
        args.messages,
        t.elapsed().as_secs_f64()
    );
    Ok(Setup {
        _gw: gw,
        alice,
        room,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let on = setup("", &args).await?;
    let off = setup("bundled_aggregations = false\n", &args).await?;
    let filter = enc(r#"{"room":{"timeline":{"limit":100}}}"#);
    let mut rows = Vec::new();
    for (label, s) in [("bundled", &on), ("not bundled", &off)] {
        let (a, room) = (&s.alice, &s.room);
        let m = time(args.samples, || async {
            ok(a.messages(room, None, "b", 100).await).await.map(|_| ())
        })
        .await?;
        rows.push((format!("/messages limit 100, {label}"), m));
        let y = time(args.samples, || async {
            ok(a.get(&format!("/_matrix/client/v3/sync?filter={filter}"))
                .await)
            .await
            .map(|_| ())
        })
        .await?;
        rows.push((format!("initial /sync timeline 100, {label}"), y));
    }
    for (term, order) in [
        ("garden", "rank"),
        ("garden", "recent"),
        ("zebra", "rank"),
        ("tea garden", "rank"),
        ("gar", "recent"),
    ] {
        let (a, _) = (&on.alice, &on.room);
        let body = json!({ "search_categories": { "room_events": {
            "search_term": term, "order_by": order } } });
        let mut count = 0u64;
        let r = time(args.samples, || {
            let body = body.clone();
            async move {
                ok(a.post("/_matrix/client/v3/search", &body).await)
                    .await
                    .map(|_| ())
            }
        })
        .await?;
        if let Ok(v) = ok(a.post("/_matrix/client/v3/search", &body).await).await {
            count = v["search_categories"]["room_events"]["count"]
                .as_u64()
                .unwrap_or(0);
        }
        rows.push((format!("/search \"{term}\" by {order} ({count} hits)"), r));
    }
    println!(
        "\n{} messages (+ edits every 10th, threads every 20th, reactions every 5th), {} samples\n",
        args.messages, args.samples
    );
    println!("| measure | p50 ms | p90 ms |\n|---|---|---|");
    for (name, (p50, p90)) in rows {
        println!("| {name} | {p50:.2} | {p90:.2} |");
    }
    Ok(())
}
