//! [`Outbox`] over a `storage::Db`: the durable outbox a gateway gives its client.
//!
//! Two raw tables:
//! * `transport_outbox`: message id → `version (1) ‖ queue stamp (8, BE) ‖ provider (16) ‖
//!   mailbox (16) ‖ key (32) ‖ bytes`; the stamp is a strictly increasing microsecond
//!   clock reading, so `list` returns messages in the order they were accepted; a request
//!   is stored as version 2, with `max response (4, BE) ‖ expires at ms (8, BE)` before the
//!   bytes;
//! * `transport_received`: message id → received at ms (8, BE).
//!
//! `sync` is the store's group commit ([`Db::flush`]): writers waiting at the same time share
//! one fsync.
//! Received ids older than [`RECEIVED_RETENTION_MS`] are pruned when the store is opened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use storage::{Batch, Db, RawTable};
use tracing::warn;

use super::fragment::MsgId;
use super::outbox::{Durable, Outbox, OutboxEntry, OutboxError, RequestEntry};
use super::Address;
use crate::util::now_ms;

const VERSION: u8 = 1;
const VERSION_REQUEST: u8 = 2;
const FIXED: usize = 1 + 8 + 16 + 16 + 32;
const REQUEST_FIXED: usize = 4 + 8;

/// How long received ids are kept for duplicate suppression: 30 days, far longer than a
/// sender retransmits (a sender offline for longer may deliver a duplicate, which
/// application-level ids absorb).
pub const RECEIVED_RETENTION_MS: u64 = 30 * 24 * 3600 * 1000;

/// The durable outbox on a [`Db`] (sled on disk, or memory-only for a traceless gateway).
#[derive(Debug, Clone)]
pub struct StorageOutbox {
    db: Db,
    out: RawTable,
    seen: RawTable,
    last_stamp: Arc<AtomicU64>,
}

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn encode(entry: &OutboxEntry, at: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(FIXED + REQUEST_FIXED + entry.bytes.len());
    v.push(if entry.request.is_some() {
        VERSION_REQUEST
    } else {
        VERSION
    });
    v.extend_from_slice(&at.to_be_bytes());
    v.extend_from_slice(&entry.to.provider);
    v.extend_from_slice(&entry.to.mailbox);
    v.extend_from_slice(&entry.to.key);
    if let Some(r) = entry.request {
        v.extend_from_slice(&r.max_response.to_be_bytes());
        v.extend_from_slice(&r.expires_ms.to_be_bytes());
    }
    v.extend_from_slice(&entry.bytes);
    v
}

fn decode(v: &[u8]) -> Option<(u64, OutboxEntry)> {
    if v.len() < FIXED || !(v[0] == VERSION || v[0] == VERSION_REQUEST) {
        return None;
    }
    let at = storage::u64_from_be(&v[1..9])?;
    let to = Address {
        provider: v[9..25].try_into().ok()?,
        mailbox: v[25..41].try_into().ok()?,
        key: v[41..73].try_into().ok()?,
    };
    let (request, rest) = if v[0] == VERSION_REQUEST {
        let r = v.get(FIXED..FIXED + REQUEST_FIXED)?;
        let request = RequestEntry {
            max_response: u32::from_be_bytes(r[..4].try_into().ok()?),
            expires_ms: storage::u64_from_be(&r[4..])?,
        };
        (Some(request), &v[FIXED + REQUEST_FIXED..])
    } else {
        (None, &v[FIXED..])
    };
    Some((
        at,
        OutboxEntry {
            to,
            bytes: rest.to_vec(),
            request,
        },
    ))
}

impl StorageOutbox {
    /// The outbox in `db`; prunes received ids older than [`RECEIVED_RETENTION_MS`].
    pub fn open(db: Db) -> Result<Self, OutboxError> {
        let s = StorageOutbox {
            db,
            out: RawTable::new("transport_outbox"),
            seen: RawTable::new("transport_received"),
            last_stamp: Arc::default(),
        };
        let cutoff = now_ms().saturating_sub(RECEIVED_RETENTION_MS);
        let mut batch = Batch::new();
        for (k, v) in s.seen.scan_prefix(&s.db, b"")? {
            if storage::u64_from_be(&v).is_none_or(|t| t < cutoff) {
                s.seen.delete(&mut batch, &k);
            }
        }
        if !batch.is_empty() {
            s.db.apply(batch)?;
            s.db.flush_blocking()?;
        }
        Ok(s)
    }

    /// A stamp greater than every earlier one of this process (and, clocks permitting, of
    /// earlier processes).
    fn stamp(&self) -> u64 {
        let now = now_us();
        let prev = self
            .last_stamp
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| Some(now.max(p + 1)))
            .unwrap_or(now);
        now.max(prev + 1)
    }
}

impl Outbox for StorageOutbox {
    fn put(&self, id: &MsgId, entry: &OutboxEntry) -> Result<(), OutboxError> {
        let mut batch = Batch::new();
        self.out.put(&mut batch, id, encode(entry, self.stamp()));
        self.db.apply(batch)?;
        Ok(())
    }

    fn remove(&self, id: &MsgId) -> Result<(), OutboxError> {
        let mut batch = Batch::new();
        self.out.delete(&mut batch, id);
        self.db.apply(batch)?;
        Ok(())
    }

    fn list(&self) -> Result<Vec<(MsgId, OutboxEntry)>, OutboxError> {
        let mut all = Vec::new();
        let mut bad = Batch::new();
        for (k, v) in self.out.scan_prefix(&self.db, b"")? {
            let id: Option<MsgId> = k.as_slice().try_into().ok();
            match (id, decode(&v)) {
                (Some(id), Some((at, e))) => all.push((at, id, e)),
                _ => {
                    warn!("undecodable outbox entry removed");
                    self.out.delete(&mut bad, &k);
                }
            }
        }
        if !bad.is_empty() {
            self.db.apply(bad)?;
        }
        all.sort_by_key(|(at, id, _)| (*at, *id));
        Ok(all.into_iter().map(|(_, id, e)| (id, e)).collect())
    }

    fn mark_received(&self, id: &MsgId) -> Result<(), OutboxError> {
        let mut batch = Batch::new();
        self.seen
            .put(&mut batch, id, storage::u64_be(now_ms()).to_vec());
        self.db.apply(batch)?;
        Ok(())
    }

    fn was_received(&self, id: &MsgId) -> Result<bool, OutboxError> {
        Ok(self.seen.get(&self.db, id)?.is_some())
    }

    fn sync(&self) -> Durable<'_> {
        Box::pin(async move { Ok(self.db.flush().await?) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(n: u8) -> OutboxEntry {
        OutboxEntry {
            to: Address {
                provider: [n; 16],
                mailbox: [n + 1; 16],
                key: [n + 2; 32],
            },
            bytes: vec![n; usize::from(n) * 100],
            request: (n == 2).then_some(RequestEntry {
                max_response: 3000,
                expires_ms: 77,
            }),
        }
    }

    #[tokio::test]
    async fn survives_reopen_in_order_and_forgets_removed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ob = StorageOutbox::open(Db::open(dir.path()).unwrap()).unwrap();
            for n in 0..3u8 {
                ob.put(&[9 - n; 16], &entry(n)).unwrap();
            }
            ob.remove(&[8; 16]).unwrap();
            ob.mark_received(&[42; 16]).unwrap();
            ob.sync().await.unwrap();
        }
        let ob = StorageOutbox::open(Db::open(dir.path()).unwrap()).unwrap();
        let got = ob.list().unwrap();
        let ids: Vec<MsgId> = got.iter().map(|(id, _)| *id).collect();
        assert!(ids == vec![[9; 16], [7; 16]]);
        assert_eq!(got[1].1, entry(2));
        assert!(ob.was_received(&[42; 16]).unwrap());
        assert!(!ob.was_received(&[43; 16]).unwrap());
    }

    #[test]
    fn corrupt_entries_are_dropped_not_fatal() {
        let ob = StorageOutbox::open(Db::memory().unwrap()).unwrap();
        let mut b = Batch::new();
        ob.out.put(&mut b, &[1; 16], vec![VERSION, 0, 1]);
        ob.out.put(&mut b, b"short", encode(&entry(1), 5));
        ob.db.apply(b).unwrap();
        ob.put(&[2; 16], &entry(3)).unwrap();
        let got = ob.list().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(ob.list().unwrap().len(), 1);
    }
}
