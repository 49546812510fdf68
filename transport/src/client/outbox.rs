//! The client's durable state: messages accepted by `send` survive a restart until the
//! recipient confirmed them (or they failed), and the ids of received messages keep duplicates
//! suppressed after a restart. A trait, with an in-memory implementation; [`StorageOutbox`]
//! (in `outbox_store`) keeps it in a `storage::Db`.
//!
//! [`StorageOutbox`]: super::StorageOutbox

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use super::fragment::MsgId;
use super::Address;

/// One queued outgoing message or request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Destination.
    pub to: Address,
    /// Message bytes (for a request: the request bytes, without reply blocks).
    pub bytes: Vec<u8>,
    /// `Some` for a request awaiting its response.
    pub request: Option<RequestEntry>,
}

/// What the outbox keeps about a request besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestEntry {
    /// Largest response the reply blocks must carry.
    pub max_response: u32,
    /// When the caller stops waiting (ms since the Unix epoch); not re-issued after that.
    pub expires_ms: u64,
}

/// Why the outbox could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The underlying store failed.
    #[error("outbox store: {0}")]
    Storage(#[from] storage::Error),
}

/// What [`Outbox::sync`] returns: completes once earlier writes are durable.
pub type Durable<'a> = Pin<Box<dyn Future<Output = Result<(), OutboxError>> + Send + 'a>>;

/// Durable client state.
///
/// Writes are applied at once and made durable by [`Outbox::sync`], which the client awaits
/// where durability matters, so concurrent writers can share one fsync (group commit).
pub trait Outbox: Send + Sync {
    /// Records a message before it is sent. `send` returns only after this and a `sync`.
    fn put(&self, id: &MsgId, entry: &OutboxEntry) -> Result<(), OutboxError>;
    /// Forgets a message once its outcome is known. Need not be durable at once: a removal
    /// lost in a crash only makes the message go out again, and the recipient drops it as a
    /// duplicate (and confirms it again).
    fn remove(&self, id: &MsgId) -> Result<(), OutboxError>;
    /// Everything not yet resolved, oldest first (resent, or for requests re-issued, after a
    /// restart).
    fn list(&self) -> Result<Vec<(MsgId, OutboxEntry)>, OutboxError>;
    /// Records a received message id. The client confirms the message to its sender only
    /// after this and a `sync`.
    fn mark_received(&self, id: &MsgId) -> Result<(), OutboxError>;
    /// Whether a message id was recorded as received.
    fn was_received(&self, id: &MsgId) -> Result<bool, OutboxError>;
    /// Makes every write applied so far durable.
    fn sync(&self) -> Durable<'_>;
}

/// An in-memory [`Outbox`] (share one `Arc` across client restarts to model durability).
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    out: Mutex<Vec<(MsgId, OutboxEntry)>>,
    seen: Mutex<HashSet<MsgId>>,
}

impl Outbox for MemoryOutbox {
    fn put(&self, id: &MsgId, entry: &OutboxEntry) -> Result<(), OutboxError> {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.retain(|(k, _)| k != id);
        out.push((*id, entry.clone()));
        Ok(())
    }
    fn remove(&self, id: &MsgId) -> Result<(), OutboxError> {
        self.out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(k, _)| k != id);
        Ok(())
    }
    fn list(&self) -> Result<Vec<(MsgId, OutboxEntry)>, OutboxError> {
        Ok(self.out.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
    fn mark_received(&self, id: &MsgId) -> Result<(), OutboxError> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*id);
        Ok(())
    }
    fn was_received(&self, id: &MsgId) -> Result<bool, OutboxError> {
        Ok(self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id))
    }
    fn sync(&self) -> Durable<'_> {
        Box::pin(std::future::ready(Ok(())))
    }
}
