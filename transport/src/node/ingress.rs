//! The node's ingress: one bounded queue per source (a peer's static link key, or the node
//! itself), served round-robin. A source that floods fills only its own queue, and every
//! other source keeps its share of the worker. Link readers use [`Ingress::push_wait`]: when
//! their peer's queue is full they stop reading until it drains, so a flood is held back by
//! TCP at the flooder's socket instead of being decrypted and dropped at the node's expense.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::packet::PACKET_SIZE;

/// Who a packet came from: a peer's static link key (all its links share one queue), or
/// `[0; 32]` for the node's own packets (loop cover returning to itself).
pub type Source = [u8; 32];

/// One queued packet.
pub type Item = Box<[u8; PACKET_SIZE]>;

/// Fair, bounded ingress queues.
pub struct Ingress {
    per_source: usize,
    total: usize,
    state: Mutex<State>,
    ready: Notify,
}

#[derive(Default)]
struct State {
    queues: HashMap<Source, VecDeque<Item>>,
    /// Sources with queued packets, in service order (each appears once).
    ring: VecDeque<Source>,
    len: usize,
    /// Wake-ups for readers waiting for room in their source's queue (only for sources with
    /// queued packets, so bounded like the queues).
    room: HashMap<Source, Arc<Notify>>,
}

/// Why a packet was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This source already has `per_source` packets waiting.
    SourceFull,
    /// The node holds `total` packets.
    NodeFull,
}

impl Ingress {
    /// Queues of at most `per_source` packets each and `total` in all.
    pub fn new(per_source: usize, total: usize) -> Self {
        Ingress {
            per_source: per_source.max(1),
            total: total.max(1),
            state: Mutex::new(State::default()),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` from `source`, or refuses it when that source or the node is full.
    pub fn push(&self, source: Source, item: Item) -> Result<(), Refused> {
        self.try_push(source, item).map_err(|(r, _)| r)
    }

    /// As [`Ingress::push`], giving the item back when refused.
    fn try_push(&self, source: Source, item: Item) -> Result<(), (Refused, Item)> {
        let mut st = self.lock();
        if st.len >= self.total {
            return Err((Refused::NodeFull, item));
        }
        let q = st.queues.entry(source).or_default();
        if q.len() >= self.per_source {
            return Err((Refused::SourceFull, item));
        }
        let was_empty = q.is_empty();
        q.push_back(item);
        st.len += 1;
        if was_empty {
            st.ring.push_back(source);
        }
        drop(st);
        self.ready.notify_one();
        Ok(())
    }

    /// Queues `item` from `source`, waiting while that source's queue is full; refuses it
    /// only when the whole node is full.
    pub async fn push_wait(&self, source: Source, item: Item) -> Result<(), Refused> {
        let mut item = item;
        loop {
            // Register for a wake-up before trying, so a pop in between is not missed.
            let room = self.lock().room.entry(source).or_default().clone();
            let notified = room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_push(source, item) {
                Ok(()) => return Ok(()),
                Err((Refused::NodeFull, _)) => {
                    let mut st = self.lock();
                    if !st.queues.contains_key(&source) {
                        st.room.remove(&source);
                    }
                    return Err(Refused::NodeFull);
                }
                Err((Refused::SourceFull, back)) => item = back,
            }
            notified.await;
        }
    }

    /// Takes up to `max` packets, one per source in turn, into `out`; waits while empty.
    pub async fn pop_batch(&self, max: usize, out: &mut Vec<Item>) {
        loop {
            // Register interest before looking, so a push in between is not missed.
            let notified = self.ready.notified();
            {
                let mut st = self.lock();
                while out.len() < max {
                    let Some(src) = st.ring.pop_front() else {
                        break;
                    };
                    let (item, more) = match st.queues.get_mut(&src) {
                        Some(q) => (q.pop_front(), !q.is_empty()),
                        None => (None, false),
                    };
                    if let Some(i) = item {
                        st.len -= 1;
                        out.push(i);
                        if let Some(r) = st.room.get(&src) {
                            r.notify_one();
                        }
                    }
                    if more {
                        st.ring.push_back(src);
                    } else {
                        st.queues.remove(&src);
                        // Nobody needs to wait for room in an empty queue: wake any waiter
                        // and forget the entry, so the map holds only busy peers.
                        if let Some(r) = st.room.remove(&src) {
                            r.notify_waiters();
                        }
                    }
                }
            }
            if !out.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Packets waiting in all queues.
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn item(b: u8) -> Item {
        Box::new([b; PACKET_SIZE])
    }

    #[tokio::test]
    async fn a_flooding_source_gets_its_share_and_no_more() {
        let q = Ingress::new(4, 100);
        let (flood, quiet) = ([1u8; 32], [2u8; 32]);
        let refused = (0..10).filter(|_| q.push(flood, item(1)).is_err()).count();
        assert_eq!(refused, 6, "only 4 of the flood's packets are queued");
        q.push(quiet, item(2)).unwrap();
        let mut out = vec![];
        q.pop_batch(2, &mut out).await;
        // Round-robin: the quiet source is served right after the flood's first packet.
        assert_eq!([out[0][0], out[1][0]], [1, 2]);
        out.clear();
        q.pop_batch(10, &mut out).await;
        assert_eq!(out.len(), 3);
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn the_node_total_is_bounded() {
        let q = Ingress::new(10, 5);
        for i in 0..5u8 {
            q.push([i; 32], item(i)).unwrap();
        }
        assert_eq!(q.push([9; 32], item(9)), Err(Refused::NodeFull));
        assert_eq!(q.len(), 5);
    }

    #[tokio::test]
    async fn a_full_source_waits_for_room_instead_of_dropping() {
        let q = std::sync::Arc::new(Ingress::new(2, 100));
        let src = [5u8; 32];
        q.push_wait(src, item(1)).await.unwrap();
        q.push_wait(src, item(2)).await.unwrap();
        let q2 = q.clone();
        let blocked = tokio::spawn(async move { q2.push_wait(src, item(3)).await });
        tokio::task::yield_now().await;
        assert!(!blocked.is_finished(), "the third push waits");
        assert_eq!(q.len(), 2);
        let mut out = vec![];
        q.pop_batch(1, &mut out).await;
        blocked.await.unwrap().unwrap();
        out.clear();
        q.pop_batch(10, &mut out).await;
        assert_eq!(out.iter().map(|i| i[0]).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[tokio::test]
    async fn pop_waits_for_a_push() {
        let q = std::sync::Arc::new(Ingress::new(4, 100));
        let q2 = q.clone();
        let h = tokio::spawn(async move {
            let mut out = vec![];
            q2.pop_batch(8, &mut out).await;
            out.len()
        });
        tokio::task::yield_now().await;
        q.push([3; 32], item(3)).unwrap();
        assert_eq!(h.await.unwrap_or(0), 1);
    }
}
