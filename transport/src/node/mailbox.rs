//! Provider mailboxes: packets stored per gateway with a TTL and a quota, in memory.
//!
//! Polling hands items out under a lease: they stay "in flight" until the gateway acknowledges
//! them in a later poll. If the link drops or the lease runs out they go back to the front of
//! the queue, so a lost poll answer is delivered again (the gateway drops duplicates).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::packet::MailboxId;

/// Mailbox limits.
#[derive(Debug, Clone)]
pub struct MailboxConfig {
    /// How long a packet waits for its owner.
    pub ttl: Duration,
    /// Most packets held for one mailbox.
    pub quota: usize,
    /// Most packets held in total.
    pub total: usize,
    /// How long a handed-out packet waits for its acknowledgement before it is offered again.
    pub lease: Duration,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            ttl: Duration::from_secs(24 * 3600),
            quota: 10_000,
            total: 1_000_000,
            lease: Duration::from_secs(30),
        }
    }
}

/// Why a packet was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The mailbox or the provider is full.
    #[error("mailbox quota exceeded")]
    Quota,
}

#[derive(Debug)]
struct Item {
    id: u64,
    stored: Instant,
    bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct Inner {
    boxes: HashMap<MailboxId, VecDeque<Item>>,
    in_flight: HashMap<MailboxId, Vec<(Instant, Item)>>,
    total: usize,
    next_id: u64,
    /// A copy of every stored item, when recording (tests: what a provider holds).
    recorded: Option<Vec<Vec<u8>>>,
}

/// The mailboxes of one provider. It can outlive a provider task, which is how a restarted
/// provider keeps what it acknowledged (a durable store can replace it later).
#[derive(Debug)]
pub struct Mailboxes {
    cfg: MailboxConfig,
    inner: Mutex<Inner>,
}

impl Mailboxes {
    /// Empty mailboxes with the given limits.
    pub fn new(cfg: MailboxConfig) -> Self {
        Mailboxes {
            cfg,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores one item; fails when a quota is reached.
    pub fn store(&self, mb: MailboxId, bytes: Vec<u8>) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.total >= self.cfg.total {
            return Err(StoreError::Quota);
        }
        let held = g.in_flight.get(&mb).map_or(0, Vec::len);
        g.next_id += 1;
        let id = g.next_id;
        let q = g.boxes.entry(mb).or_default();
        if q.len() + held >= self.cfg.quota {
            return Err(StoreError::Quota);
        }
        if let Some(copies) = g.recorded.as_mut() {
            copies.push(bytes.clone());
        }
        let q = g.boxes.entry(mb).or_default();
        q.push_back(Item {
            id,
            stored: Instant::now(),
            bytes,
        });
        g.total += 1;
        Ok(())
    }

    /// Starts keeping a copy of every item stored from now on (for tests that look at what a
    /// provider holds, as a seized or curious provider would).
    pub fn record(&self) {
        self.lock().recorded.get_or_insert_with(Vec::new);
    }

    /// The copies kept since [`Mailboxes::record`].
    pub fn recorded(&self) -> Vec<Vec<u8>> {
        self.lock().recorded.clone().unwrap_or_default()
    }

    /// Hands out up to `n` unexpired items as `(id, bytes)` under a lease; returns them and how
    /// many expired ones were dropped. Items whose lease ran out are offered again first.
    pub fn take(&self, mb: &MailboxId, n: usize) -> (Vec<(u64, Vec<u8>)>, usize) {
        let (ttl, lease) = (self.cfg.ttl, self.cfg.lease);
        let mut g = self.lock();
        let Inner {
            boxes,
            in_flight,
            total,
            ..
        } = &mut *g;
        if let Some(f) = in_flight.get_mut(mb) {
            let (late, keep): (Vec<_>, Vec<_>) =
                f.drain(..).partition(|(t, _)| t.elapsed() > lease);
            *f = keep;
            let q = boxes.entry(*mb).or_default();
            for (_, item) in late.into_iter().rev() {
                q.push_front(item);
            }
        }
        let mut out = vec![];
        let mut expired = 0;
        if let Some(q) = boxes.get_mut(mb) {
            let f = in_flight.entry(*mb).or_default();
            while out.len() < n {
                let Some(item) = q.pop_front() else { break };
                if item.stored.elapsed() > ttl {
                    expired += 1;
                } else {
                    out.push((item.id, item.bytes.clone()));
                    f.push((Instant::now(), item));
                }
            }
            if q.is_empty() {
                boxes.remove(mb);
            }
        }
        *total -= expired;
        (out, expired)
    }

    /// The gateway confirmed these items: forget them.
    pub fn ack(&self, mb: &MailboxId, ids: &[u64]) {
        let mut g = self.lock();
        let mut removed = 0;
        if let Some(f) = g.in_flight.get_mut(mb) {
            let before = f.len();
            f.retain(|(_, it)| !ids.contains(&it.id));
            removed = before - f.len();
            if f.is_empty() {
                g.in_flight.remove(mb);
            }
        }
        g.total -= removed;
    }

    /// Puts every unacknowledged item of `mb` back at the front of its queue (link lost).
    pub fn requeue(&self, mb: &MailboxId) {
        let mut g = self.lock();
        let Some(f) = g.in_flight.remove(mb) else {
            return;
        };
        let q = g.boxes.entry(*mb).or_default();
        for (_, item) in f.into_iter().rev() {
            q.push_front(item);
        }
    }

    /// Puts every unacknowledged item back (provider start after a restart).
    pub fn requeue_all(&self) {
        let keys: Vec<MailboxId> = self.lock().in_flight.keys().copied().collect();
        for k in keys {
            self.requeue(&k);
        }
    }

    /// Drops every expired item; returns how many.
    pub fn purge(&self) -> usize {
        let ttl = self.cfg.ttl;
        let mut g = self.lock();
        let mut n = 0;
        for q in g.boxes.values_mut() {
            let before = q.len();
            q.retain(|it| it.stored.elapsed() <= ttl);
            n += before - q.len();
        }
        g.boxes.retain(|_, q| !q.is_empty());
        g.total -= n;
        n
    }

    /// Items held for one mailbox (queued and in flight).
    pub fn len(&self, mb: &MailboxId) -> usize {
        let g = self.lock();
        g.boxes.get(mb).map_or(0, |q| q.len()) + g.in_flight.get(mb).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg() -> MailboxConfig {
        MailboxConfig {
            ttl: Duration::from_millis(50),
            quota: 3,
            total: 4,
            lease: Duration::from_secs(60),
        }
    }

    #[test]
    fn quota_ttl_take_ack() {
        let m = Mailboxes::new(cfg());
        for i in 0..3 {
            m.store([1; 16], vec![i]).unwrap();
        }
        assert_eq!(m.store([1; 16], vec![9]), Err(StoreError::Quota));
        m.store([2; 16], vec![7]).unwrap();
        assert_eq!(m.store([3; 16], vec![7]), Err(StoreError::Quota));
        let (got, _) = m.take(&[1; 16], 2);
        assert_eq!(
            got.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
            vec![vec![0], vec![1]]
        );
        // In flight items still count until acknowledged.
        assert_eq!(m.len(&[1; 16]), 3);
        m.ack(&[1; 16], &[got[0].0, got[1].0]);
        assert_eq!(m.len(&[1; 16]), 1);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(m.purge(), 2);
        assert_eq!(m.take(&[1; 16], 5).0.len(), 0);
        assert_eq!(m.len(&[2; 16]), 0);
    }

    #[test]
    fn unacknowledged_items_come_back_in_order() {
        let m = Mailboxes::new(MailboxConfig {
            ttl: Duration::from_secs(60),
            ..cfg()
        });
        for i in 0..3 {
            m.store([1; 16], vec![i]).unwrap();
        }
        let (a, _) = m.take(&[1; 16], 2);
        m.requeue(&[1; 16]);
        let (b, _) = m.take(&[1; 16], 3);
        assert_eq!(
            b.iter().map(|(_, x)| x[0]).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(a[0].0, b[0].0);
        m.requeue_all();
        assert_eq!(m.len(&[1; 16]), 3);
    }
}
