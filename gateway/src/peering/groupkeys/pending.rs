//! Messages that arrived before their key: kept (bounded) until the key comes, asked for,
//! and dropped and counted if it never does.

use ruma::{OwnedServerName, ServerName};
use serde::{Deserialize, Serialize};
use storage::{u64_be, Batch, Table};

use super::{GroupKeys, KeyError};

/// Messages held in all.
pub const MAX_PENDING: usize = 4096;

/// Messages held per sending gateway.
pub const MAX_PENDING_PER_ORIGIN: usize = 1024;

#[derive(Serialize, Deserialize)]
struct Held {
    origin: OwnedServerName,
    session_id: String,
    ciphertext: String,
    received_ms: u64,
    /// When its sender was last asked for the key (0: never).
    asked_ms: u64,
}

fn held() -> Table<Held> {
    Table::new("gk_pending")
}

/// A session some held messages wait for, and whether to ask for it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The gateway that sent them.
    pub origin: OwnedServerName,
    /// The session.
    pub session_id: String,
}

impl GroupKeys {
    /// Holds a message whose key has not arrived. `Ok(false)` if the bounds are reached (the
    /// message is dropped; the caller counts it).
    pub async fn hold(
        &self,
        origin: &ServerName,
        session_id: &str,
        ciphertext: &str,
    ) -> Result<bool, KeyError> {
        let _guard = self.lock.lock().await;
        let all = held().scan_prefix(&self.db, b"")?;
        if all.len() >= MAX_PENDING {
            return Ok(false);
        }
        if all.iter().filter(|(_, h)| h.origin == origin).count() >= MAX_PENDING_PER_ORIGIN {
            return Ok(false);
        }
        let now = self.now_ms();
        let seq = self.next_seq();
        let k = storage::key(&[
            origin.as_bytes(),
            session_id.as_bytes(),
            &u64_be(now),
            &u64_be(seq),
        ]);
        let mut batch = Batch::new();
        held().put(
            &mut batch,
            &k,
            &Held {
                origin: origin.to_owned(),
                session_id: session_id.to_owned(),
                ciphertext: ciphertext.to_owned(),
                received_ms: now,
                asked_ms: 0,
            },
        )?;
        self.apply(batch).await?;
        Ok(true)
    }

    /// Takes the messages held for `session_id` of `origin`, oldest first.
    pub async fn take_held(
        &self,
        origin: &ServerName,
        session_id: &str,
    ) -> Result<Vec<String>, KeyError> {
        let _guard = self.lock.lock().await;
        let prefix = storage::key(&[origin.as_bytes(), session_id.as_bytes(), b""]);
        let found = held().scan_prefix(&self.db, &prefix)?;
        let mut batch = Batch::new();
        let mut out = Vec::new();
        for (k, h) in found {
            if h.origin == origin && h.session_id == session_id {
                held().delete(&mut batch, &k);
                out.push(h.ciphertext);
            }
        }
        self.apply(batch).await?;
        Ok(out)
    }

    /// Sessions whose messages have waited at least `ask_after_secs` and whose sender was not
    /// asked in the last `ask_after_secs`: marks them asked and returns them.
    pub async fn due_requests(&self) -> Result<Vec<Waiting>, KeyError> {
        let _guard = self.lock.lock().await;
        let now = self.now_ms();
        let wait = self.policy.ask_after_secs.saturating_mul(1000);
        let mut due: Vec<Waiting> = Vec::new();
        let mut batch = Batch::new();
        for (k, mut h) in held().scan_prefix(&self.db, b"")? {
            let waited = now.saturating_sub(h.received_ms) >= wait;
            let not_asked = now.saturating_sub(h.asked_ms) >= wait.max(1000);
            if !(waited && not_asked) {
                continue;
            }
            let w = Waiting {
                origin: h.origin.clone(),
                session_id: h.session_id.clone(),
            };
            h.asked_ms = now;
            held().put(&mut batch, &k, &h)?;
            if !due.contains(&w) {
                due.push(w);
            }
        }
        self.apply(batch).await?;
        Ok(due)
    }

    /// Messages held now.
    pub async fn held_count(&self) -> Result<usize, KeyError> {
        let _guard = self.lock.lock().await;
        Ok(held().scan_prefix(&self.db, b"")?.len())
    }

    /// Drops messages that waited longer than `pending_secs`; how many.
    pub(super) fn expire_pending(&self, now: u64) -> Result<usize, KeyError> {
        let horizon = now.saturating_sub(self.policy.pending_secs.saturating_mul(1000));
        let mut batch = Batch::new();
        let mut gone = 0;
        for (k, h) in held().scan_prefix(&self.db, b"")? {
            if h.received_ms < horizon {
                held().delete(&mut batch, &k);
                gone += 1;
            }
        }
        self.db.apply(batch)?;
        Ok(gone)
    }
}
