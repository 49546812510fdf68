//! Mix nodes and providers: decrypt one layer, check the replay tag, hold for the sender-chosen
//! delay, forward; providers also store deliveries in mailboxes, acknowledge after storing and
//! answer polls with a constant number of frames. Both emit their own loop cover.

mod keys;
mod mailbox;
mod peers;
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

pub use keys::EpochKeys;
pub use mailbox::{MailboxConfig, Mailboxes, StoreError};
pub use peers::Peers;
pub use stats::NodeStats;

use crate::directory::{
    fetch_document, mailbox_id, node_id, register, Document, EpochKey, Registration, Role,
    SignedRegistration,
};
use crate::link::{accept, Frame, FrameKind, LinkConfig, LinkKeypair, LinkReceiver, LinkSender};
use crate::packet::{
    create_forward, NodeId, Packet, PacketError, Processed, RouteHop, SecretKey, DELIVERED_SIZE,
};
use crate::util::{exp_sample, now_ms};

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
}

impl NodeConfig {
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
            authorities,
            threshold: 1,
            epoch_ms: 3_600_000,
            refresh: Duration::from_secs(60),
            link: LinkConfig::default(),
            mailbox: MailboxConfig::default(),
            replay_capacity: 10_000_000,
            max_delay: Duration::from_secs(60),
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
    ingress: mpsc::Sender<Vec<u8>>,
    delay_tx: mpsc::Sender<(Instant, NodeId, Packet)>,
}

/// A bound mix node or provider; [`Node::run`] serves it until dropped.
pub struct Node {
    listener: TcpListener,
    inner: Arc<Inner>,
    ingress_rx: mpsc::Receiver<Vec<u8>>,
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
        let (ingress, ingress_rx) = mpsc::channel(8192);
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
            delay_tx,
        });
        Ok(Node {
            listener,
            inner,
            ingress_rx,
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

    /// Mailboxes (providers only).
    pub fn mailboxes(&self) -> Option<Arc<Mailboxes>> {
        self.inner.mailboxes.clone()
    }

    /// Serves until this future is dropped (which stops every task of the node).
    pub async fn run(self) -> Result<(), NodeError> {
        let Node {
            listener,
            inner,
            ingress_rx,
            delay_rx,
        } = self;
        info!(role = ?inner.cfg.role, addr = %inner.address, "node starting");
        let mut tasks = JoinSet::new();
        tasks.spawn(directory_loop(inner.clone()));
        tasks.spawn(worker(inner.clone(), ingress_rx));
        tasks.spawn(delay_loop(inner.clone(), delay_rx));
        tasks.spawn(loop_cover(inner.clone()));
        tasks.spawn(accept_loop(inner.clone(), listener));
        while tasks.join_next().await.is_some() {}
        Ok(())
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
                if let Err(e) = register(self.cfg.directory, &sr).await {
                    warn!("registration failed: {e}");
                }
            }
            Err(e) => warn!("cannot sign registration: {e}"),
        }
    }

    fn send_to(&self, next: NodeId, p: Packet) {
        if next == self.id {
            if self.ingress.try_send(p.as_bytes().to_vec()).is_err() {
                NodeStats::inc(&self.stats.dropped_overload);
            }
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
        match fetch_document(inner.cfg.directory, None).await {
            Ok(sd) => match sd.verify(&inner.cfg.authorities, inner.cfg.threshold, now_ms()) {
                Ok(d) => {
                    if d.node(&inner.id).is_none() {
                        inner.register().await;
                    }
                    inner.doc_tx.send_replace(Some(Arc::new(d)));
                }
                Err(e) => {
                    NodeStats::inc(&inner.stats.bad_documents);
                    warn!("directory document refused: {e}");
                }
            },
            Err(e) => debug!("directory fetch failed: {e}"),
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

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok((sock, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        conns.spawn(serve_conn(inner.clone(), sock));
    }
}

async fn serve_conn(inner: Arc<Inner>, sock: TcpStream) {
    let doc = inner.document();
    let is_provider = inner.cfg.role == Role::Provider;
    let authorize = |k: &[u8; 32]| {
        is_provider
            || doc
                .as_ref()
                .is_some_and(|d| d.node_by_link_key(k).is_some())
    };
    let (peer, tx, rx) = match accept(sock, &inner.link, authorize, &inner.cfg.link).await {
        Ok(x) => x,
        Err(e) => {
            debug!("link refused: {e}");
            NodeStats::inc(&inner.stats.links_refused);
            return;
        }
    };
    let is_node = doc
        .as_ref()
        .is_some_and(|d| d.node_by_link_key(&peer).is_some());
    if let Err(e) = read_frames(&inner, rx, tx, (!is_node).then(|| mailbox_id(&peer))).await {
        debug!("link ended: {e}");
        NodeStats::inc(&inner.stats.link_errors);
    }
}

async fn read_frames(
    inner: &Inner,
    mut rx: LinkReceiver,
    mut tx: LinkSender,
    client_mailbox: Option<[u8; 16]>,
) -> Result<(), crate::link::LinkError> {
    loop {
        let f = rx.recv().await?;
        match f.kind {
            FrameKind::Packet => {
                NodeStats::inc(&inner.stats.received);
                if inner.ingress.try_send(f.body.to_vec()).is_err() {
                    NodeStats::inc(&inner.stats.dropped_overload);
                }
            }
            FrameKind::Submit => {
                NodeStats::inc(&inner.stats.received);
                let known = inner
                    .document()
                    .and_then(|d| d.node(&f.next).map(|n| matches!(n.role, Role::Mix { .. })))
                    .unwrap_or(false);
                if client_mailbox.is_none() || !known {
                    NodeStats::inc(&inner.stats.dropped_unknown_hop);
                    continue;
                }
                match Packet::from_slice(&f.body[..]) {
                    Ok(p) => {
                        NodeStats::inc(&inner.stats.submitted);
                        inner.send_to(f.next, p);
                    }
                    Err(_) => NodeStats::inc(&inner.stats.dropped_malformed),
                }
            }
            FrameKind::Poll => {
                let (Some(mb), Some(boxes)) = (client_mailbox, inner.mailboxes.as_ref()) else {
                    NodeStats::inc(&inner.stats.dropped_malformed);
                    continue;
                };
                let batch = inner.document().map_or(1, |d| d.params.poll_batch.max(1)) as usize;
                let (items, expired) = boxes.take(&mb, batch);
                for _ in 0..expired {
                    NodeStats::inc(&inner.stats.expired);
                }
                let n = items.len();
                for item in items {
                    let mut body = vec![1u8];
                    body.extend_from_slice(&item);
                    tx.send(&Frame::new(FrameKind::Mailbox, &body)).await?;
                }
                for _ in n..batch {
                    tx.send(&Frame::new(FrameKind::Mailbox, &[0u8])).await?;
                }
                NodeStats::inc(&inner.stats.polls_answered);
            }
            _ => NodeStats::inc(&inner.stats.dropped_malformed),
        }
    }
}

async fn worker(inner: Arc<Inner>, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(bytes) = rx.recv().await {
        handle_packet(&inner, &bytes).await;
    }
}

async fn handle_packet(inner: &Inner, bytes: &[u8]) {
    let st = &inner.stats;
    match inner.keys.process(inner.epoch(), bytes) {
        Err(PacketError::BadMac) | Err(PacketError::BadKey) => NodeStats::inc(&st.dropped_bad_mac),
        Err(PacketError::Replay) => NodeStats::inc(&st.dropped_replay),
        Err(_) => NodeStats::inc(&st.dropped_malformed),
        Ok(Processed::Relay {
            next,
            delay_us,
            packet,
        }) => {
            let known =
                next == inner.id || inner.document().is_some_and(|d| d.node(&next).is_some());
            if !known {
                NodeStats::inc(&st.dropped_unknown_hop);
                return;
            }
            let delay = Duration::from_micros(u64::from(delay_us)).min(inner.cfg.max_delay);
            if delay.is_zero() {
                inner.send_to(next, packet);
            } else if inner
                .delay_tx
                .try_send((Instant::now() + delay, next, packet))
                .is_err()
            {
                NodeStats::inc(&st.dropped_overload);
            }
        }
        Ok(Processed::Deliver { mailbox, delivered }) => {
            if mailbox == inner.id {
                NodeStats::inc(&st.loops_received);
                return;
            }
            let Some(boxes) = inner.mailboxes.as_ref() else {
                NodeStats::inc(&st.dropped_malformed);
                return;
            };
            let ack = match delivered.take_ack() {
                Ok(a) => a,
                Err(_) => {
                    NodeStats::inc(&st.dropped_tagged);
                    return;
                }
            };
            let bytes = delivered.to_bytes();
            debug_assert_eq!(bytes.len(), DELIVERED_SIZE);
            if boxes.store(mailbox, bytes).is_err() {
                NodeStats::inc(&st.dropped_quota);
                return;
            }
            NodeStats::inc(&st.stored);
            if let Some(ack) = ack {
                match ack.into_packet(&[]) {
                    Ok((first, p)) => {
                        NodeStats::inc(&st.acks_sent);
                        inner.send_to(first, p);
                    }
                    Err(_) => NodeStats::inc(&st.dropped_malformed),
                }
            }
        }
    }
}

/// Most packets a node holds in its delay heap at once.
const MAX_HELD: usize = 200_000;

/// Holds delayed packets in a heap and forwards each when its time comes (delay order).
async fn delay_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<(Instant, NodeId, Packet)>) {
    let mut heap: BinaryHeap<Reverse<(Instant, u64, NodeId)>> = BinaryHeap::new();
    let mut held: std::collections::HashMap<u64, Packet> = std::collections::HashMap::new();
    let mut seq = 0u64;
    loop {
        let next_due = heap.peek().map(|Reverse((t, _, _))| *t);
        tokio::select! {
            item = rx.recv() => {
                let Some((t, next, p)) = item else { return };
                if held.len() >= MAX_HELD {
                    NodeStats::inc(&inner.stats.dropped_overload);
                    continue;
                }
                seq += 1;
                heap.push(Reverse((t, seq, next)));
                held.insert(seq, p);
            }
            _ = async {
                match next_due {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                while let Some(Reverse((t, s, next))) = heap.peek().copied() {
                    if t > now {
                        break;
                    }
                    heap.pop();
                    if let Some(p) = held.remove(&s) {
                        inner.send_to(next, p);
                    }
                }
            }
        }
    }
}

/// Sends the node's own loop cover at the directory's rate, through every other layer and
/// back to itself.
async fn loop_cover(inner: Arc<Inner>) {
    let mut rng = rand::rngs::StdRng::from_entropy();
    loop {
        let Some(doc) = inner.document() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let rate = doc.params.mix_loop_per_s;
        if rate <= 0.0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tokio::time::sleep(Duration::from_secs_f64(exp_sample(&mut rng, 1.0 / rate))).await;
        if let Some((first, p)) = build_loop(&inner, &doc, &mut rng) {
            NodeStats::inc(&inner.stats.loops_sent);
            inner.send_to(first, p);
        }
    }
}

fn build_loop(
    inner: &Inner,
    doc: &Document,
    rng: &mut rand::rngs::StdRng,
) -> Option<(NodeId, Packet)> {
    let me = doc.node(&inner.id)?;
    let mu_us = doc.params.mu_ms * 1000.0;
    let layers: Vec<Option<u8>> = match me.role {
        Role::Provider => vec![Some(1), Some(2), Some(3)],
        Role::Mix { layer } => (layer + 1..=3)
            .map(Some)
            .chain(std::iter::once(None))
            .chain((1..layer).map(Some))
            .collect(),
    };
    let mut route = vec![];
    for l in layers {
        let n = match l {
            Some(l) => doc.layer(l).choose(rng)?,
            None => doc.providers().choose(rng)?,
        };
        let delay = if l.is_some() {
            exp_sample(rng, mu_us) as u32
        } else {
            0
        };
        route.push(RouteHop {
            id: n.id,
            public: n.mix_key,
            delay_us: delay,
        });
    }
    route.push(RouteHop {
        id: me.id,
        public: me.mix_key,
        delay_us: 0,
    });
    let dummy = SecretKey::random().public();
    let p = create_forward(rng, &route, &inner.id, &dummy, None, &[]).ok()?;
    Some((route[0].id, p))
}
