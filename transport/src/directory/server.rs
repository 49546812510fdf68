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
}

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Get { epoch: Option<u64> },
    Register(SignedRegistration),
    Publish(GatewayEntry),
}

#[derive(Debug, Serialize, Deserialize)]
enum Response {
    Document(SignedDocument),
    Registered,
    Error(String),
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
}

struct State {
    cfg: DirectoryConfig,
    key: SigningKey,
    nodes: Mutex<HashMap<NodeId, Registration>>,
    /// Gateway descriptors and the epoch each was last published in.
    gateways: Mutex<HashMap<[u8; 32], (GatewayEntry, u64)>>,
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
        cfg.params
            .check()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let listener = TcpListener::bind(cfg.listen).await?;
        let key = SigningKey::from_bytes(&cfg.authority_seed);
        Ok(DirectoryServer {
            listener,
            state: Arc::new(State {
                cfg,
                key,
                nodes: Mutex::new(HashMap::new()),
                gateways: Mutex::new(HashMap::new()),
                stats: Arc::default(),
            }),
        })
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

    /// Serves until the task is dropped.
    pub async fn run(self) {
        tracing::info!(
            authority = %data_encoding::HEXLOWER.encode(&self.authority()),
            addr = ?self.listener.local_addr().ok(),
            "directory starting"
        );
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

    fn document(&self, epoch: u64) -> Result<SignedDocument, DirectoryError> {
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
        list.sort_by_key(|n| n.id);
        let start = epoch * self.cfg.epoch_ms;
        let doc = Document {
            version: DOCUMENT_VERSION,
            epoch,
            valid_from_ms: start,
            valid_until_ms: start + self.cfg.epoch_ms + self.cfg.grace_ms,
            params: self.cfg.params.clone(),
            nodes: list,
            gateways: self.gateways(epoch),
        };
        SignedDocument::sign(&doc, &self.key)
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
                let epoch = now_ms() / st.cfg.epoch_ms.max(1);
                st.gateways
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(entry.identity, (entry, epoch));
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
                st.nodes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, reg);
                Response::Registered
            }
            Err(e) => {
                warn!("registration refused: {e}");
                Response::Error(e.to_string())
            }
        },
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
        Response::Registered => Err(DirectoryError::Malformed("unexpected answer".into())),
    }
}

/// Publishes (or refreshes) a gateway's signed descriptor; republish at least once per
/// 24 epochs (descriptors not republished for that long are dropped).
pub async fn publish_gateway(addr: SocketAddr, entry: &GatewayEntry) -> Result<(), DirectoryError> {
    match call(addr, &Request::Publish(entry.clone())).await? {
        Response::Registered => Ok(()),
        Response::Error(_) => Err(DirectoryError::BadRegistration("refused")),
        Response::Document(_) => Err(DirectoryError::Malformed("unexpected answer".into())),
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
        Response::Document(_) => Err(DirectoryError::Malformed("unexpected answer".into())),
    }
}
