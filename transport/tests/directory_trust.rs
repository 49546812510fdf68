//! Nodes and clients refuse a directory document signed by an authority they do not trust.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use transport::client::{Client, ClientConfig, ClientError};
use transport::directory::{DirectoryConfig, DirectoryError, DirectoryServer, Role, TrafficParams};
use transport::node::{Node, NodeConfig};

#[tokio::test]
async fn forged_document_is_refused_and_counted() {
    let dir = DirectoryServer::bind(DirectoryConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        authority_seed: [1; 32],
        params: TrafficParams::default(),
        epoch_ms: 3_600_000,
        grace_ms: 60_000,
        allowed: None,
        peers: vec![],
        threshold: 1,
    })
    .await
    .unwrap();
    let addr = dir.local_addr().unwrap();
    let h = tokio::spawn(dir.run());
    let trusted = [7u8; 32]; // not the directory's key
    let mut cfg = NodeConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        Role::Mix { layer: 1 },
        [3; 32],
        addr,
        vec![trusted],
    );
    cfg.refresh = Duration::from_millis(50);
    let node = Node::bind(cfg, None).await.unwrap();
    let stats = node.stats();
    let t = tokio::spawn(node.run());
    for _ in 0..100 {
        if stats.get("bad_documents") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stats.get("bad_documents") > 0);
    let ccfg = ClientConfig::new(addr, vec![trusted], [4; 32], [5; 32]);
    let r = tokio::time::timeout(Duration::from_secs(5), Client::start(ccfg))
        .await
        .unwrap();
    assert!(matches!(
        r,
        Err(ClientError::Directory(DirectoryError::Signatures { .. }))
    ));
    t.abort();
    h.abort();
}
