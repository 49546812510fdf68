//! Mix nodes and providers: decrypt one layer, check the replay tag, hold for the sender-chosen
//! delay, forward; providers also store deliveries in mailboxes, acknowledge after storing and
//! answer polls with a constant number of frames. Both emit their own loop cover.

mod cover;
mod ingress;
mod keys;
mod links;
mod mailbox;
mod peers;
pub mod poll;
mod process;
mod stats;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use rand::seq::IteratorRandom;
use rand::SeedableRng;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

pub use ingress::{Ingress, Refused};
pub use keys::EpochKeys;
pub use mailbox::{MailboxConfig, Mailboxes, StoreError};
pub use peers::Peers;
pub use stats::NodeStats;

use crate::directory::{
    fetch_verified, mailbox_id, node_id, register, DirectoryError, Document, EpochKey,
    Registration, Role, SignedRegistration,
};
use crate::link::{accept, Frame, FrameKind, LinkConfig, LinkKeypair, LinkReceiver, LinkSender};
use crate::packet::{
    create_forward, NodeId, Packet, PacketError, Processed, RouteHop, SecretKey, DELIVERED_SIZE,
};
use crate::util::{exp_sample, now_ms};
use cover::loop_cover;
use links::accept_loop;
use process::{delay_loop, worker};

/// Packets one peer may have waiting for the worker (all its links together).
const INGRESS_PER_PEER: usize = 1024;
/// Packets all peers together may have waiting for the worker.
const INGRESS_TOTAL: usize = 16384;
/// Incoming links one peer key may hold at once (a node needs one, a gateway one or two
/// while reconnecting).
const LINKS_PER_PEER: usize = 4;

/// Configuration of a mix node or provider.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Address to listen on for Noise links.
    pub listen: SocketAddr,
    /// Address to publish (defaults to the bound address).
    pub public_address: Option<String>,
    /// Ed25519 identity key seed (long-term, the only thing kept on disk).
    pub identity_seed: [u8; 32],
    /// Noise static key seed (long-term).
    pub link_seed: [u8; 32],
    /// Mix layer or provider.
    pub role: Role,
    /// Directory address.
    pub directory: SocketAddr,
    /// Other authorities' addresses, tried in order when `directory` is down or serves a
    /// document that does not verify.
    pub fallback_directories: Vec<SocketAddr>,
    /// Trusted directory authority keys.
    pub authorities: Vec<[u8; 32]>,
    /// Signatures required on a document.
    pub threshold: usize,
    /// Epoch length (must match the directory's).
    pub epoch_ms: u64,
    /// How often to refresh the directory document.
    pub refresh: Duration,
    /// Link timing.
    pub link: LinkConfig,
    /// Mailbox limits (providers).
    pub mailbox: MailboxConfig,
    /// Expected packets per epoch (sizes the replay filters).
    pub replay_capacity: u64,
    /// Longest delay honoured; longer sender-chosen delays are clamped.
    pub max_delay: Duration,
    /// Most incoming connections served at once (handshaking or established); more are
    /// closed at once and counted in `links_refused`.
    pub max_links: usize,
}

impl NodeConfig {
    /// The directory addresses in the order they are tried.
    pub fn directories(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.directory).chain(self.fallback_directories.iter().copied())
    }

    /// A configuration with defaults for everything but identity, role and addresses.
    pub fn new(
        listen: SocketAddr,
        role: Role,
        identity_seed: [u8; 32],
        directory: SocketAddr,
        authorities: Vec<[u8; 32]>,
    ) -> Self {
        let link_seed = *blake3::derive_key("mixgate node link key", &identity_seed)
            .first_chunk::<32>()
            .unwrap_or(&[0; 32]);
        NodeConfig {
            listen,
            public_address: None,
            identity_seed,
            link_seed,
            role,
            directory,
            fallback_directories: Vec::new(),
            authorities,
            threshold: 1,
            epoch_ms: 3_600_000,
            refresh: Duration::from_secs(60),
            link: LinkConfig::default(),
            mailbox: MailboxConfig::default(),
            replay_capacity: 10_000_000,
            max_delay: Duration::from_secs(60),
            max_links: 10_000,
        }
    }
}

/// Errors that stop a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Could not bind or accept.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

struct Inner {
    cfg: NodeConfig,
    id: NodeId,
    identity: SigningKey,
    link: LinkKeypair,
    address: String,
    keys: EpochKeys,
    doc_tx: watch::Sender<Option<Arc<Document>>>,
    doc: watch::Receiver<Option<Arc<Document>>>,
    peers: Peers,
    mailboxes: Option<Arc<Mailboxes>>,
    stats: Arc<NodeStats>,
    ingress: Arc<Ingress>,
    /// Established incoming links per peer static key.
    links_per_peer: std::sync::Mutex<std::collections::HashMap<[u8; 32], usize>>,
    delay_tx: mpsc::Sender<(Instant, NodeId, Packet)>,
}

/// A bound mix node or provider; [`Node::run`] serves it until dropped.
pub struct Node {
    listener: TcpListener,
    inner: Arc<Inner>,
    delay_rx: mpsc::Receiver<(Instant, NodeId, Packet)>,
}

fn link_keypair(seed: &[u8; 32]) -> LinkKeypair {
    let k = SecretKey::from_bytes(*seed);
    LinkKeypair {
        secret: k.to_bytes(),
        public: k.public(),
    }
}

impl Node {
    /// Binds the listener. Providers get `mailboxes` (pass the same store again to model a
    /// restart that keeps what was acknowledged; `None` makes a fresh one).
    pub async fn bind(
        cfg: NodeConfig,
        mailboxes: Option<Arc<Mailboxes>>,
    ) -> Result<Self, NodeError> {
        let listener = TcpListener::bind(cfg.listen).await?;
        let address = cfg
            .public_address
            .clone()
            .unwrap_or(listener.local_addr()?.to_string());
        let identity = SigningKey::from_bytes(&cfg.identity_seed);
        let id = node_id(&identity.verifying_key().to_bytes());
        let link = link_keypair(&cfg.link_seed);
        let (doc_tx, doc) = watch::channel(None);
        let stats = Arc::new(NodeStats::default());
        let ingress = Arc::new(Ingress::new(INGRESS_PER_PEER, INGRESS_TOTAL));
        let (delay_tx, delay_rx) = mpsc::channel(65536);
        let mailboxes = match cfg.role {
            Role::Provider => {
                Some(mailboxes.unwrap_or_else(|| Arc::new(Mailboxes::new(cfg.mailbox.clone()))))
            }
            Role::Mix { .. } => None,
        };
        let epoch = now_ms() / cfg.epoch_ms.max(1);
        let inner = Arc::new(Inner {
            keys: EpochKeys::new(epoch, cfg.replay_capacity),
            peers: Peers::new(link.clone(), cfg.link.clone(), doc.clone(), stats.clone()),
            cfg,
            id,
            identity,
            link,
            address,
            doc_tx,
            doc,
            mailboxes,
            stats,
            ingress,
            links_per_peer: Default::default(),
            delay_tx,
        });
        Ok(Node {
            listener,
            inner,
            delay_rx,
        })
    }

    /// The node id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Counters.
    pub fn stats(&self) -> Arc<NodeStats> {
        self.inner.stats.clone()
    }

    /// Live gauges (queue depths, links) for the metrics endpoint.
    pub fn probe(&self) -> NodeProbe {
        NodeProbe(self.inner.clone())
    }

    /// Mailboxes (providers only).
    pub fn mailboxes(&self) -> Option<Arc<Mailboxes>> {
        self.inner.mailboxes.clone()
    }

    /// Serves until this future is dropped (which stops every task of the node).
    pub async fn run(self) -> Result<(), NodeError> {
        let Node {
            listener,
            inner,
            delay_rx,
        } = self;
        info!(
            role = ?inner.cfg.role,
            addr = %inner.address,
            identity = %data_encoding::HEXLOWER.encode(&inner.identity.verifying_key().to_bytes()),
            "node starting"
        );
        if let Some(b) = &inner.mailboxes {
            b.requeue_all();
        }
        let mut tasks = JoinSet::new();
        tasks.spawn(directory_loop(inner.clone()));
        tasks.spawn(worker(inner.clone()));
        tasks.spawn(delay_loop(inner.clone(), delay_rx));
        tasks.spawn(loop_cover(inner.clone()));
        tasks.spawn(accept_loop(inner.clone(), listener));
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// Reads a running node's queues and links at any time (cheap: a few lock acquisitions).
#[derive(Clone)]
pub struct NodeProbe(Arc<Inner>);

/// Queue depths and link counts of a node at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeGauges {
    /// Packets received and waiting to be processed.
    pub ingress_queue: usize,
    /// Packets processed and waiting for their mixing delay.
    pub delay_queue: usize,
    /// Packets waiting to be written to outbound links.
    pub link_queue: usize,
    /// Established incoming links.
    pub links_in: usize,
    /// Open outbound links.
    pub links_out: usize,
}

impl NodeProbe {
    /// The current gauges.
    pub fn gauges(&self) -> NodeGauges {
        let inner = &self.0;
        let (links_out, link_queue) = inner.peers.outbound();
        let links_in = inner
            .links_per_peer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum();
        NodeGauges {
            ingress_queue: inner.ingress.len(),
            delay_queue: inner.delay_tx.max_capacity() - inner.delay_tx.capacity(),
            link_queue,
            links_in,
            links_out,
        }
    }

    /// Whether this node is a provider.
    pub fn is_provider(&self) -> bool {
        matches!(self.0.cfg.role, Role::Provider)
    }
}

/// Runs a mix node (the `mixgate mixnode` entry point).
pub async fn run_mixnode(cfg: NodeConfig) -> Result<(), NodeError> {
    Node::bind(cfg, None).await?.run().await
}

/// Runs a provider (the `mixgate provider` entry point).
pub async fn run_provider(cfg: NodeConfig) -> Result<(), NodeError> {
    Node::bind(cfg, None).await?.run().await
}

impl Inner {
    fn epoch(&self) -> u64 {
        now_ms() / self.cfg.epoch_ms.max(1)
    }

    /// The current epoch, and whether we are in its last tenth (when senders with a clock
    /// slightly ahead may already use the next epoch's key).
    fn epoch_position(&self) -> (u64, bool) {
        let len = self.cfg.epoch_ms.max(1);
        let now = now_ms();
        (now / len, now % len >= len - len / 10)
    }

    fn document(&self) -> Option<Arc<Document>> {
        self.doc.borrow().clone()
    }

    async fn register(&self) {
        let reg = Registration {
            identity: self.identity.verifying_key().to_bytes(),
            role: self.cfg.role,
            address: self.address.clone(),
            link_key: self.link.public,
            mix_keys: self
                .keys
                .publics()
                .into_iter()
                .map(|(epoch, key)| EpochKey { epoch, key })
                .collect(),
        };
        match SignedRegistration::sign(&reg, &self.identity) {
            Ok(sr) => {
                // One authority is enough: authorities forward registrations to each other.
                let mut last = None;
                for addr in self.cfg.directories() {
                    match register(addr, &sr).await {
                        Ok(()) => return,
                        Err(e) => last = Some(e),
                    }
                }
                if let Some(e) = last {
                    warn!("registration failed: {e}");
                }
            }
            Err(e) => warn!("cannot sign registration: {e}"),
        }
    }

    /// Queues a packet that arrived on a link from the peer with static key `source`.
    fn enqueue(&self, source: ingress::Source, packet: ingress::Item) {
        match self.ingress.push(source, packet) {
            Ok(()) => {}
            Err(Refused::SourceFull) => NodeStats::inc(&self.stats.dropped_peer_full),
            Err(Refused::NodeFull) => NodeStats::inc(&self.stats.dropped_overload),
        }
    }

    /// Queues a packet read from a link, holding the link's reader while its peer's queue is
    /// full (back-pressure on that peer alone).
    async fn enqueue_wait(&self, source: ingress::Source, packet: ingress::Item) {
        match self.ingress.push_wait(source, packet).await {
            Ok(()) => {}
            Err(Refused::SourceFull) => NodeStats::inc(&self.stats.dropped_peer_full),
            Err(Refused::NodeFull) => NodeStats::inc(&self.stats.dropped_overload),
        }
    }

    fn send_to(&self, next: NodeId, p: Packet) {
        if next == self.id {
            self.enqueue([0; 32], Box::new(*p.as_bytes()));
        } else {
            self.peers.send(next, p);
        }
    }
}

async fn directory_loop(inner: Arc<Inner>) {
    let mut registered_epoch = None;
    loop {
        let epoch = inner.epoch();
        if registered_epoch != Some(epoch) {
            inner.keys.rotate(epoch);
            inner.register().await;
            registered_epoch = Some(epoch);
        }
        let addrs: Vec<SocketAddr> = inner.cfg.directories().collect();
        match fetch_verified(
            &addrs,
            &inner.cfg.authorities,
            inner.cfg.threshold,
            now_ms(),
        )
        .await
        {
            Ok(d) => {
                if d.node(&inner.id).is_none() {
                    inner.register().await;
                }
                inner.doc_tx.send_replace(Some(Arc::new(d)));
            }
            Err(DirectoryError::Io(e)) => debug!("directory fetch failed: {e}"),
            Err(e) => {
                NodeStats::inc(&inner.stats.bad_documents);
                warn!("directory document refused: {e}");
            }
        }
        let wait = if inner
            .document()
            .is_some_and(|d| d.node(&inner.id).is_some())
        {
            inner.cfg.refresh
        } else {
            inner.cfg.refresh.min(Duration::from_millis(200))
        };
        tokio::time::sleep(wait).await;
    }
}
