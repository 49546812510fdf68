//! Provider mailboxes: packets stored per gateway with a TTL and a quota, in memory.
//!
//! Polling hands items out under a lease: they stay "in flight" until the gateway acknowledges
//! them in a later poll. If the link drops or the lease runs out they go back to the front of
//! the queue, so a lost poll answer is delivered again (the gateway drops duplicates).
//!
//! The lease is short (a few poll intervals), because the gateway sends a *receipt* in its
//! next poll for every answer it got but holds unacknowledged on purpose (a fragment of a
//! message not yet complete or not yet confirmed); a receipt moves the item to the long
//! `held_lease`. So an answer lost on the way comes back after a few seconds, and one the
//! gateway holds is not sent again every few seconds.

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
    /// How long a handed-out packet waits for its acknowledgement or receipt before it is
    /// offered again (at least four poll intervals: see [`Mailboxes::lease_for`]).
    pub lease: Duration,
    /// How long a packet the gateway sent a receipt for waits for its acknowledgement before
    /// it is offered again: longer than a gateway holds anything (it acknowledges held items
    /// after 10 minutes at most).
    pub held_lease: Duration,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            ttl: Duration::from_secs(24 * 3600),
            quota: 10_000,
            total: 1_000_000,
            lease: Duration::from_secs(3),
            held_lease: Duration::from_secs(15 * 60),
        }
    }
}

/// What one [`Mailboxes::take`] handed out.
#[derive(Debug, Default)]
pub struct Taken {
    /// The items, as `(id, bytes)`.
    pub items: Vec<(u64, Vec<u8>)>,
    /// Expired items dropped on the way.
    pub expired: usize,
    /// How many of `items` were handed out before and not acknowledged in time.
    pub offered_again: usize,
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
    /// Handed-out items with the end of their lease.
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

    /// The lease for a network whose gateways poll `poll_per_s` times a second: the
    /// configured one, but at least four poll intervals, so a receipt has time to come.
    pub fn lease_for(&self, poll_per_s: f64) -> Duration {
        let four_polls = Duration::from_secs_f64((4.0 / poll_per_s.max(0.001)).min(3600.0));
        self.cfg.lease.max(four_polls)
    }

    /// Hands out up to `n` unexpired items as `(id, bytes)` under `lease`. Items whose lease
    /// ran out are offered again first. Returns the items, how many expired ones were dropped
    /// and how many of the items are offered again.
    pub fn take(&self, mb: &MailboxId, n: usize, lease: Duration) -> Taken {
        let ttl = self.cfg.ttl;
        let now = Instant::now();
        let mut g = self.lock();
        let Inner {
            boxes,
            in_flight,
            total,
            ..
        } = &mut *g;
        let mut again = 0;
        if let Some(f) = in_flight.get_mut(mb) {
            let (late, keep): (Vec<_>, Vec<_>) = f.drain(..).partition(|(end, _)| *end <= now);
            *f = keep;
            again = late.len();
            let q = boxes.entry(*mb).or_default();
            for (_, item) in late.into_iter().rev() {
                q.push_front(item);
            }
        }
        let mut taken = Taken::default();
        if let Some(q) = boxes.get_mut(mb) {
            let f = in_flight.entry(*mb).or_default();
            while taken.items.len() < n {
                let Some(item) = q.pop_front() else { break };
                // The late items were put first: the first `again` popped are theirs.
                let handed_out_before = again > 0;
                again = again.saturating_sub(1);
                if item.stored.elapsed() > ttl {
                    taken.expired += 1;
                } else {
                    taken.offered_again += usize::from(handed_out_before);
                    taken.items.push((item.id, item.bytes.clone()));
                    f.push((now + lease, item));
                }
            }
            if q.is_empty() {
                boxes.remove(mb);
            }
        }
        *total -= taken.expired;
        taken
    }

    /// The gateway got these items and holds them: keep them under the long lease.
    pub fn hold(&self, mb: &MailboxId, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let end = Instant::now() + self.cfg.held_lease;
        let mut g = self.lock();
        if let Some(f) = g.in_flight.get_mut(mb) {
            for (e, it) in f.iter_mut() {
                if ids.contains(&it.id) {
                    *e = end;
                }
            }
        }
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

    const LONG: Duration = Duration::from_secs(60);

    fn cfg() -> MailboxConfig {
        MailboxConfig {
            ttl: Duration::from_millis(50),
            quota: 3,
            total: 4,
            lease: Duration::from_secs(60),
            held_lease: Duration::from_secs(600),
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
        let got = m.take(&[1; 16], 2, LONG).items;
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
        assert_eq!(m.take(&[1; 16], 5, LONG).items.len(), 0);
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
        let a = m.take(&[1; 16], 2, LONG).items;
        m.requeue(&[1; 16]);
        let b = m.take(&[1; 16], 3, LONG).items;
        assert_eq!(
            b.iter().map(|(_, x)| x[0]).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(a[0].0, b[0].0);
        m.requeue_all();
        assert_eq!(m.len(&[1; 16]), 3);
    }

    #[test]
    fn a_lost_answer_comes_back_after_the_short_lease_and_a_held_one_does_not() {
        let m = Mailboxes::new(MailboxConfig {
            ttl: Duration::from_secs(60),
            held_lease: Duration::from_millis(400),
            ..cfg()
        });
        for i in 0..3 {
            m.store([1; 16], vec![i]).unwrap();
        }
        let short = Duration::from_millis(100);
        let first = m.take(&[1; 16], 3, short);
        assert_eq!(first.offered_again, 0);
        // The gateway got items 0 and 1 and holds them; the answer with item 2 was lost.
        m.hold(&[1; 16], &[first.items[0].0, first.items[1].0]);
        std::thread::sleep(Duration::from_millis(150));
        let again = m.take(&[1; 16], 3, short);
        assert_eq!(
            again.items.iter().map(|(_, b)| b[0]).collect::<Vec<_>>(),
            vec![2]
        );
        assert_eq!(again.offered_again, 1);
        // Held items stay in flight (counted) until acknowledged, or until the long lease
        // ends (a gateway that went away without acknowledging).
        assert_eq!(m.len(&[1; 16]), 3);
        m.ack(&[1; 16], &[first.items[0].0, again.items[0].0]);
        assert_eq!(m.len(&[1; 16]), 1);
        std::thread::sleep(Duration::from_millis(300));
        let late = m.take(&[1; 16], 3, short);
        assert_eq!(late.items, vec![first.items[1].clone()]);
        assert_eq!(late.offered_again, 1);
        // A receipt for an item that is not in flight changes nothing.
        m.hold(&[1; 16], &[12345]);
        m.hold(&[9; 16], &[first.items[1].0]);
        assert_eq!(m.len(&[1; 16]), 1);
    }

    #[test]
    fn the_lease_is_at_least_four_poll_intervals() {
        let m = Mailboxes::new(MailboxConfig::default());
        assert_eq!(m.lease_for(2.0), Duration::from_secs(3));
        assert_eq!(m.lease_for(0.5), Duration::from_secs(8));
        assert_eq!(m.lease_for(0.0), Duration::from_secs(3600));
    }
}
