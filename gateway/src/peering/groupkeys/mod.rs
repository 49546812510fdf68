//! Ephemeral group keys between gateways (vodozemac Olm and Megolm).
//!
//! - **Olm** ([`olm`]): one account per gateway (a Curve25519 identity key, one-time keys
//!   handed out on request, one at a time) and pairwise sessions with other gateways. What is
//!   meant for one gateway travels under Olm: room key shares, to-device messages, device-list
//!   updates and invites.
//! - **Megolm** ([`megolm`]): for each room this gateway sends into, one outbound session: an
//!   *epoch*. Every PDU and room EDU it sends into the room is encrypted under it once, and the
//!   same ciphertext goes to every member gateway. A new epoch starts by the rules of
//!   [`policy`] (a reader left, a joiner who must not read the past, a history-visibility
//!   change, a message or age limit); the old one is deleted at once.
//! - **Receivers** keep an inbound session only from the lowest index they have not decrypted
//!   yet (they advance it as messages arrive, which also refuses replays), and delete it after
//!   the retention window.
//! - **Waiting** ([`pending`]): a message whose key has not arrived is stored, bounded, and
//!   its sender is asked for the key; one that never gets it is dropped and counted.
//!
//! All state lives in the gateway's store (sled tables `gk_*`), so a restart keeps the keys a
//! running gateway would have and nothing more. One lock serialises every operation: the
//! sessions are small and the work per message is microseconds.

pub mod megolm;
pub mod olm;
pub mod pending;
pub mod policy;

use std::{collections::HashMap, sync::Arc};

use ruma::{OwnedServerName, ServerName};
use storage::Db;
use tokio::sync::Mutex;

use crate::service::clock::Clock;
pub use policy::KeyPolicy;

/// Why a key operation failed (each a counter label).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// No inbound session with that id from that gateway (not arrived yet, or deleted).
    #[error("unknown session")]
    UnknownSession,
    /// The message index was decrypted before, or lies before what the session keeps.
    #[error("replayed or expired message index")]
    Replay,
    /// The ciphertext does not decode, or its signature or MAC does not verify.
    #[error("forged or truncated ciphertext: {0}")]
    Forged(String),
    /// No Olm session decrypts the message.
    #[error("no Olm session decrypts it")]
    OlmUndecryptable,
    /// No Olm session with the peer yet (a one-time key must be claimed first).
    #[error("no Olm session")]
    NoOlmSession,
    /// The requester may not have the key.
    #[error("not entitled to the key")]
    NotEntitled,
    /// Too many key requests from this gateway.
    #[error("too many requests")]
    Flood,
    /// The store failed.
    #[error("storage: {0}")]
    Storage(String),
}

impl KeyError {
    /// A short label for counters.
    pub fn label(&self) -> &'static str {
        match self {
            KeyError::UnknownSession => "megolm_unknown_session",
            KeyError::Replay => "megolm_replay",
            KeyError::Forged(_) => "ciphertext_forged",
            KeyError::OlmUndecryptable => "olm_undecryptable",
            KeyError::NoOlmSession => "olm_no_session",
            KeyError::NotEntitled => "key_not_entitled",
            KeyError::Flood => "key_request_flood",
            KeyError::Storage(_) => "key_storage",
        }
    }
}

impl From<storage::Error> for KeyError {
    fn from(e: storage::Error) -> Self {
        KeyError::Storage(e.to_string())
    }
}

/// Requests a gateway may make per minute (key requests and one-time key claims together).
const REQUESTS_PER_MINUTE: u32 = 60;

/// One gateway's group keys.
pub struct GroupKeys {
    db: Db,
    clock: Arc<dyn Clock>,
    policy: KeyPolicy,
    /// Serialises every read-modify-write of the tables.
    lock: Mutex<()>,
    /// Requests per gateway in the current minute.
    budget: std::sync::Mutex<HashMap<OwnedServerName, (u64, u32)>>,
    /// Orders held messages that arrive in the same millisecond.
    seq: std::sync::atomic::AtomicU64,
}

impl GroupKeys {
    /// Group keys kept in `db`, timed by `clock`, limited by `policy`.
    pub fn new(db: Db, clock: Arc<dyn Clock>, policy: KeyPolicy) -> Self {
        Self {
            db,
            clock,
            policy,
            lock: Mutex::new(()),
            budget: Default::default(),
            seq: Default::default(),
        }
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// The limits in force.
    pub fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    /// Now, by the injected clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Writes `batch` durably before returning: a ratchet must never be used from a state
    /// older than one whose output left the gateway (a crash would otherwise encrypt twice
    /// under the same message key).
    async fn apply(&self, batch: storage::Batch) -> Result<(), KeyError> {
        self.db.apply(batch)?;
        self.db.flush().await?;
        Ok(())
    }

    /// Counts one request of `from`; `Err(Flood)` past [`REQUESTS_PER_MINUTE`].
    pub fn admit_request(&self, from: &ServerName) -> Result<(), KeyError> {
        let minute = self.now_ms() / 60_000;
        let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        if budget.len() > 10_000 {
            budget.retain(|_, (m, _)| *m == minute);
        }
        let entry = budget.entry(from.to_owned()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        if entry.1 > REQUESTS_PER_MINUTE {
            return Err(KeyError::Flood);
        }
        Ok(())
    }

    /// Deletes what the retention window says is over: received epochs, idle Olm sessions,
    /// one-time keys handed out long ago, and messages that waited too long for their key.
    pub async fn expire(&self) -> Result<Expired, KeyError> {
        let _guard = self.lock.lock().await;
        let now = self.now_ms();
        let mut expired = Expired {
            epochs: self.expire_inbound(now)?,
            own_epochs: self.expire_outbound(now)?,
            ..Expired::default()
        };
        let (sessions, keys) = self.expire_olm(now)?;
        expired.olm_sessions = sessions;
        expired.one_time_keys = keys;
        expired.pending = self.expire_pending(now)?;
        Ok(expired)
    }
}

/// What one [`GroupKeys::expire`] deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// Received epochs past retention.
    pub epochs: usize,
    /// This gateway's own epochs past their age limit.
    pub own_epochs: usize,
    /// Olm sessions idle past retention.
    pub olm_sessions: usize,
    /// One-time keys handed out past retention and never used.
    pub one_time_keys: usize,
    /// Messages that never got their key.
    pub pending: usize,
}

#[cfg(test)]
mod tests;
