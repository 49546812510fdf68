//! Test helpers over `transport::local`: fast parameters and deterministic client seeds.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use transport::client::{Client, ClientConfig, MemoryOutbox};
use transport::directory::TrafficParams;
use transport::link::LinkConfig;
#[allow(unused_imports)]
pub use transport::local::{LocalMixnet as TestNet, LocalMixnetConfig, LocalNode as RunningNode};

pub mod fake_nodes;

pub fn link_cfg() -> LinkConfig {
    LinkConfig {
        handshake_timeout: Duration::from_secs(3),
        frame_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(30),
        rekey_frames: 500,
        rekey_interval: Duration::from_secs(60),
        faults: None,
        pq: false,
    }
}

pub fn seed(tag: &str, i: usize) -> [u8; 32] {
    *blake3::hash(format!("{tag}{i}").as_bytes()).as_bytes()
}

pub async fn start_net(params: TrafficParams, per_layer: usize, providers: usize) -> TestNet {
    TestNet::start(net_cfg(params, per_layer, providers))
        .await
        .unwrap()
}

pub fn net_cfg(params: TrafficParams, per_layer: usize, providers: usize) -> LocalMixnetConfig {
    LocalMixnetConfig {
        params,
        per_layer,
        providers,
        seed: seed("net", 0),
        link: link_cfg(),
        refresh: Duration::from_millis(300),
        epoch_ms: 3_600_000,
        mailbox: Default::default(),
    }
}

pub fn client_cfg(
    net: &TestNet,
    i: usize,
    provider: usize,
    outbox: Arc<MemoryOutbox>,
) -> ClientConfig {
    let mut c = net.client_config(provider, seed("clink", i), seed("ce2e", i));
    c.ack_slack = Duration::from_millis(400);
    c.max_retries = 12;
    c.outbox = outbox;
    c
}

pub async fn client(net: &TestNet, i: usize, provider: usize, outbox: Arc<MemoryOutbox>) -> Client {
    Client::start(client_cfg(net, i, provider, outbox))
        .await
        .unwrap()
}

/// Parameters for fast tests: small delays, high rates.
pub fn fast_params() -> TrafficParams {
    TrafficParams {
        lambda_per_s: 40.0,
        loop_per_s: 2.0,
        mix_loop_per_s: 1.0,
        mu_ms: 2.0,
        poll_per_s: 20.0,
        poll_batch: 16,
        ..TrafficParams::default()
    }
}
