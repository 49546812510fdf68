//! Outbound links to other nodes: one task and bounded queue per peer, reconnecting with
//! backoff. A dead peer only fills its own queue; its packets are dropped and counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::debug;

use super::stats::NodeStats;
use crate::directory::Document;
use crate::link::{connect, Frame, FrameKind, LinkConfig, LinkKeypair};
use crate::packet::{NodeId, Packet};

const QUEUE: usize = 4096;
/// Most queued packets written to a peer in one go.
const WRITE_BATCH: usize = 64;

/// Outbound peer links of one node.
pub struct Peers {
    local: LinkKeypair,
    cfg: LinkConfig,
    doc: watch::Receiver<Option<Arc<Document>>>,
    stats: Arc<NodeStats>,
    queues: Mutex<HashMap<NodeId, mpsc::Sender<Packet>>>,
    tasks: Mutex<JoinSet<()>>,
}

impl Peers {
    /// Creates the (empty) set of peer links.
    pub fn new(
        local: LinkKeypair,
        cfg: LinkConfig,
        doc: watch::Receiver<Option<Arc<Document>>>,
        stats: Arc<NodeStats>,
    ) -> Self {
        Peers {
            local,
            cfg,
            doc,
            stats,
            queues: Mutex::new(HashMap::new()),
            tasks: Mutex::new(JoinSet::new()),
        }
    }

    /// Open outbound links, and packets waiting in their queues.
    pub fn outbound(&self) -> (usize, usize) {
        let q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        q.values()
            .filter(|t| !t.is_closed())
            .fold((0, 0), |(links, queued), t| {
                (links + 1, queued + (t.max_capacity() - t.capacity()))
            })
    }

    /// Queues a packet for `next`; drops and counts it if that peer's queue is full.
    pub fn send(&self, next: NodeId, p: Packet) {
        let tx = {
            let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(tx) = q.get(&next).filter(|t| !t.is_closed()) {
                tx.clone()
            } else {
                let (tx, rx) = mpsc::channel(QUEUE);
                q.insert(next, tx.clone());
                let fut = peer_task(
                    next,
                    rx,
                    self.local.clone(),
                    self.cfg.clone(),
                    self.doc.clone(),
                    self.stats.clone(),
                );
                self.tasks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .spawn(fut);
                tx
            }
        };
        if tx.try_send(p).is_err() {
            NodeStats::inc(&self.stats.dropped_overload);
        } else {
            NodeStats::inc(&self.stats.relayed);
        }
    }
}

async fn peer_task(
    id: NodeId,
    mut rx: mpsc::Receiver<Packet>,
    local: LinkKeypair,
    cfg: LinkConfig,
    doc: watch::Receiver<Option<Arc<Document>>>,
    stats: Arc<NodeStats>,
) {
    let mut backoff = Duration::from_millis(20);
    loop {
        let node = doc.borrow().as_ref().and_then(|d| d.node(&id).cloned());
        let link = match node {
            None => None,
            Some(n) => match TcpStream::connect(&n.address).await {
                Ok(s) => {
                    let mut cfg = cfg.clone();
                    cfg.pq = doc.borrow().as_ref().is_some_and(|d| d.params.pq_links);
                    connect(s, &local, &n.link_key, &cfg).await.ok()
                }
                Err(_) => None,
            },
        };
        let Some((mut tx, _rx)) = link else {
            // A peer that left the directory: give up (a later packet for it starts anew).
            if node_gone(&doc, &id) {
                while rx.try_recv().is_ok() {
                    NodeStats::inc(&stats.dropped_unknown_hop);
                }
                return;
            }
            debug!("peer unreachable, backing off {backoff:?}");
            // Drop what piled up beyond a short burst so a dead peer cannot hold memory.
            while rx.len() > 64 {
                if rx.try_recv().is_ok() {
                    NodeStats::inc(&stats.dropped_overload);
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        };
        backoff = Duration::from_millis(20);
        loop {
            let Some(p) = rx.recv().await else { return };
            // Whatever else is already queued goes out in the same write.
            let mut r = tx.feed(&Frame::new(FrameKind::Packet, p.as_bytes())).await;
            for _ in 1..WRITE_BATCH {
                let Ok(p) = rx.try_recv() else { break };
                if r.is_err() {
                    NodeStats::inc(&stats.dropped_overload);
                    continue;
                }
                r = tx.feed(&Frame::new(FrameKind::Packet, p.as_bytes())).await;
            }
            if r.is_ok() {
                r = tx.flush().await;
            }
            if r.is_err() {
                NodeStats::inc(&stats.link_errors);
                NodeStats::inc(&stats.dropped_overload);
                break;
            }
        }
    }
}

fn node_gone(doc: &watch::Receiver<Option<Arc<Document>>>, id: &NodeId) -> bool {
    doc.borrow().as_ref().is_some_and(|d| d.node(id).is_none())
}
