//! The directory authority service and its client calls (JSON lines over TCP; documents are
//! signed, registrations are signed by node identity keys).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tracing::{debug, warn};

use super::consensus::{combine, merge_signatures, SignedVote};
use super::document::*;
use crate::packet::NodeId;
use crate::util::now_ms;

const MAX_REQUEST: u64 = 64 * 1024;
const MAX_RESPONSE: u64 = 8 * 1024 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Directory configuration.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The authority's Ed25519 secret key seed.
    pub authority_seed: [u8; 32],
    /// Traffic parameters to publish.
    pub params: TrafficParams,
    /// Epoch length in milliseconds.
    pub epoch_ms: u64,
    /// Extra validity after an epoch ends, in milliseconds.
    pub grace_ms: u64,
    /// Identity keys allowed to register (`None`: anyone may; fine for tests only).
    pub allowed: Option<Vec<[u8; 32]>>,
    /// The other authorities to agree with (empty: this authority signs documents alone).
    pub peers: Vec<PeerAuthority>,
    /// Votes a node needs to be listed and signatures a document carries: at most the number
    /// of authorities. [`majority`] of them is the usual choice.
    pub threshold: usize,
}

/// Another directory authority: where it answers and the key it signs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAuthority {
    /// Its service address.
    pub address: SocketAddr,
    /// Its Ed25519 authority key.
    pub key: [u8; 32],
}

/// A strict majority of `authorities`: the threshold at which two disjoint groups of
/// authorities can never both reach agreement.
pub fn majority(authorities: usize) -> usize {
    authorities / 2 + 1
}

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Get {
        epoch: Option<u64>,
    },
    Register(SignedRegistration),
    Publish(GatewayEntry),
    /// An authority asks for this authority's vote on `epoch`.
    Vote {
        epoch: u64,
    },
    /// An authority asks for this authority's consensus document on `epoch`, to collect its
    /// signature.
    Consensus {
        epoch: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum Response {
    Document(SignedDocument),
    Registered,
    Error(String),
    Vote(SignedVote),
}

/// Counters of the directory service.
#[derive(Debug, Default)]
pub struct DirectoryStats {
    /// Documents served.
    pub served: AtomicU64,
    /// Registrations accepted.
    pub registered: AtomicU64,
    /// Requests refused (malformed, bad signature, oversized, timed out).
    pub refused: AtomicU64,
    /// Peer votes that failed verification (wrong key, bad signature, wrong epoch).
    pub bad_votes: AtomicU64,
    /// Consensus documents computed (a new text for an epoch).
    pub consensus_rounds: AtomicU64,
}

struct State {
    cfg: DirectoryConfig,
    key: SigningKey,
    nodes: Mutex<HashMap<NodeId, Registration>>,
    /// Gateway descriptors and the epoch each was last published in.
    gateways: Mutex<HashMap<[u8; 32], (GatewayEntry, u64)>>,
    /// Agreed documents by epoch, with the signatures collected so far (peers only).
    consensus: Mutex<HashMap<u64, SignedDocument>>,
    stats: Arc<DirectoryStats>,
}

/// A bound directory service.
pub struct DirectoryServer {
    listener: TcpListener,
    state: Arc<State>,
}

impl DirectoryServer {
    /// Binds the listener.
    pub async fn bind(cfg: DirectoryConfig) -> std::io::Result<Self> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        cfg.params.check().map_err(|e| invalid(e.to_string()))?;
        if cfg.threshold == 0 || cfg.threshold > cfg.peers.len() + 1 {
            return Err(invalid(format!(
                "threshold {} must be between 1 and the number of authorities ({})",
                cfg.threshold,
                cfg.peers.len() + 1
            )));
        }
        let listener = TcpListener::bind(cfg.listen).await?;
        let key = SigningKey::from_bytes(&cfg.authority_seed);
        Ok(DirectoryServer {
            listener,
            state: Arc::new(State {
                cfg,
                key,
                nodes: Mutex::new(HashMap::new()),
                gateways: Mutex::new(HashMap::new()),
                consensus: Mutex::new(HashMap::new()),
                stats: Arc::default(),
            }),
        })
    }

    /// Sets the peer authorities and the threshold after binding (so that authorities on
    /// ephemeral ports can learn each other's addresses before they start).
    pub fn with_peers(
        mut self,
        peers: Vec<PeerAuthority>,
        threshold: usize,
    ) -> std::io::Result<Self> {
        if threshold == 0 || threshold > peers.len() + 1 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("threshold {threshold} out of 1..={}", peers.len() + 1),
            ));
        }
        let st = Arc::get_mut(&mut self.state)
            .ok_or_else(|| std::io::Error::other("the directory is already running"))?;
        st.cfg.peers = peers;
        st.cfg.threshold = threshold;
        Ok(self)
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The authority's public key.
    pub fn authority(&self) -> [u8; 32] {
        self.state.key.verifying_key().to_bytes()
    }

    /// Counters.
    pub fn stats(&self) -> Arc<DirectoryStats> {
        self.state.stats.clone()
    }

    /// Live gauges (epoch, signatures, listed nodes) for the metrics endpoint.
    pub fn probe(&self) -> DirectoryProbe {
        DirectoryProbe(self.state.clone())
    }

    /// Serves until the task is dropped.
    pub async fn run(self) {
        tracing::info!(
            authority = %data_encoding::HEXLOWER.encode(&self.authority()),
            addr = ?self.listener.local_addr().ok(),
            "directory starting"
        );
        if !self.state.cfg.peers.is_empty() {
            tokio::spawn(consensus_loop(self.state.clone()));
        }
        loop {
            let Ok((sock, _)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let st = self.state.clone();
            tokio::spawn(async move {
                if let Err(e) = serve(&st, sock).await {
                    st.stats.refused.fetch_add(1, Ordering::Relaxed);
                    debug!("directory request refused: {e}");
                }
            });
        }
    }
}

/// Reads a running directory authority's state at any time.
#[derive(Clone)]
pub struct DirectoryProbe(Arc<State>);

/// What a directory authority serves at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectoryGauges {
    /// The current epoch.
    pub epoch: u64,
    /// Authority signatures on the current epoch's document (0 while there is no consensus
    /// yet; 1 for an authority that signs alone).
    pub signatures: usize,
    /// Signatures a document needs.
    pub threshold: usize,
    /// Mix nodes and providers registered.
    pub nodes: usize,
    /// Gateway descriptors held.
    pub gateways: usize,
}

impl DirectoryProbe {
    /// The current gauges.
    pub fn gauges(&self) -> DirectoryGauges {
        let st = &self.0;
        let epoch = st.current_epoch();
        let signatures = if st.cfg.peers.is_empty() {
            1
        } else {
            st.consensus
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&epoch)
                .map_or(0, |d| d.signatures.len())
        };
        DirectoryGauges {
            epoch,
            signatures,
            threshold: st.cfg.threshold,
            nodes: st.nodes.lock().unwrap_or_else(|p| p.into_inner()).len(),
            gateways: st.gateways.lock().unwrap_or_else(|p| p.into_inner()).len(),
        }
    }
}

/// Runs a directory authority (the `mixgate directory` entry point).
pub async fn run_directory(cfg: DirectoryConfig) -> std::io::Result<()> {
    DirectoryServer::bind(cfg).await?.run().await;
    Ok(())
}

/// Gateway descriptors stay listed this many epochs after they were last published.
const GATEWAY_TTL_EPOCHS: u64 = 24;

impl State {
    fn gateways(&self, epoch: u64) -> Vec<GatewayEntry> {
        let mut g = self.gateways.lock().unwrap_or_else(|p| p.into_inner());
        g.retain(|_, (_, seen)| *seen + GATEWAY_TTL_EPOCHS >= epoch);
        let mut v: Vec<GatewayEntry> = g.values().map(|(e, _)| e.clone()).collect();
        v.sort_by_key(|e| e.identity);
        v
    }

    /// What this authority alone would list for `epoch`.
    fn view(&self, epoch: u64) -> Document {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<NodeDescriptor> = nodes
            .values()
            .filter_map(|r| {
                let k = r.mix_keys.iter().find(|k| k.epoch == epoch)?;
                Some(NodeDescriptor {
                    id: node_id(&r.identity),
                    identity: r.identity,
                    role: r.role,
                    address: r.address.clone(),
                    link_key: r.link_key,
                    mix_key: k.key,
                })
            })
            .collect();
        drop(nodes);
        list.sort_by_key(|n| n.id);
        let start = epoch * self.cfg.epoch_ms;
        Document {
            version: DOCUMENT_VERSION,
            epoch,
            valid_from_ms: start,
            valid_until_ms: start + self.cfg.epoch_ms + self.cfg.grace_ms,
            params: self.cfg.params.clone(),
            nodes: list,
            gateways: self.gateways(epoch),
        }
    }

    /// The document served for `epoch`: signed alone, or the consensus when there are peers.
    fn document(&self, epoch: u64) -> Result<SignedDocument, DirectoryError> {
        if self.cfg.peers.is_empty() {
            return SignedDocument::sign(&self.view(epoch), &self.key);
        }
        self.consensus
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&epoch)
            .cloned()
            .ok_or_else(|| DirectoryError::Io(format!("no consensus yet for epoch {epoch}")))
    }

    /// This authority's signed vote on `epoch`.
    fn vote(&self, epoch: u64) -> Result<SignedVote, DirectoryError> {
        SignedVote::sign(&self.view(epoch), &self.key)
    }

    /// Every authority key this one trusts: its own and its peers'.
    fn trusted(&self) -> Vec<[u8; 32]> {
        let mut t = vec![self.key.verifying_key().to_bytes()];
        t.extend(self.cfg.peers.iter().map(|p| p.key));
        t
    }

    fn current_epoch(&self) -> u64 {
        now_ms() / self.cfg.epoch_ms.max(1)
    }

    /// Hands a newly accepted registration or entry to every peer (they deduplicate, so this
    /// ends after one round).
    fn forward(&self, req: Request) {
        if self.cfg.peers.is_empty() {
            return;
        }
        let req = Arc::new(req);
        for p in &self.cfg.peers {
            let (addr, req) = (p.address, Arc::clone(&req));
            tokio::spawn(async move {
                if let Err(e) = call(addr, &req).await {
                    debug!(peer = %addr, "forwarding to a peer authority failed: {e}");
                }
            });
        }
    }
}

/// How often an authority with peers re-runs its consensus round.
fn round_interval(cfg: &DirectoryConfig) -> Duration {
    Duration::from_millis((cfg.epoch_ms / 60).clamp(200, 10_000))
}

/// One consensus round for `epoch`: collect votes, compute the consensus, collect signatures.
async fn consensus_round(st: &State, epoch: u64) {
    let mut votes = Vec::with_capacity(st.cfg.peers.len() + 1);
    match st
        .vote(epoch)
        .and_then(|v| v.verify(&v.authority.clone(), epoch))
    {
        Ok(v) => votes.push(v),
        Err(e) => {
            warn!("own vote for epoch {epoch} failed: {e}");
            return;
        }
    }
    for p in &st.cfg.peers {
        match call(p.address, &Request::Vote { epoch }).await {
            Ok(Response::Vote(sv)) => match sv.verify(&p.key, epoch) {
                Ok(v) => votes.push(v),
                Err(e) => {
                    st.stats.bad_votes.fetch_add(1, Ordering::Relaxed);
                    warn!(peer = %p.address, "peer vote refused: {e}");
                }
            },
            Ok(_) => debug!(peer = %p.address, "peer has no vote for epoch {epoch}"),
            Err(e) => debug!(peer = %p.address, "peer vote unavailable: {e}"),
        }
    }
    let Some(doc) = combine(&votes, st.cfg.threshold) else {
        debug!(
            "epoch {epoch}: {} votes, no consensus at threshold {}",
            votes.len(),
            st.cfg.threshold
        );
        return;
    };
    let Ok(mine) = SignedDocument::sign(&doc, &st.key) else {
        return;
    };
    {
        let mut map = st.consensus.lock().unwrap_or_else(|p| p.into_inner());
        let same = map.get(&epoch).is_some_and(|d| d.document == mine.document);
        if !same {
            st.stats.consensus_rounds.fetch_add(1, Ordering::Relaxed);
            map.insert(epoch, mine);
        }
    }
    let trusted = st.trusted();
    for p in &st.cfg.peers {
        let Ok(Response::Document(theirs)) = call(p.address, &Request::Consensus { epoch }).await
        else {
            continue;
        };
        let mut map = st.consensus.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = map.get_mut(&epoch) {
            merge_signatures(d, &theirs, &trusted);
        }
    }
}

/// Keeps the consensus for the current and the next epoch up to date.
async fn consensus_loop(st: Arc<State>) {
    let every = round_interval(&st.cfg);
    loop {
        let now = st.current_epoch();
        for epoch in [now, now + 1] {
            consensus_round(&st, epoch).await;
        }
        st.consensus
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|e, _| *e + 1 >= now);
        tokio::time::sleep(every).await;
    }
}

async fn serve(st: &State, sock: TcpStream) -> Result<(), DirectoryError> {
    let io = |e: std::io::Error| DirectoryError::Io(e.to_string());
    let (r, mut w) = sock.into_split();
    let mut line = String::new();
    let mut rd = BufReader::new(r.take(MAX_REQUEST));
    timeout(IO_TIMEOUT, rd.read_line(&mut line))
        .await
        .map_err(|_| DirectoryError::Io("timeout".into()))?
        .map_err(io)?;
    let resp = match serde_json::from_str::<Request>(&line) {
        Err(e) => Response::Error(format!("malformed request: {e}")),
        Ok(Request::Get { epoch }) => {
            let now = now_ms() / st.cfg.epoch_ms;
            let e = epoch.unwrap_or(now);
            if e + 1 < now || e > now + 1 {
                Response::Error("epoch out of range".into())
            } else {
                st.stats.served.fetch_add(1, Ordering::Relaxed);
                match st.document(e) {
                    Ok(d) => Response::Document(d),
                    Err(e) => Response::Error(e.to_string()),
                }
            }
        }
        Ok(Request::Publish(entry)) => match entry.verify() {
            Ok(()) => {
                st.stats.registered.fetch_add(1, Ordering::Relaxed);
                let epoch = st.current_epoch();
                let previous = st
                    .gateways
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(entry.identity, (entry.clone(), epoch));
                // Forward what is new, and refreshes once per epoch (so peers keep it listed
                // as long as this authority does).
                if previous.is_none_or(|(e, seen)| e != entry || seen < epoch) {
                    st.forward(Request::Publish(entry));
                }
                Response::Registered
            }
            Err(e) => Response::Error(e.to_string()),
        },
        Ok(Request::Register(sr)) => match sr.verify().and_then(|reg| match &st.cfg.allowed {
            Some(list) if !list.contains(&reg.identity) => {
                Err(DirectoryError::BadRegistration("identity not allowed"))
            }
            _ => Ok(reg),
        }) {
            Ok(reg) => {
                st.stats.registered.fetch_add(1, Ordering::Relaxed);
                let id = node_id(&reg.identity);
                let previous = st
                    .nodes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, reg.clone());
                if previous.as_ref() != Some(&reg) {
                    st.forward(Request::Register(sr));
                }
                Response::Registered
            }
            Err(e) => {
                warn!("registration refused: {e}");
                Response::Error(e.to_string())
            }
        },
        Ok(Request::Vote { epoch }) => {
            let now = st.current_epoch();
            if epoch + 1 < now || epoch > now + 1 {
                Response::Error("epoch out of range".into())
            } else {
                match st.vote(epoch) {
                    Ok(v) => Response::Vote(v),
                    Err(e) => Response::Error(e.to_string()),
                }
            }
        }
        Ok(Request::Consensus { epoch }) => {
            let doc = st
                .consensus
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&epoch)
                .cloned();
            match doc {
                Some(d) => Response::Document(d),
                None => Response::Error(format!("no consensus yet for epoch {epoch}")),
            }
        }
    };
    let is_err = matches!(resp, Response::Error(_));
    let mut out =
        serde_json::to_vec(&resp).map_err(|e| DirectoryError::Malformed(e.to_string()))?;
    out.push(b'\n');
    timeout(IO_TIMEOUT, w.write_all(&out))
        .await
        .map_err(|_| DirectoryError::Io("timeout".into()))?
        .map_err(io)?;
    if is_err {
        return Err(DirectoryError::Malformed("request refused".into()));
    }
    Ok(())
}

async fn call(addr: SocketAddr, req: &Request) -> Result<Response, DirectoryError> {
    let io = |e: std::io::Error| DirectoryError::Io(e.to_string());
    let fut = async {
        let mut s = TcpStream::connect(addr).await.map_err(io)?;
        let mut b =
            serde_json::to_vec(req).map_err(|e| DirectoryError::Malformed(e.to_string()))?;
        b.push(b'\n');
        s.write_all(&b).await.map_err(io)?;
        let mut line = String::new();
        BufReader::new(s.take(MAX_RESPONSE))
            .read_line(&mut line)
            .await
            .map_err(io)?;
        serde_json::from_str::<Response>(&line)
            .map_err(|e| DirectoryError::Malformed(e.to_string()))
    };
    timeout(IO_TIMEOUT, fut)
        .await
        .map_err(|_| DirectoryError::Io("timeout".into()))?
}

/// Fetches the signed document for `epoch` (current if `None`); verify it before use.
pub async fn fetch_document(
    addr: SocketAddr,
    epoch: Option<u64>,
) -> Result<SignedDocument, DirectoryError> {
    match call(addr, &Request::Get { epoch }).await? {
        Response::Document(d) => Ok(d),
        Response::Error(e) => Err(DirectoryError::Io(e)),
        Response::Registered | Response::Vote(_) => {
            Err(DirectoryError::Malformed("unexpected answer".into()))
        }
    }
}

/// Fetches the current document from the first of `addrs` that serves one which verifies
/// (`threshold` of `authorities`, valid at `now_ms`). If none does, the error is the first
/// verification failure seen (a forged or under-signed document), else the last I/O error.
pub async fn fetch_verified(
    addrs: &[SocketAddr],
    authorities: &[[u8; 32]],
    threshold: usize,
    now_ms: u64,
) -> Result<Document, DirectoryError> {
    let mut refused = None;
    let mut last = DirectoryError::Io("no directory address".into());
    for addr in addrs {
        match fetch_document(*addr, None).await {
            Ok(sd) => match sd.verify(authorities, threshold, now_ms) {
                Ok(d) => return Ok(d),
                Err(e) => {
                    debug!(directory = %addr, "document refused: {e}");
                    refused.get_or_insert(e);
                }
            },
            Err(e) => {
                debug!(directory = %addr, "directory fetch failed: {e}");
                last = e;
            }
        }
    }
    Err(refused.unwrap_or(last))
}

/// Publishes (or refreshes) a gateway's signed descriptor; republish at least once per
/// 24 epochs (descriptors not republished for that long are dropped).
pub async fn publish_gateway(addr: SocketAddr, entry: &GatewayEntry) -> Result<(), DirectoryError> {
    match call(addr, &Request::Publish(entry.clone())).await? {
        Response::Registered => Ok(()),
        Response::Error(_) => Err(DirectoryError::BadRegistration("refused")),
        Response::Document(_) | Response::Vote(_) => {
            Err(DirectoryError::Malformed("unexpected answer".into()))
        }
    }
}

/// Sends a signed registration.
pub async fn register(addr: SocketAddr, reg: &SignedRegistration) -> Result<(), DirectoryError> {
    match call(addr, &Request::Register(reg.clone())).await? {
        Response::Registered => Ok(()),
        Response::Error(e) => Err(DirectoryError::BadRegistration(
            if e.contains("signature") {
                "signature"
            } else {
                "refused"
            },
        )),
        Response::Document(_) | Response::Vote(_) => {
            Err(DirectoryError::Malformed("unexpected answer".into()))
        }
    }
}
