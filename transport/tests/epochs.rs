//! Key epochs turn over while traffic flows: nodes rotate mix keys (and replay filters), the
//! directory publishes new documents, clients refresh, and messages still arrive exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::time::timeout;
use transport::client::{MemoryOutbox, Outcome};
use transport::directory::fetch_document;
use transport::util::now_ms;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_epoch_boundaries() {
    let epoch_ms = 2_500;
    let net = TestNet::start(LocalMixnetConfig {
        params: fast_params(),
        per_layer: 1,
        providers: 2,
        seed: seed("epochs", 0),
        link: link_cfg(),
        refresh: Duration::from_millis(200),
        epoch_ms,
        mailbox: Default::default(),
    })
    .await
    .unwrap();
    let mut cfg_a = client_cfg(&net, 0, 0, Arc::new(MemoryOutbox::default()));
    cfg_a.refresh = Duration::from_millis(200);
    let mut cfg_b = client_cfg(&net, 1, 1, Arc::new(MemoryOutbox::default()));
    cfg_b.refresh = Duration::from_millis(200);
    let a = transport::client::Client::start(cfg_a).await.unwrap();
    let mut b = transport::client::Client::start(cfg_b).await.unwrap();
    let first_epoch = now_ms() / epoch_ms;
    let mut handles = vec![];
    let mut sent = HashSet::new();
    // Send over three epoch boundaries.
    for i in 0..16u32 {
        let m = format!("epoch message {i}").into_bytes();
        sent.insert(m.clone());
        handles.push(a.send(&b.address(), m).await.unwrap());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let last_epoch = now_ms() / epoch_ms;
    assert!(last_epoch >= first_epoch + 3, "test did not cross epochs");
    for h in handles {
        assert_eq!(
            timeout(Duration::from_secs(60), h.outcome()).await.unwrap(),
            Outcome::Delivered
        );
    }
    let mut got = HashSet::new();
    while got.len() < sent.len() {
        let r = timeout(Duration::from_secs(60), b.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(got.insert(r.bytes), "duplicate");
    }
    assert_eq!(got, sent);
    // The directory now publishes a later epoch with fresh mix keys.
    let doc = fetch_document(net.directory, None)
        .await
        .unwrap()
        .verify(&[net.authority], 1, now_ms())
        .unwrap();
    assert!(doc.epoch >= last_epoch);
    assert_eq!(doc.nodes.len(), 5);
    eprintln!(
        "epochs {first_epoch}..{last_epoch}; replay drops {}, bad MAC drops {}",
        net.total("dropped_replay"),
        net.total("dropped_bad_mac")
    );
}
