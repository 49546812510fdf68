//! Provider mailboxes: packets stored per gateway with a TTL and a quota, in memory.

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
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            ttl: Duration::from_secs(24 * 3600),
            quota: 10_000,
            total: 1_000_000,
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

/// The mailboxes of one provider. It can outlive a provider task, which is how a restarted
/// provider keeps what it acknowledged (a durable store can replace it later).
#[derive(Debug)]
pub struct Mailboxes {
    cfg: MailboxConfig,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    boxes: HashMap<MailboxId, VecDeque<(Instant, Vec<u8>)>>,
    total: usize,
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
    pub fn store(&self, mb: MailboxId, item: Vec<u8>) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.total >= self.cfg.total {
            return Err(StoreError::Quota);
        }
        let q = g.boxes.entry(mb).or_default();
        if q.len() >= self.cfg.quota {
            return Err(StoreError::Quota);
        }
        q.push_back((Instant::now(), item));
        g.total += 1;
        Ok(())
    }

    /// Takes up to `n` unexpired items; returns them and how many expired ones were dropped.
    pub fn take(&self, mb: &MailboxId, n: usize) -> (Vec<Vec<u8>>, usize) {
        let ttl = self.cfg.ttl;
        let mut g = self.lock();
        let mut out = vec![];
        let mut expired = 0;
        if let Some(q) = g.boxes.get_mut(mb) {
            while out.len() < n {
                let Some((t, item)) = q.pop_front() else {
                    break;
                };
                if t.elapsed() > ttl {
                    expired += 1;
                } else {
                    out.push(item);
                }
            }
            if q.is_empty() {
                g.boxes.remove(mb);
            }
        }
        g.total -= out.len() + expired;
        (out, expired)
    }

    /// Drops every expired item; returns how many.
    pub fn purge(&self) -> usize {
        let ttl = self.cfg.ttl;
        let mut g = self.lock();
        let mut n = 0;
        for q in g.boxes.values_mut() {
            let before = q.len();
            q.retain(|(t, _)| t.elapsed() <= ttl);
            n += before - q.len();
        }
        g.boxes.retain(|_, q| !q.is_empty());
        g.total -= n;
        n
    }

    /// Items held for one mailbox.
    pub fn len(&self, mb: &MailboxId) -> usize {
        self.lock().boxes.get(mb).map_or(0, |q| q.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn quota_ttl_take() {
        let m = Mailboxes::new(MailboxConfig {
            ttl: Duration::from_millis(50),
            quota: 3,
            total: 4,
        });
        for i in 0..3 {
            m.store([1; 16], vec![i]).unwrap();
        }
        assert_eq!(m.store([1; 16], vec![9]), Err(StoreError::Quota));
        m.store([2; 16], vec![7]).unwrap();
        assert_eq!(m.store([3; 16], vec![7]), Err(StoreError::Quota));
        let (got, _) = m.take(&[1; 16], 2);
        assert_eq!(got, vec![vec![0], vec![1]]);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(m.purge(), 2);
        assert_eq!(m.take(&[1; 16], 5).0.len(), 0);
        assert_eq!(m.len(&[2; 16]), 0);
    }
}
