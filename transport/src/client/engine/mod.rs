//! The client's state machine and its tasks.

mod build;
mod confirm;
mod receive;
mod request;
mod send;
mod tasks;

use tasks::{link_task, loop_stream, poll_stream, refresh, send_stream, timer};

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::fragment::{fragment, parse_header, Added, Kind, MsgId, Reassembler, GROUP};
use super::{
    Address, ClientConfig, ClientError, ClientStats, OutboxEntry, Outcome, Received, ReplyToken,
    SendHandle,
};
use crate::directory::{fetch_verified, mailbox_id, DirectoryError, Document, Role};
use crate::link::{connect, Frame, FrameKind, LinkKeypair, LinkReceiver};
use crate::node::poll;
use crate::packet::{
    AckRoute, Delivered, MailboxId, NodeId, Packet, PacketBuilder, RouteHop, SecretKey, Surb,
    SurbSecret, SURB_SIZE,
};
use crate::util::{exp_sample, now_ms};

const OUT_QUEUE: usize = 256;

enum Job {
    Fragment { msg: MsgId, idx: usize },
    Reply { surb: Box<Surb>, body: Vec<u8> },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Queued,
    InFlight,
    Acked,
    Failed,
}

/// One transmission: the fragments of one encoding of a message, each retried on its own
/// SURB-ACK until the recipient's provider stored enough of them.
struct OutMsg {
    to: Address,
    frags: Vec<Vec<u8>>,
    status: Vec<Status>,
    attempts: Vec<u32>,
    k: usize,
    /// The outbox message this transmission carries (`None`: a request).
    parent: Option<MsgId>,
}

/// A message accepted by `send`, kept until the recipient confirms it end to end.
struct Sending {
    to: Address,
    bytes: Vec<u8>,
    /// Transmissions started so far.
    sends: u32,
    /// The current transmission, while its fragments are not yet all stored.
    current: Option<MsgId>,
    /// When to transmit again if no confirmation came (set once a transmission is stored).
    deadline: Option<Instant>,
    /// Confirmation SURB ids of every transmission (any of them may answer).
    surbs: Vec<[u8; 16]>,
    handle: Option<oneshot::Sender<Outcome>>,
    /// When it was accepted (in this process: a resumed message counts from its resumption).
    accepted: Instant,
}

/// A received message handed to the application and not yet confirmed.
struct Awaiting {
    /// Transmissions (reassembly keys) whose provider acknowledgements are held for it.
    keys: Vec<(MsgId, Kind)>,
    /// The newest confirmation reply block (`None` for requests: the response answers them).
    surb: Option<Box<Surb>>,
    /// When it was handed to the application.
    since: Instant,
}

struct AckWait {
    secret: SurbSecret,
    msg: MsgId,
    idx: usize,
    deadline: Instant,
    nodes: Vec<NodeId>,
}

struct State {
    queue: VecDeque<Job>,
    /// Fragments whose packet could not be built (no route: e.g. the recipient's provider is
    /// not in our document yet), with when to try again: a build failure waits like a lost
    /// packet, so a gap in the document does not burn every retry in a few send slots.
    deferred: Vec<(Instant, MsgId, usize)>,
    pending: HashMap<[u8; 16], AckWait>,
    cover: HashMap<[u8; 16], Instant>,
    messages: HashMap<MsgId, OutMsg>,
    sends: HashMap<MsgId, Sending>,
    confirms: HashMap<[u8; 16], (SurbSecret, MsgId)>,
    /// Reply-block ids we stopped waiting on (answered, confirmed, given up): late packets on
    /// them are expected and dropped quietly.
    retired: Retired,
    replies: HashMap<[u8; 16], SurbSecret>,
    /// Requests awaiting their response, by response id: the caller and the reply-block ids.
    waiting: HashMap<MsgId, WaitingRequest>,
    reasm: Reassembler,
    suspicion: HashMap<NodeId, u32>,
    rng: StdRng,
}

/// What `Engine::start` hands to the `Client`.
pub(crate) struct Started {
    pub(crate) engine: Arc<Engine>,
    pub(crate) incoming: mpsc::Receiver<Received>,
    pub(crate) tasks: JoinSet<()>,
    /// Handles of the messages resent from the outbox.
    pub(crate) resumed: Vec<SendHandle>,
    /// Handles of the requests re-issued from the outbox.
    pub(crate) resumed_requests: Vec<super::RequestHandle>,
}

/// The most recent reply-block ids given up on, bounded.
#[derive(Default)]
struct Retired {
    set: std::collections::HashSet<[u8; 16]>,
    order: VecDeque<[u8; 16]>,
}

impl Retired {
    const MAX: usize = 4096;

    fn add(&mut self, id: [u8; 16]) {
        if self.set.insert(id) {
            self.order.push_back(id);
        }
        while self.order.len() > Self::MAX {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, id: &[u8; 16]) -> bool {
        self.set.contains(id)
    }
}

/// A request's caller and the ids of the reply blocks it sent.
type WaitingRequest = (oneshot::Sender<Vec<u8>>, Vec<[u8; 16]>);

/// Poll-answer ids held per incomplete message, with the time the first arrived.
type HeldAcks = HashMap<(MsgId, Kind), (Instant, Vec<u64>)>;

pub(crate) struct Engine {
    cfg: ClientConfig,
    pub(crate) address: Address,
    pub(crate) stats: Arc<ClientStats>,
    /// Delivery latency: from `send` to the end-to-end confirmation.
    pub(crate) latency: Arc<crate::latency::LatencyHistogram>,
    e2e: SecretKey,
    link: LinkKeypair,
    mailbox: MailboxId,
    doc: RwLock<Arc<Document>>,
    /// Builds every packet, with a precomputed table per node and recipient key.
    packets: PacketBuilder,
    state: Mutex<State>,
    incoming: mpsc::Sender<Received>,
    out: mpsc::Sender<Frame>,
    /// Mailbox items received since the last poll (acknowledged by the next one).
    to_ack: Mutex<Vec<u64>>,
    /// Mailbox items of messages not yet complete, acknowledged when they complete.
    held: Mutex<HeldAcks>,
    /// Held mailbox items not yet reported to the provider: the next poll carries a receipt
    /// for each, so the provider stops offering them again on its short lease.
    to_receipt: Mutex<Vec<u64>>,
    /// Messages handed to the application and not yet confirmed (`auto_confirm = false`).
    awaiting: Mutex<HashMap<MsgId, Awaiting>>,
    /// The runtime the client was started on (confirmations run their durable write there).
    rt: tokio::runtime::Handle,
}

fn response_id(req: &MsgId) -> MsgId {
    let mut id = [0u8; 16];
    id.copy_from_slice(&blake3::derive_key("mixgate response id", req)[..16]);
    id
}

fn complete_topology(d: &Document, provider: Option<NodeId>) -> bool {
    (1..=3).all(|l| d.layer(l).next().is_some())
        && match provider {
            Some(p) => d.node(&p).is_some_and(|n| n.role == Role::Provider),
            None => d.providers().next().is_some(),
        }
}

async fn fetch(cfg: &ClientConfig) -> Result<Document, ClientError> {
    let mut addrs = vec![cfg.directory];
    addrs.extend(&cfg.fallback_directories);
    Ok(fetch_verified(&addrs, &cfg.authorities, cfg.threshold, now_ms()).await?)
}

impl Engine {
    pub(crate) async fn start(cfg: ClientConfig) -> Result<Started, ClientError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let doc = loop {
            match fetch(&cfg).await {
                Ok(d) if complete_topology(&d, cfg.provider) => break d,
                Ok(_) if Instant::now() > deadline => {
                    return Err(ClientError::Topology("incomplete"))
                }
                // A forged, expired or foreign document is refused at once; only an
                // unreachable directory or an incomplete topology is worth waiting for.
                Err(ClientError::Directory(e)) if !matches!(e, DirectoryError::Io(_)) => {
                    return Err(ClientError::Directory(e))
                }
                Err(e) if Instant::now() > deadline => return Err(e),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let lk = SecretKey::from_bytes(cfg.link_seed);
        let link = LinkKeypair {
            secret: lk.to_bytes(),
            public: lk.public(),
        };
        let e2e = SecretKey::from_bytes(cfg.e2e_seed);
        let mailbox = mailbox_id(&link.public);
        let provider = match cfg.provider {
            Some(p) => p,
            None => {
                let ps: Vec<_> = doc.providers().collect();
                let i = usize::from(link.public[0]) % ps.len().max(1);
                ps.get(i).ok_or(ClientError::Topology("no provider"))?.id
            }
        };
        let address = Address {
            provider,
            mailbox,
            key: e2e.public(),
        };
        let (incoming, incoming_rx) = mpsc::channel(1024);
        let (out, out_rx) = mpsc::channel(OUT_QUEUE);
        let engine = Arc::new(Engine {
            address,
            stats: Arc::default(),
            latency: Arc::default(),
            e2e,
            link,
            mailbox,
            doc: RwLock::new(Arc::new(doc)),
            packets: PacketBuilder::default(),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                deferred: Vec::new(),
                pending: HashMap::new(),
                cover: HashMap::new(),
                messages: HashMap::new(),
                sends: HashMap::new(),
                confirms: HashMap::new(),
                retired: Retired::default(),
                replies: HashMap::new(),
                waiting: HashMap::new(),
                reasm: Reassembler::default(),
                suspicion: HashMap::new(),
                rng: StdRng::from_entropy(),
            }),
            incoming,
            out,
            to_ack: Mutex::new(Vec::new()),
            held: Mutex::new(HashMap::new()),
            to_receipt: Mutex::new(Vec::new()),
            awaiting: Mutex::new(HashMap::new()),
            rt: tokio::runtime::Handle::current(),
            cfg,
        });
        let mut resumed = Vec::new();
        let mut resumed_requests = Vec::new();
        for (id, e) in engine.cfg.outbox.list()? {
            if let Some(r) = e.request {
                match engine.reissue(id, e, r) {
                    Ok(Some(h)) => resumed_requests.push(h),
                    Ok(None) => {}
                    Err(err) => warn!("outbox request not re-issued: {err}"),
                }
                continue;
            }
            match engine.submit(id, e.to, e.bytes) {
                Ok(h) => resumed.push(h),
                Err(err) => warn!("outbox entry not resent: {err}"),
            }
        }
        if !resumed_requests.is_empty() {
            // Re-issued requests were written under new ids; make that durable.
            engine.cfg.outbox.sync().await?;
        }
        if !resumed.is_empty() {
            debug!(count = resumed.len(), "resending messages from the outbox");
        }
        let mut tasks = JoinSet::new();
        tasks.spawn(link_task(engine.clone(), out_rx));
        tasks.spawn(send_stream(engine.clone()));
        tasks.spawn(loop_stream(engine.clone()));
        tasks.spawn(poll_stream(engine.clone()));
        tasks.spawn(timer(engine.clone()));
        tasks.spawn(refresh(engine.clone()));
        Ok(Started {
            engine,
            incoming: incoming_rx,
            tasks,
            resumed,
            resumed_requests,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn current_document(&self) -> Arc<Document> {
        self.document()
    }

    fn document(&self) -> Arc<Document> {
        self.doc.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Queues the fragments of one transmission `tx` of `content`; returns their number.
    fn enqueue(
        &self,
        st: &mut State,
        tx: MsgId,
        parent: Option<MsgId>,
        to: &Address,
        content: &[u8],
        kind: Kind,
    ) -> Result<usize, ClientError> {
        let frags = fragment(&tx, kind, content)?;
        let n = frags.len();
        let k = parse_header(&frags[0]).map(|h| h.k).unwrap_or(n);
        st.messages.insert(
            tx,
            OutMsg {
                to: to.clone(),
                frags,
                status: vec![Status::Queued; n],
                attempts: vec![0; n],
                k,
                parent,
            },
        );
        for idx in 0..n {
            st.queue.push_back(Job::Fragment { msg: tx, idx });
        }
        Ok(n)
    }
}
