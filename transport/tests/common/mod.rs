//! An in-process test network on loopback: directory, 3 mix layers × N nodes, providers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use transport::client::{Client, ClientConfig, MemoryOutbox};
use transport::directory::{DirectoryConfig, DirectoryServer, Role, TrafficParams};
use transport::link::LinkConfig;
use transport::node::{Mailboxes, Node, NodeConfig, NodeStats};
use transport::packet::NodeId;

pub struct RunningNode {
    pub id: NodeId,
    pub cfg: NodeConfig,
    pub addr: SocketAddr,
    pub stats: Arc<NodeStats>,
    pub mailboxes: Option<Arc<Mailboxes>>,
    pub task: JoinHandle<()>,
}

impl RunningNode {
    pub async fn start(mut cfg: NodeConfig, mailboxes: Option<Arc<Mailboxes>>) -> Self {
        let node = loop {
            match Node::bind(cfg.clone(), mailboxes.clone()).await {
                Ok(n) => break n,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let addr = node.local_addr().unwrap();
        cfg.listen = addr;
        let id = node.id();
        let stats = node.stats();
        let mailboxes = node.mailboxes();
        let task = tokio::spawn(async move {
            let _ = node.run().await;
        });
        RunningNode {
            id,
            cfg,
            addr,
            stats,
            mailboxes,
            task,
        }
    }

    /// Stops the node and everything it runs.
    pub async fn kill(&self) {
        self.task.abort();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct TestNet {
    pub dir_addr: SocketAddr,
    pub authority: [u8; 32],
    pub dir_task: JoinHandle<()>,
    pub mixes: Vec<RunningNode>,
    pub providers: Vec<RunningNode>,
}

pub fn link_cfg() -> LinkConfig {
    LinkConfig {
        handshake_timeout: Duration::from_secs(3),
        frame_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(30),
        rekey_frames: 500,
        rekey_interval: Duration::from_secs(60),
    }
}

pub fn seed(tag: &str, i: usize) -> [u8; 32] {
    *blake3::hash(format!("{tag}{i}").as_bytes()).as_bytes()
}

impl TestNet {
    pub async fn start(params: TrafficParams, per_layer: usize, providers: usize) -> Self {
        let dir = DirectoryServer::bind(DirectoryConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            authority_seed: [42; 32],
            params,
            epoch_ms: 3_600_000,
            grace_ms: 600_000,
            allowed: None,
        })
        .await
        .unwrap();
        let dir_addr = dir.local_addr().unwrap();
        let authority = dir.authority();
        let dir_task = tokio::spawn(dir.run());
        let mk = |role: Role, i: usize| {
            let mut c = NodeConfig::new(
                "127.0.0.1:0".parse().unwrap(),
                role,
                seed("node", i),
                dir_addr,
                vec![authority],
            );
            c.refresh = Duration::from_millis(300);
            c.link = link_cfg();
            c.replay_capacity = 100_000;
            c
        };
        let mut mixes = vec![];
        for layer in 1..=3u8 {
            for j in 0..per_layer {
                let i = usize::from(layer) * 10 + j;
                mixes.push(RunningNode::start(mk(Role::Mix { layer }, i), None).await);
            }
        }
        let mut provs = vec![];
        for j in 0..providers {
            provs.push(RunningNode::start(mk(Role::Provider, 100 + j), None).await);
        }
        TestNet {
            dir_addr,
            authority,
            dir_task,
            mixes,
            providers: provs,
        }
    }

    pub fn client_cfg(&self, i: usize, provider: usize, outbox: Arc<MemoryOutbox>) -> ClientConfig {
        let mut c = ClientConfig::new(
            self.dir_addr,
            vec![self.authority],
            seed("clink", i),
            seed("ce2e", i),
        );
        c.provider = Some(self.providers[provider].id);
        c.link = link_cfg();
        c.refresh = Duration::from_millis(300);
        c.ack_slack = Duration::from_millis(400);
        c.max_retries = 12;
        c.outbox = outbox;
        c
    }

    pub async fn client(&self, i: usize, provider: usize, outbox: Arc<MemoryOutbox>) -> Client {
        Client::start(self.client_cfg(i, provider, outbox))
            .await
            .unwrap()
    }

    /// Sum of one counter over all nodes.
    pub fn total(&self, name: &str) -> u64 {
        self.mixes
            .iter()
            .chain(&self.providers)
            .map(|n| n.stats.get(name))
            .sum()
    }
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
