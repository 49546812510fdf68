//! The client's state machine and its tasks.

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

    /// Picks one mix per layer, preferring nodes not under suspicion, then the provider `to`.
    /// The sender's own provider is not an onion hop: it relays submitted packets as they are.
    fn route(&self, st: &mut State, doc: &Document, to: NodeId) -> Option<Vec<RouteHop>> {
        let last = doc.node(&to)?;
        let mu_us = doc.params.mu_ms * 1000.0;
        let mut route = Vec::with_capacity(4);
        for l in 1..=3 {
            let nodes: Vec<_> = doc.layer(l).collect();
            let best = nodes
                .iter()
                .map(|n| st.suspicion.get(&n.id).copied().unwrap_or(0))
                .min()?;
            let cands: Vec<_> = nodes
                .into_iter()
                .filter(|n| st.suspicion.get(&n.id).copied().unwrap_or(0) == best)
                .collect();
            let n = cands.choose(&mut st.rng)?;
            route.push(RouteHop {
                id: n.id,
                public: n.mix_key,
                delay_us: exp_sample(&mut st.rng, mu_us).min(u32::MAX as f64) as u32,
            });
        }
        route.push(RouteHop {
            id: last.id,
            public: last.mix_key,
            delay_us: 0,
        });
        Some(route)
    }

    /// Expected time until an acknowledgement can be seen, for attempt `a`.
    fn ack_timeout(&self, doc: &Document, a: u32) -> Duration {
        let p = &doc.params;
        let rtt_ms =
            6.0 * p.mu_ms + 1000.0 / p.poll_per_s.max(0.01) + 2000.0 / p.lambda_per_s.max(0.01);
        let base = Duration::from_secs_f64(rtt_ms * 1.5 / 1000.0) + self.cfg.ack_slack;
        base.mul_f64(1.5f64.powi(a.min(5) as i32))
    }

    /// Builds the next packet for the Poisson stream: a queued one, or loop cover.
    fn next_packet(&self) -> Option<(NodeId, Packet, bool)> {
        let doc = self.document();
        let mut st = self.state();
        while let Some(job) = st.queue.pop_front() {
            match job {
                Job::Reply { surb, body } => {
                    if let Ok((first, p)) = surb.into_packet(&body) {
                        return Some((first, p, true));
                    }
                }
                Job::Fragment { msg, idx } => {
                    let Some(m) = st.messages.get(&msg) else {
                        continue;
                    };
                    if m.status[idx] != Status::Queued {
                        continue;
                    }
                    let to = m.to.clone();
                    let body = m.frags[idx].clone();
                    let attempt = m.attempts[idx];
                    let fwd = self.route(&mut st, &doc, to.provider)?;
                    let back = self.route(&mut st, &doc, self.address.provider)?;
                    let State { rng, .. } = &mut *st;
                    let (ack, secret) = create_surb(rng, &back, &self.mailbox).ok()?;
                    let p =
                        create_forward(rng, &fwd, &to.mailbox, &to.key, Some(&ack), &body).ok()?;
                    let nodes = fwd[..3].iter().chain(&back[..3]).map(|h| h.id).collect();
                    if let Some(m) = st.messages.get_mut(&msg) {
                        m.status[idx] = Status::InFlight;
                    }
                    st.pending.insert(
                        secret.id,
                        AckWait {
                            secret,
                            msg,
                            idx,
                            deadline: Instant::now() + self.ack_timeout(&doc, attempt),
                            nodes,
                        },
                    );
                    return Some((fwd[0].id, p, true));
                }
            }
        }
        drop(st);
        self.loop_packet().map(|(n, p)| (n, p, false))
    }

    /// Loop cover: a packet to our own mailbox, with its own acknowledgement, built exactly
    /// like a real one so that cost and shape are identical.
    fn loop_packet(&self) -> Option<(NodeId, Packet)> {
        let doc = self.document();
        let mut st = self.state();
        let me = self.address.provider;
        let fwd = self.route(&mut st, &doc, me)?;
        let back = self.route(&mut st, &doc, me)?;
        let mut id = [0u8; 16];
        st.rng.fill_bytes(&mut id);
        let body = fragment(&id, Kind::Loop, &[]).ok()?.swap_remove(0);
        let State { rng, .. } = &mut *st;
        let (ack, secret) = create_surb(rng, &back, &self.mailbox).ok()?;
        let p = create_forward(
            rng,
            &fwd,
            &self.mailbox,
            &self.address.key,
            Some(&ack),
            &body,
        )
        .ok()?;
        st.cover.insert(secret.id, Instant::now());
        Some((fwd[0].id, p))
    }

    fn emit(&self, f: Frame) {
        if self.out.try_send(f).is_ok() {
            ClientStats::inc(&self.stats.frames_out);
        }
    }

    /// Re-evaluates a message after a fragment changed state.
    fn evaluate(&self, st: &mut State, id: &MsgId) {
        let Some(m) = st.messages.get(id) else { return };
        let k = m.k;
        let groups = k.div_ceil(GROUP);
        let mut ok = true;
        let mut lost = false;
        for g in 0..groups {
            let data = g * GROUP..((g + 1) * GROUP).min(k);
            let par = m.status[k + g];
            let missing = data
                .clone()
                .filter(|i| m.status[*i] != Status::Acked)
                .count();
            let failed = data.filter(|i| m.status[*i] == Status::Failed).count()
                + usize::from(par == Status::Failed);
            if !(missing == 0 || (missing == 1 && par == Status::Acked)) {
                ok = false;
            }
            if failed >= 2 || (failed == 1 && par == Status::Failed && missing > 0) {
                lost = true;
            }
        }
        let outcome = if ok {
            Outcome::Delivered
        } else if lost {
            Outcome::Failed
        } else {
            return;
        };
        if let Some(mut m) = st.messages.remove(id) {
            if let Some(tx) = m.tx.take() {
                let _ = tx.send(outcome);
            }
        }
        self.cfg.outbox.remove(id);
        match outcome {
            Outcome::Delivered => ClientStats::inc(&self.stats.delivered),
            Outcome::Failed => ClientStats::inc(&self.stats.failed),
        }
    }

    fn on_mailbox_frame(&self, body: &[u8]) {
        if body.first() != Some(&1) {
            return;
        }
        let Ok(d) = Delivered::from_bytes(&body[1..]) else {
            ClientStats::inc(&self.stats.dropped_bad);
            return;
        };
        let mut st = self.state();
        if let Some(w) = st.pending.remove(&d.surb_id) {
            if w.secret.open(&d.payload).is_err() {
                ClientStats::inc(&self.stats.dropped_bad);
                return;
            }
            ClientStats::inc(&self.stats.acks);
            for n in &w.nodes {
                st.suspicion.remove(n);
            }
            if let Some(m) = st.messages.get_mut(&w.msg) {
                m.status[w.idx] = Status::Acked;
                self.evaluate(&mut st, &w.msg);
            }
            return;
        }
        if st.cover.remove(&d.surb_id).is_some() {
            ClientStats::inc(&self.stats.loops_received);
            return;
        }
        if let Some(secret) = st.replies.remove(&d.surb_id) {
            let Ok(b) = secret.open(&d.payload) else {
                ClientStats::inc(&self.stats.dropped_bad);
                return;
            };
            if let Ok(Added::Complete(h, msg)) = st.reasm.add(&b[..]) {
                if h.kind == Kind::Response {
                    if let Some(tx) = st.waiting.remove(&h.id) {
                        let _ = tx.send(msg);
                    }
                }
            }
            return;
        }
        let Ok(b) = d.open_forward(&self.e2e) else {
            ClientStats::inc(&self.stats.dropped_bad);
            return;
        };
        match parse_header(&b[..]) {
            Ok(h) if h.kind == Kind::Loop => {
                ClientStats::inc(&self.stats.loops_received);
                return;
            }
            Ok(h) if h.kind == Kind::Response => {
                ClientStats::inc(&self.stats.dropped_bad);
                return;
            }
            Ok(_) => {}
            Err(_) => {
                ClientStats::inc(&self.stats.dropped_bad);
                return;
            }
        }
        match st.reasm.add(&b[..]) {
            Ok(Added::Pending) => {}
            Ok(Added::Duplicate) => ClientStats::inc(&self.stats.duplicates),
            Ok(Added::Complete(h, msg)) => {
                drop(st);
                if !self.cfg.outbox.mark_received(&h.id) {
                    ClientStats::inc(&self.stats.duplicates);
                    return;
                }
                let r = if h.kind == Kind::Request {
                    parse_request(h.id, msg)
                } else {
                    Some(Received {
                        id: h.id,
                        bytes: msg,
                        reply: None,
                    })
                };
                match r {
                    Some(r) => {
                        ClientStats::inc(&self.stats.received);
                        if self.incoming.try_send(r).is_err() {
                            warn!("incoming queue full; message dropped");
                        }
                    }
                    None => ClientStats::inc(&self.stats.dropped_bad),
                }
            }
            Err(_) => ClientStats::inc(&self.stats.dropped_bad),
        }
    }
}

fn parse_request(id: MsgId, msg: Vec<u8>) -> Option<Received> {
    let n = u16::from_be_bytes([*msg.first()?, *msg.get(1)?]) as usize;
    let end = 2 + n * SURB_SIZE;
    if msg.len() < end {
        return None;
    }
    let surbs = msg[2..end]
        .chunks(SURB_SIZE)
        .map(Surb::from_bytes)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some(Received {
        id,
        bytes: msg[end..].to_vec(),
        reply: Some(ReplyToken { id, surbs }),
    })
}

async fn poisson_sleep(rng: &mut StdRng, rate: f64) {
    let secs = if rate > 0.0 {
        exp_sample(rng, 1.0 / rate)
    } else {
        1.0
    };
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

async fn send_stream(e: Arc<Engine>) {
    let mut rng = StdRng::from_entropy();
    loop {
        poisson_sleep(&mut rng, e.document().params.lambda_per_s).await;
        if let Some((first, p, real)) = e.next_packet() {
            ClientStats::inc(if real {
                &e.stats.sent_real
            } else {
                &e.stats.sent_cover
            });
            e.emit(Frame::submit(first, p.as_bytes()));
        }
    }
}

async fn loop_stream(e: Arc<Engine>) {
    let mut rng = StdRng::from_entropy();
    loop {
        poisson_sleep(&mut rng, e.document().params.loop_per_s).await;
        if let Some((first, p)) = e.loop_packet() {
            ClientStats::inc(&e.stats.sent_loops);
            e.emit(Frame::submit(first, p.as_bytes()));
        }
    }
}

async fn poll_stream(e: Arc<Engine>) {
    let mut next = Instant::now();
    loop {
        let rate = e.document().params.poll_per_s.max(0.01);
        next += Duration::from_secs_f64(1.0 / rate);
        tokio::time::sleep_until(next).await;
        ClientStats::inc(&e.stats.polls);
        e.emit(Frame::new(FrameKind::Poll, &[]));
    }
}

async fn timer(e: Arc<Engine>) {
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        let mut st = e.state();
        let expired: Vec<[u8; 16]> = st
            .pending
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            let Some(w) = st.pending.remove(&k) else {
                continue;
            };
            for n in &w.nodes {
                *st.suspicion.entry(*n).or_insert(0) += 1;
            }
            let Some(m) = st.messages.get_mut(&w.msg) else {
                continue;
            };
            if m.status[w.idx] != Status::InFlight {
                continue;
            }
            m.attempts[w.idx] += 1;
            if m.attempts[w.idx] > e.cfg.max_retries {
                m.status[w.idx] = Status::Failed;
                e.evaluate(&mut st, &w.msg);
            } else {
                m.status[w.idx] = Status::Queued;
                ClientStats::inc(&e.stats.retransmits);
                st.queue.push_back(Job::Fragment {
                    msg: w.msg,
                    idx: w.idx,
                });
            }
        }
        st.cover
            .retain(|_, t| t.elapsed() < Duration::from_secs(600));
    }
}

async fn refresh(e: Arc<Engine>) {
    loop {
        tokio::time::sleep(e.cfg.refresh).await;
        match fetch(&e.cfg).await {
            Ok(d) if complete_topology(&d, Some(e.address.provider)) => {
                *e.doc.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(d);
            }
            Ok(_) => {
                ClientStats::inc(&e.stats.bad_documents);
                warn!("directory document lacks a complete topology; keeping the old one");
            }
            Err(err) => {
                if matches!(err, ClientError::Directory(DirectoryError::Io(_))) {
                    debug!("directory refresh failed: {err}");
                } else {
                    ClientStats::inc(&e.stats.bad_documents);
                    warn!("directory document refused: {err}");
                }
            }
        }
    }
}

async fn reader(e: Arc<Engine>, mut rx: LinkReceiver) {
    loop {
        match rx.recv().await {
            Ok(f) if f.kind == FrameKind::Mailbox => e.on_mailbox_frame(&f.body[..]),
            Ok(_) => ClientStats::inc(&e.stats.dropped_bad),
            Err(err) => {
                debug!("provider link ended: {err}");
                return;
            }
        }
    }
}

async fn link_task(e: Arc<Engine>, mut out: mpsc::Receiver<Frame>) {
    let mut backoff = Duration::from_millis(20);
    loop {
        let doc = e.document();
        let addr = e
            .cfg
            .provider_address_override
            .clone()
            .or_else(|| doc.node(&e.address.provider).map(|n| n.address.clone()));
        let key = doc.node(&e.address.provider).map(|n| n.link_key);
        let link = match (addr, key) {
            (Some(a), Some(k)) => match TcpStream::connect(&a).await {
                Ok(s) => connect(s, &e.link, &k, &e.cfg.link).await.ok(),
                Err(_) => None,
            },
            _ => None,
        };
        let Some((mut tx, rx)) = link else {
            while out.try_recv().is_ok() {}
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            continue;
        };
        backoff = Duration::from_millis(20);
        let rd = AbortOnDrop(tokio::spawn(reader(e.clone(), rx)));
        while let Some(f) = out.recv().await {
            if rd.0.is_finished() || tx.send(&f).await.is_err() {
                break;
            }
        }
        drop(rd);
        ClientStats::inc(&e.stats.reconnects);
    }
}

/// Aborts the task when dropped (so stopping the client stops its reader too).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
