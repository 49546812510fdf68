//! The durable outbox: messages accepted by `send` survive a restart until delivered or
//! failed; also the record of received message ids, so duplicates stay suppressed after a
//! restart. A trait, with an in-memory implementation (the gateway wires it to storage).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::fragment::MsgId;
use super::Address;

/// One queued outgoing message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Destination.
    pub to: Address,
    /// Message bytes.
    pub bytes: Vec<u8>,
}

/// Durable client state.
pub trait Outbox: Send + Sync {
    /// Records a message before it is sent.
    fn put(&self, id: MsgId, entry: OutboxEntry);
    /// Forgets a message once its outcome is known.
    fn remove(&self, id: &MsgId);
    /// Everything not yet resolved (resent after a restart).
    fn list(&self) -> Vec<(MsgId, OutboxEntry)>;
    /// Records a received message id; returns `false` if it was already recorded.
    fn mark_received(&self, id: &MsgId) -> bool;
    /// Whether a message id was recorded as received.
    fn was_received(&self, id: &MsgId) -> bool;
}

/// An in-memory [`Outbox`] (share one `Arc` across client restarts to model durability).
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    out: Mutex<HashMap<MsgId, OutboxEntry>>,
    seen: Mutex<HashSet<MsgId>>,
}

impl Outbox for MemoryOutbox {
    fn put(&self, id: MsgId, entry: OutboxEntry) {
        self.out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, entry);
    }
    fn remove(&self, id: &MsgId) {
        self.out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
    fn list(&self) -> Vec<(MsgId, OutboxEntry)> {
        self.out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }
    fn mark_received(&self, id: &MsgId) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*id)
    }
    fn was_received(&self, id: &MsgId) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }
}
