//! `peering-bench`: gateway-to-gateway delivery over a real loopback mixnet, in one process.
//!
//! ```text
//! cargo run --release -p mixgate-tests --bin peering-bench -- --mu-ms 0 --samples 40
//! cargo run --release -p mixgate-tests --bin peering-bench -- --defaults --samples 40
//! cargo run --release -p mixgate-tests --bin peering-bench -- --mu-ms 0 --samples 5 --backfill 1000
//! cargo run --release -p mixgate-tests --bin peering-bench -- --samples 5 --media-kib 100 --media-kib 1024
//! ```
//!
//! Starts a local mixnet (3 layers × 2 mixes, 2 providers) with the given traffic parameters
//! and `--gateways` gateways joined to it, registers a user on each, makes them share a room,
//! and measures send → `/sync` delivery latency from gateway 0 to gateway 1 (one message at a
//! time, long-polling sync), next to what the Poisson model predicts. It also reports the size of
//! the message a gateway sends per event and destination, the packets that takes, and an idle
//! gateway's traffic per day under these parameters.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use gateway::{
    config::{AuthorityKey, GatewayConfig, NetworkConfig, RegistrationMode},
    peering::wire::{self, Body, Envelope},
    serve::{self, Running},
};
use serde_json::{json, Value};
use transport::{
    client::CHUNK,
    directory::TrafficParams,
    local::{LocalMixnet, LocalMixnetConfig},
    packet::PACKET_SIZE,
};

/// Delivery latency between gateways over a loopback mixnet.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Use the transport's default (real network) parameters instead of `mixgate up`'s.
    #[arg(long)]
    defaults: bool,
    /// Mean per-hop mixing delay μ in ms (overrides the chosen parameters).
    #[arg(long)]
    mu_ms: Option<f64>,
    /// Client send rate λ in packets/s (overrides the chosen parameters).
    #[arg(long)]
    lambda: Option<f64>,
    /// Mailbox polls per second (overrides the chosen parameters).
    #[arg(long)]
    polls: Option<f64>,
    /// Messages timed.
    #[arg(long, default_value_t = 40)]
    samples: usize,
    /// Gateways on the network (at least 2; the room has a user on each).
    #[arg(long, default_value_t = 2)]
    gateways: usize,
    /// Also time a late joiner on gateway 1 paging back through this many events sent on
    /// gateway 0 before it joined (backfill over the mixnet).
    #[arg(long, default_value_t = 0)]
    backfill: usize,
    /// Also time gateway 1 downloading a file of this many KiB uploaded on gateway 0
    /// (remote media over the mixnet); repeatable.
    #[arg(long)]
    media_kib: Vec<usize>,
    /// Also time this many new gateways, one after another, from their user's join to reading
    /// a message sent right after it (Olm claim, key share and the message, over the mixnet).
    #[arg(long, default_value_t = 0)]
    new_members: usize,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn register(http: &reqwest::Client, base: &str, name: &str) -> anyhow::Result<Self> {
        let body: Value = http
            .post(format!("{base}/_matrix/client/v3/register"))
            .json(&json!({"username": name, "password": "correct horse battery staple", "auth": {"type": "m.login.dummy"}}))
            .send()
            .await?
            .json()
            .await?;
        Ok(Self {
            http: http.clone(),
            base: base.to_owned(),
            token: body["access_token"]
                .as_str()
                .context("no token")?
                .to_owned(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await?;
        let status = res.status().as_u16();
        Ok((status, res.json().await.unwrap_or(Value::Null)))
    }

    /// Joins `room`; an error unless the gateway answers 200.
    async fn join(&self, room: &str) -> anyhow::Result<()> {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/_matrix/client/v3/join/{room}"),
                Some(json!({})),
            )
            .await?;
        if status != 200 {
            bail!("join: {body}");
        }
        Ok(())
    }

    /// Sends a text message with transaction id `txn`; its event id.
    async fn send_text(&self, room: &str, txn: &str, text: &str) -> anyhow::Result<String> {
        let (status, sent) = self
            .call(
                reqwest::Method::PUT,
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
                Some(json!({"msgtype": "m.text", "body": text})),
            )
            .await?;
        if status != 200 {
            bail!("send: {sent}");
        }
        Ok(sent["event_id"].as_str().unwrap_or_default().to_owned())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // `RUST_LOG=gateway::peering=debug` shows what peering does while it is measured.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    if args.gateways < 2 {
        bail!("--gateways must be at least 2");
    }
    let mut params = if args.defaults {
        TrafficParams::default()
    } else {
        gateway::up::local_params()
    };
    if let Some(mu) = args.mu_ms {
        params.mu_ms = mu;
    }
    if let Some(lambda) = args.lambda {
        params.lambda_per_s = lambda;
    }
    if let Some(polls) = args.polls {
        params.poll_per_s = polls;
    }
    let mixnet = LocalMixnet::start(LocalMixnetConfig {
        params: params.clone(),
        per_layer: 2,
        providers: 2,
        refresh: Duration::from_secs(5),
        ..LocalMixnetConfig::default()
    })
    .await
    .context("starting the mixnet")?;
    let network = NetworkConfig {
        directories: vec![mixnet.directory],
        authorities: vec![AuthorityKey(mixnet.authority)],
        threshold: Some(1),
    };
    let dirs = tempfile::tempdir()?;
    let mut gateways: Vec<Running> = Vec::new();
    for i in 0..args.gateways {
        let config = GatewayConfig {
            listen: "127.0.0.1:0".parse()?,
            data_dir: dirs.path().join(format!("g{i}")),
            registration: RegistrationMode::Open,
            network: Some(network.clone()),
            ..GatewayConfig::default()
        };
        gateways.push(serve::start_joined(config).await?);
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()?;
    let mut clients = Vec::new();
    for (i, g) in gateways.iter().enumerate() {
        clients
            .push(Client::register(&http, &format!("http://{}", g.addr), &format!("u{i}")).await?);
    }
    let (status, created) = clients[0]
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(json!({"preset": "public_chat"})),
        )
        .await?;
    if status != 200 {
        bail!("createRoom: {created}");
    }
    let room = created["room_id"].as_str().context("room id")?.to_owned();
    for c in &clients[1..] {
        let started = Instant::now();
        loop {
            let (status, body) = c
                .call(
                    reqwest::Method::POST,
                    &format!("/_matrix/client/v3/join/{room}"),
                    Some(json!({})),
                )
                .await?;
            if status == 200 {
                break;
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("join failed: {body}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // Every gateway sees every member before timing starts.
    let started = Instant::now();
    loop {
        let (_, members) = clients[0]
            .call(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/rooms/{room}/joined_members"),
                None,
            )
            .await?;
        if members["joined"].as_object().map_or(0, |m| m.len()) == args.gateways {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("members never arrived: {members}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let reader = &clients[1];
    let (_, first) = reader
        .call(
            reqwest::Method::GET,
            "/_matrix/client/v3/sync?timeout=0",
            None,
        )
        .await?;
    let mut since = first["next_batch"]
        .as_str()
        .context("next_batch")?
        .to_owned();
    let mut latencies = Vec::new();
    let mut last_event = String::new();
    for s in 0..args.samples {
        let text = format!("sample {s}");
        let t0 = Instant::now();
        last_event = clients[0].send_text(&room, &format!("b{s}"), &text).await?;
        loop {
            let (_, sync) = reader
                .call(
                    reqwest::Method::GET,
                    &format!("/_matrix/client/v3/sync?since={since}&timeout=30000"),
                    None,
                )
                .await?;
            since = sync["next_batch"].as_str().unwrap_or(&since).to_owned();
            let got = sync["rooms"]["join"][&room]["timeline"]["events"]
                .as_array()
                .is_some_and(|evs| evs.iter().any(|e| e["content"]["body"] == text.as_str()));
            if got {
                latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("sample {s} never arrived");
            }
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));

    // What one event costs on the wire, per destination gateway.
    let gw0 = &gateways[0].gateway;
    let event_id = ruma::EventId::parse(&last_event)?;
    let (_, stored) = gw0.rooms.get_pdu(&event_id)?.context("event")?;
    let envelope = Envelope {
        origin: gw0.server_name().to_owned(),
        destination: gateways[1].gateway.server_name().to_owned(),
        ts: 0,
        body: Body::Txn {
            id: "0123456789abcdef".into(),
            pdus: vec![stored.json.clone()],
            edus: vec![],
        },
    };
    let plain_message = wire::encode(&gw0.identity, &envelope).len();
    // The same event as it really goes: sealed under an epoch, in a signed envelope.
    let keys = gateway::peering::groupkeys::GroupKeys::new(
        gw0.db.clone(),
        std::sync::Arc::new(gateway::service::clock::SystemClock),
        Default::default(),
    );
    let scratch_room = ruma::OwnedRoomId::try_from("!bench:example.org")?;
    let readers = std::collections::BTreeSet::from([envelope.destination.clone()]);
    let sealed = keys
        .seal(
            &scratch_room,
            &readers,
            "shared",
            1,
            &gateway::peering::reply_seal::encode_payload(&envelope.body),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    keys.end_epoch(&scratch_room)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let message = wire::encode(
        &gw0.identity,
        &Envelope {
            body: Body::Sealed {
                session_id: sealed.session_id,
                ciphertext: sealed.ciphertext,
            },
            ..envelope
        },
    )
    .len();
    let data = message.div_ceil(CHUNK);
    let parity = data.div_ceil(8);
    let packets = data + parity;

    let model_ms =
        1000.0 / params.lambda_per_s + 3.0 * params.mu_ms + 1000.0 / (2.0 * params.poll_per_s);
    let idle_out = params.lambda_per_s + params.loop_per_s;
    let idle_in = params.poll_per_s * f64::from(params.poll_batch) + params.loop_per_s;
    let day = 86_400.0 * PACKET_SIZE as f64 / 1e6;
    println!(
        "parameters: λ = {} /s, loop = {} /s, μ = {} ms, polls = {} /s × {}",
        params.lambda_per_s, params.loop_per_s, params.mu_ms, params.poll_per_s, params.poll_batch
    );
    println!(
        "send → /sync on another gateway ({} samples): p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    println!("Poisson model mean (1/λ + 3μ + half a poll interval): {model_ms:.0} ms");
    println!(
        "one message event: PDU {} B, wire message {} B sealed ({} B without group keys) → {} data + {} parity packets of {} B per destination gateway ({} B on the first link; 5 destinations: {} packets)",
        stored.json.get().len(),
        message,
        plain_message,
        data,
        parity,
        PACKET_SIZE,
        packets * PACKET_SIZE,
        5 * packets
    );
    println!(
        "idle gateway: {idle_out} packets/s out, {idle_in} in → {:.0} MB/day out, {:.0} MB/day in (whatever its users do)",
        idle_out * day,
        idle_in * day
    );
    if args.backfill > 0 {
        backfill(&clients, args.backfill).await?;
    }
    for kib in &args.media_kib {
        media(&clients, *kib).await?;
    }
    if args.new_members > 0 {
        new_members(&clients[0], &room, &network, dirs.path(), args.new_members).await?;
    }
    for g in gateways {
        g.abort();
    }
    Ok(())
}

/// Times a late joiner on gateway 1 paging back through `count` events of gateway 0.
async fn backfill(clients: &[Client], count: usize) -> anyhow::Result<()> {
    let (status, created) = clients[0]
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(json!({"preset": "public_chat"})),
        )
        .await?;
    if status != 200 {
        bail!("createRoom: {created}");
    }
    let room = created["room_id"].as_str().context("room id")?.to_owned();
    for i in 0..count {
        // About 100 characters, like a typical chat message.
        let body = format!(
            "message {i}: the quick brown fox jumps over the lazy dog while we plan the meeting for friday"
        );
        clients[0].send_text(&room, &format!("h{i}"), &body).await?;
    }
    clients[1].join(&room).await?;
    let started = Instant::now();
    let mut seen = 0;
    let mut pages = 0;
    let mut from: Option<String> = None;
    while seen < count {
        let mut path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100");
        if let Some(f) = &from {
            path.push_str(&format!("&from={f}"));
        }
        let (status, page) = clients[1].call(reqwest::Method::GET, &path, None).await?;
        if status != 200 {
            bail!("messages: {page}");
        }
        pages += 1;
        seen += page["chunk"].as_array().map_or(0, |c| {
            c.iter().filter(|e| e["type"] == "m.room.message").count()
        });
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("backfill too slow: {seen} of {count}");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "backfill: {seen} of {count} events in {secs:.1} s over {pages} pages of 100 ({:.0} events/s)",
        seen as f64 / secs
    );
    Ok(())
}

/// Times gateway 1 downloading a `kib` KiB file uploaded on gateway 0 (random bytes: the
/// wire compression gains nothing, as with a photo).
async fn media(clients: &[Client], kib: usize) -> anyhow::Result<()> {
    // xorshift64: incompressible enough, no extra dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ kib as u64;
    let data: Vec<u8> = (0..kib * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let res: Value = clients[0]
        .http
        .post(format!(
            "{}/_matrix/media/v3/upload?filename=f.bin",
            clients[0].base
        ))
        .bearer_auth(&clients[0].token)
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await?
        .json()
        .await?;
    let uri = res["content_uri"].as_str().context("content_uri")?;
    let path = uri.trim_start_matches("mxc://");
    let started = Instant::now();
    // A client of its own: the shared one gives up after 90 s, a large file takes longer.
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(1800))
        .build()?;
    let got = patient
        .get(format!(
            "{}/_matrix/client/v1/media/download/{path}",
            clients[1].base
        ))
        .bearer_auth(&clients[1].token)
        .send()
        .await?;
    let status = got.status();
    let bytes = got.bytes().await?;
    if !status.is_success() || bytes.as_ref() != data.as_slice() {
        bail!("download of {kib} KiB failed: {status}");
    }
    println!(
        "remote media: {kib} KiB in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Times new gateways from their user's join to reading the first message sent after it.
async fn new_members(
    sender: &Client,
    room: &str,
    network: &NetworkConfig,
    dir: &std::path::Path,
    count: usize,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()?;
    let mut times = Vec::new();
    for n in 0..count {
        let running = serve::start_joined(GatewayConfig {
            listen: "127.0.0.1:0".parse()?,
            data_dir: dir.join(format!("new{n}")),
            registration: RegistrationMode::Open,
            network: Some(network.clone()),
            ..GatewayConfig::default()
        })
        .await?;
        let client =
            Client::register(&http, &format!("http://{}", running.addr), &format!("n{n}")).await?;
        client.join(room).await?;
        let t0 = Instant::now();
        let text = format!("welcome {n}");
        sender.send_text(room, &format!("w{n}"), &text).await?;
        loop {
            let (_, page) = client
                .call(
                    reqwest::Method::GET,
                    &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=5"),
                    None,
                )
                .await?;
            let got = page["chunk"]
                .as_array()
                .is_some_and(|evs| evs.iter().any(|e| e["content"]["body"] == text.as_str()));
            if got {
                times.push(t0.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if t0.elapsed() > Duration::from_secs(120) {
                bail!("new member {n} never read the message");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        running.abort();
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "new member gateway, join → reads the next message ({} gateways): p50 {:.0} ms, max {:.0} ms",
        times.len(),
        percentile(&times, 0.5),
        times.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}
