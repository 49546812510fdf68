//! Peering counters: messages in and out, and everything dropped or refused, by reason.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

/// Counters of one gateway's peering (read by tests, logs and the metrics endpoint).
#[derive(Default)]
pub struct PeeringStats {
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    messages_in: AtomicU64,
    pdus_accepted: AtomicU64,
    dropped: Mutex<BTreeMap<&'static str, u64>>,
    noted: Mutex<BTreeMap<&'static str, u64>>,
}

impl PeeringStats {
    /// A message of `bytes` was handed to the network.
    pub fn sent(&self, bytes: usize) {
        self.messages_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A message arrived.
    pub fn received(&self) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
    }

    /// A remote PDU was accepted into a room.
    pub fn accepted(&self) {
        self.pdus_accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Something was dropped or refused for `reason`.
    pub fn dropped(&self, reason: &'static str) {
        let mut map = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(reason).or_default() += 1;
    }

    /// Something worth counting happened that is not a drop (a key accepted, a message held
    /// for its key, an epoch started).
    pub fn note(&self, what: &'static str) {
        let mut map = self.noted.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(what).or_default() += 1;
    }

    /// A new epoch started for `why` (counted as `rotated_<why>` notes and `rotations`).
    pub fn rotated(&self, why: &'static str) {
        self.note("rotations");
        self.note(match why {
            "first" => "rotated_first",
            "reader_left" => "rotated_reader_left",
            "joiner" => "rotated_joiner",
            "visibility" => "rotated_visibility",
            "messages" => "rotated_messages",
            _ => "rotated_age",
        });
    }

    /// Notes by name.
    pub fn notes(&self) -> BTreeMap<&'static str, u64> {
        self.noted.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// One note's count.
    pub fn noted(&self, what: &str) -> u64 {
        self.notes().get(what).copied().unwrap_or(0)
    }

    /// Messages sent.
    pub fn messages_out(&self) -> u64 {
        self.messages_out.load(Ordering::Relaxed)
    }

    /// Bytes sent (before the transport's padding).
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    /// Messages received.
    pub fn messages_in(&self) -> u64 {
        self.messages_in.load(Ordering::Relaxed)
    }

    /// Remote PDUs accepted.
    pub fn pdus_accepted(&self) -> u64 {
        self.pdus_accepted.load(Ordering::Relaxed)
    }

    /// Drops and refusals by reason.
    pub fn drops(&self) -> BTreeMap<&'static str, u64> {
        self.dropped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Drops and refusals for one reason.
    pub fn drops_of(&self, reason: &str) -> u64 {
        self.drops().get(reason).copied().unwrap_or(0)
    }
}
