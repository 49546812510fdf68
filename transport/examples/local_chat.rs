//! A whole mixnet on loopback and two gateways exchanging a message, a request and its
//! response: the smallest use of the client API.
//!
//! `cargo run -p transport --example local_chat`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use transport::client::{Client, Outcome};
use transport::directory::TrafficParams;
use transport::local::{LocalMixnet, LocalMixnetConfig};

#[tokio::main]
async fn main() {
    let net = LocalMixnet::start(LocalMixnetConfig {
        params: TrafficParams {
            lambda_per_s: 20.0,
            poll_per_s: 10.0,
            mu_ms: 10.0,
            ..TrafficParams::default()
        },
        refresh: Duration::from_millis(500),
        ..LocalMixnetConfig::default()
    })
    .await
    .expect("local mixnet");
    let alice = Client::start(net.client_config(0, [1; 32], [2; 32]))
        .await
        .expect("alice");
    let mut bob = Client::start(net.client_config(1, [3; 32], [4; 32]))
        .await
        .expect("bob");

    let bob_addr = bob.address();
    let t = Instant::now();
    let sent = alice
        .send(&bob_addr, b"hello through the mixnet".to_vec())
        .await
        .unwrap();
    let got = bob.recv().await.unwrap();
    eprintln!(
        "bob got {:?} after {:?}",
        String::from_utf8_lossy(&got.bytes),
        t.elapsed()
    );
    assert_eq!(sent.outcome().await, Outcome::Delivered);

    let question = alice.request(&bob_addr, b"ping".to_vec(), 100, Duration::from_secs(30));
    let answer = async {
        let r = bob.recv().await.unwrap();
        bob.respond(
            r.reply.expect("a request carries reply blocks"),
            b"pong".to_vec(),
        )
        .unwrap();
    };
    let (resp, ()) = tokio::join!(question, answer);
    eprintln!("alice got {:?}", String::from_utf8_lossy(&resp.unwrap()));
    eprintln!("alice counters: {:?}", alice.stats().snapshot());
}
