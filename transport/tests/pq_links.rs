//! Hybrid post-quantum links end to end: a network whose directory document sets
//! `pq_links` carries a message and its confirmation over IKhfs (X25519 + ML-KEM-1024) links
//! between every node and between gateways and their providers, and the providers refuse a
//! classical handshake. No timing assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::net::TcpStream;
use tokio::time::timeout;
use transport::client::{MemoryOutbox, Outcome};
use transport::directory::TrafficParams;
use transport::link::{connect, LinkConfig, LinkKeypair};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_crosses_a_network_of_hybrid_links() {
    let params = TrafficParams {
        pq_links: true,
        ..fast_params()
    };
    let net = TestNet::start({
        let mut c = net_cfg(params, 1, 2);
        c.seed = seed("pq", 0);
        c
    })
    .await
    .unwrap();
    let a = client(&net, 0, 0, Arc::new(MemoryOutbox::default())).await;
    let mut b = client(&net, 1, 1, Arc::new(MemoryOutbox::default())).await;
    assert!(a.document().params.pq_links);
    let msg = vec![42u8; 5000];
    let h = a.send(&b.address(), msg.clone()).await.unwrap();
    let got = timeout(Duration::from_secs(60), b.recv())
        .await
        .expect("timed out")
        .unwrap();
    assert_eq!(got.bytes, msg);
    let o = timeout(Duration::from_secs(60), h.outcome()).await.unwrap();
    assert_eq!(o, Outcome::Delivered);
    // The providers speak only the hybrid pattern now: a classical handshake fails.
    let doc = a.document();
    let p0 = doc.node(&net.providers[0].id).unwrap();
    for (pq, ok) in [(false, false), (true, true)] {
        let sock = TcpStream::connect(&p0.address).await.unwrap();
        let cfg = LinkConfig { pq, ..link_cfg() };
        let r = connect(sock, &LinkKeypair::random(), &p0.link_key, &cfg).await;
        assert_eq!(r.is_ok(), ok, "pq {pq}");
    }
}
