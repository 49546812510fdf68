//! A whole mixnet in one process on loopback: a directory, three mix layers and providers.
//! For `mixgate up` (everything on one machine) and for tests of the gateway.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::client::ClientConfig;
use crate::directory::{DirectoryConfig, DirectoryServer, Role, TrafficParams};
use crate::link::LinkConfig;
use crate::node::{MailboxConfig, Mailboxes, Node, NodeConfig, NodeError, NodeStats};
use crate::packet::NodeId;

/// A running node of a local mixnet. Dropping it stops the node.
pub struct LocalNode {
    /// The node id.
    pub id: NodeId,
    /// Its configuration (with the bound address), to restart it.
    pub cfg: NodeConfig,
    /// The bound address.
    pub addr: SocketAddr,
    /// Its counters.
    pub stats: Arc<NodeStats>,
    /// Its mailbox store (providers).
    pub mailboxes: Option<Arc<Mailboxes>>,
    /// Its queues and links.
    pub probe: crate::node::NodeProbe,
    task: JoinHandle<()>,
}

impl LocalNode {
    /// Binds and starts a node; retries the bind for a while (a restarted node's port may
    /// still be in use for a moment).
    pub async fn start(
        mut cfg: NodeConfig,
        mailboxes: Option<Arc<Mailboxes>>,
    ) -> Result<Self, NodeError> {
        let mut tries = 0;
        let node = loop {
            match Node::bind(cfg.clone(), mailboxes.clone()).await {
                Ok(n) => break n,
                Err(e) if tries >= 100 => return Err(e),
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let addr = node.local_addr()?;
        cfg.listen = addr;
        let (id, stats, mailboxes) = (node.id(), node.stats(), node.mailboxes());
        let probe = node.probe();
        let task = tokio::spawn(async move {
            if let Err(e) = node.run().await {
                tracing::warn!("local node stopped: {e}");
            }
        });
        Ok(LocalNode {
            id,
            cfg,
            addr,
            stats,
            mailboxes,
            probe,
            task,
        })
    }

    /// Stops the node and every task it runs.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Shape and timing of a local mixnet.
#[derive(Debug, Clone)]
pub struct LocalMixnetConfig {
    /// Traffic parameters published by the directory.
    pub params: TrafficParams,
    /// Mix nodes per layer.
    pub per_layer: usize,
    /// Number of providers.
    pub providers: usize,
    /// Seed all node keys are derived from (distinct networks need distinct seeds).
    pub seed: [u8; 32],
    /// Link timing for every node.
    pub link: LinkConfig,
    /// Directory refresh interval of the nodes.
    pub refresh: Duration,
    /// Epoch length.
    pub epoch_ms: u64,
    /// Mailbox limits of the providers.
    pub mailbox: MailboxConfig,
}

impl Default for LocalMixnetConfig {
    fn default() -> Self {
        let mut seed = [0u8; 32];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut seed[..]);
        LocalMixnetConfig {
            params: TrafficParams::default(),
            per_layer: 2,
            providers: 2,
            seed,
            link: LinkConfig::default(),
            refresh: Duration::from_secs(5),
            epoch_ms: 3_600_000,
            mailbox: MailboxConfig::default(),
        }
    }
}

/// A running local mixnet. Dropping it stops everything.
pub struct LocalMixnet {
    /// Directory address.
    pub directory: SocketAddr,
    /// The directory authority's key (trust it in clients).
    pub authority: [u8; 32],
    /// Mix nodes, layer by layer.
    pub mixes: Vec<LocalNode>,
    /// Providers.
    pub providers: Vec<LocalNode>,
    /// The directory authority's counters.
    pub directory_stats: Arc<crate::directory::DirectoryStats>,
    /// The directory authority's epoch and signatures.
    pub directory_probe: crate::directory::DirectoryProbe,
    refresh: Duration,
    link: LinkConfig,
    dir_task: JoinHandle<()>,
}

impl Drop for LocalMixnet {
    fn drop(&mut self) {
        self.dir_task.abort();
    }
}

fn derive(seed: &[u8; 32], what: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(seed);
    h.update(what.as_bytes());
    *h.finalize().as_bytes()
}

impl LocalMixnet {
    /// Starts the directory and all nodes on 127.0.0.1 (ephemeral ports).
    pub async fn start(cfg: LocalMixnetConfig) -> Result<Self, NodeError> {
        let dir = DirectoryServer::bind(DirectoryConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            authority_seed: derive(&cfg.seed, "authority"),
            params: cfg.params.clone(),
            epoch_ms: cfg.epoch_ms,
            grace_ms: cfg.epoch_ms / 6,
            allowed: None,
            peers: vec![],
            threshold: 1,
        })
        .await?;
        let directory = dir.local_addr()?;
        let authority = dir.authority();
        let (directory_stats, directory_probe) = (dir.stats(), dir.probe());
        let dir_task = tokio::spawn(dir.run());
        let mk = |role: Role, name: String| {
            let mut c = NodeConfig::new(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                role,
                derive(&cfg.seed, &name),
                directory,
                vec![authority],
            );
            c.refresh = cfg.refresh;
            c.link = cfg.link.clone();
            c.epoch_ms = cfg.epoch_ms;
            c.replay_capacity = 1_000_000;
            c.mailbox = cfg.mailbox.clone();
            c
        };
        let mut net = LocalMixnet {
            directory,
            authority,
            mixes: vec![],
            providers: vec![],
            directory_stats,
            directory_probe,
            refresh: cfg.refresh,
            link: cfg.link.clone(),
            dir_task,
        };
        for layer in 1..=3u8 {
            for j in 0..cfg.per_layer {
                let c = mk(Role::Mix { layer }, format!("mix {layer} {j}"));
                net.mixes.push(LocalNode::start(c, None).await?);
            }
        }
        for j in 0..cfg.providers {
            let c = mk(Role::Provider, format!("provider {j}"));
            net.providers.push(LocalNode::start(c, None).await?);
        }
        Ok(net)
    }

    /// A client configuration for this network, using provider number `provider`.
    pub fn client_config(
        &self,
        provider: usize,
        link_seed: [u8; 32],
        e2e_seed: [u8; 32],
    ) -> ClientConfig {
        let mut c = ClientConfig::new(self.directory, vec![self.authority], link_seed, e2e_seed);
        c.provider = self.providers.get(provider).map(|p| p.id);
        c.link = self.link.clone();
        c.refresh = self.refresh;
        c
    }

    /// Restarts provider `i` with the same keys and port. Like a real provider process it
    /// comes back with empty mailboxes (providers keep nothing but keys); senders' end-to-end
    /// confirmations make up for what it lost.
    pub async fn restart_provider(&mut self, i: usize) -> Result<(), NodeError> {
        let Some(old) = self.providers.get(i) else {
            return Ok(());
        };
        old.stop();
        let new = LocalNode::start(old.cfg.clone(), None).await?;
        self.providers[i] = new;
        Ok(())
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
