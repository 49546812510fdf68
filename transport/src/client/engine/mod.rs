//! The client's state machine and its tasks.

mod build;
mod receive;
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
use crate::directory::{fetch_document, mailbox_id, DirectoryError, Document, Role};
use crate::link::{connect, Frame, FrameKind, LinkKeypair, LinkReceiver};
use crate::node::poll;
use crate::packet::{
    create_forward, create_surb, Delivered, MailboxId, NodeId, Packet, RouteHop, SecretKey, Surb,
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

struct OutMsg {
    to: Address,
    frags: Vec<Vec<u8>>,
    status: Vec<Status>,
    attempts: Vec<u32>,
    k: usize,
    tx: Option<oneshot::Sender<Outcome>>,
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
    pending: HashMap<[u8; 16], AckWait>,
    cover: HashMap<[u8; 16], Instant>,
    messages: HashMap<MsgId, OutMsg>,
    replies: HashMap<[u8; 16], SurbSecret>,
    waiting: HashMap<MsgId, oneshot::Sender<Vec<u8>>>,
    reasm: Reassembler,
    suspicion: HashMap<NodeId, u32>,
    rng: StdRng,
}

/// Poll-answer ids held per incomplete message, with the time the first arrived.
type HeldAcks = HashMap<(MsgId, Kind), (Instant, Vec<u64>)>;

pub(crate) struct Engine {
    cfg: ClientConfig,
    pub(crate) address: Address,
    pub(crate) stats: Arc<ClientStats>,
    e2e: SecretKey,
    link: LinkKeypair,
    mailbox: MailboxId,
    doc: RwLock<Arc<Document>>,
    state: Mutex<State>,
    incoming: mpsc::Sender<Received>,
    out: mpsc::Sender<Frame>,
    /// Mailbox items received since the last poll (acknowledged by the next one).
    to_ack: Mutex<Vec<u64>>,
    /// Mailbox items of messages not yet complete, acknowledged when they complete.
    held: Mutex<HeldAcks>,
    /// Messages handed to the application and not yet confirmed (`auto_confirm = false`).
    awaiting: Mutex<HashMap<MsgId, (MsgId, Kind)>>,
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
    let sd = fetch_document(cfg.directory, None).await?;
    Ok(sd.verify(&cfg.authorities, cfg.threshold, now_ms())?)
}

impl Engine {
    pub(crate) async fn start(
        cfg: ClientConfig,
    ) -> Result<(Arc<Engine>, mpsc::Receiver<Received>, JoinSet<()>), ClientError> {
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
            e2e,
            link,
            mailbox,
            doc: RwLock::new(Arc::new(doc)),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                pending: HashMap::new(),
                cover: HashMap::new(),
                messages: HashMap::new(),
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
            awaiting: Mutex::new(HashMap::new()),
            cfg,
        });
        for (id, e) in engine.cfg.outbox.list() {
            if let Err(err) = engine.enqueue(id, &e.to, &e.bytes, Kind::Data) {
                warn!("outbox entry dropped: {err}");
                engine.cfg.outbox.remove(&id);
            }
        }
        let mut tasks = JoinSet::new();
        tasks.spawn(link_task(engine.clone(), out_rx));
        tasks.spawn(send_stream(engine.clone()));
        tasks.spawn(loop_stream(engine.clone()));
        tasks.spawn(poll_stream(engine.clone()));
        tasks.spawn(timer(engine.clone()));
        tasks.spawn(refresh(engine.clone()));
        Ok((engine, incoming_rx, tasks))
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

    fn enqueue(
        &self,
        id: MsgId,
        to: &Address,
        bytes: &[u8],
        kind: Kind,
    ) -> Result<oneshot::Receiver<Outcome>, ClientError> {
        let frags = fragment(&id, kind, bytes)?;
        let n = frags.len();
        let k = parse_header(&frags[0]).map(|h| h.k).unwrap_or(n);
        let (tx, rx) = oneshot::channel();
        let mut st = self.state();
        st.messages.insert(
            id,
            OutMsg {
                to: to.clone(),
                frags,
                status: vec![Status::Queued; n],
                attempts: vec![0; n],
                k,
                tx: Some(tx),
            },
        );
        for idx in 0..n {
            st.queue.push_back(Job::Fragment { msg: id, idx });
        }
        Ok(rx)
    }

    pub(crate) fn send(
        &self,
        to: &Address,
        bytes: Vec<u8>,
        kind: Kind,
        id: Option<MsgId>,
    ) -> Result<SendHandle, ClientError> {
        let id = id.unwrap_or_else(|| {
            let mut b = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut b);
            b
        });
        let rx = self.enqueue(id, to, &bytes, kind)?;
        if kind == Kind::Data {
            self.cfg.outbox.put(
                id,
                OutboxEntry {
                    to: to.clone(),
                    bytes,
                },
            );
        }
        Ok(SendHandle { id, rx })
    }

    pub(crate) fn request(
        &self,
        to: &Address,
        bytes: Vec<u8>,
        max_response: usize,
    ) -> Result<oneshot::Receiver<Vec<u8>>, ClientError> {
        let k = max_response.div_ceil(super::CHUNK).max(1);
        let n = k + k.div_ceil(GROUP);
        let mut req_id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut req_id);
        let doc = self.document();
        let mut content = Vec::with_capacity(2 + n * SURB_SIZE + bytes.len());
        content.extend_from_slice(&(n as u16).to_be_bytes());
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.state();
            for _ in 0..n {
                let route = self
                    .route(&mut st, &doc, self.address.provider)
                    .ok_or(ClientError::Topology("no route"))?;
                let State { rng, .. } = &mut *st;
                let (surb, secret) = create_surb(rng, &route, &self.mailbox)
                    .map_err(|_| ClientError::Topology("bad route"))?;
                content.extend_from_slice(&surb.to_bytes());
                st.replies.insert(secret.id, secret);
            }
            st.waiting.insert(response_id(&req_id), tx);
        }
        content.extend_from_slice(&bytes);
        self.send(to, content, Kind::Request, Some(req_id))?;
        Ok(rx)
    }

    pub(crate) fn respond(&self, token: ReplyToken, bytes: Vec<u8>) -> Result<(), ClientError> {
        let frags = fragment(&response_id(&token.id), Kind::Response, &bytes)?;
        if frags.len() > token.surbs.len() {
            return Err(ClientError::NoReplyBlocks);
        }
        let mut st = self.state();
        for (body, surb) in frags.into_iter().zip(token.surbs) {
            st.queue.push_back(Job::Reply {
                surb: Box::new(surb),
                body,
            });
        }
        Ok(())
    }
}
