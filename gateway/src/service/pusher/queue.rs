//! Durable push jobs: one per (event, user, pusher), written together with the fan-out
//! cursor, deleted once the push gateway acknowledged it.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};
use storage::{key, u64_be, Batch, Db, Table};

use crate::error::ApiResult;

/// A notification waiting for (re)delivery.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    /// The user notified.
    pub user: OwnedUserId,
    /// The pusher's `app_id`.
    pub app_id: String,
    /// The pusher's `pushkey`.
    pub pushkey: String,
    /// The room of the event.
    pub room_id: OwnedRoomId,
    /// The event.
    pub event_id: OwnedEventId,
    /// The user's unread count in the room with this event.
    pub unread: u64,
    /// Whether push rules highlight the event (a mention).
    pub highlight: bool,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Earliest next attempt (ms since the epoch).
    pub next_ms: u64,
    /// When the job was made (ms since the epoch).
    pub created_ms: u64,
}

fn table() -> Table<Job> {
    Table::new("push_jobs")
}

/// The key of a job for the event at `pos`.
pub fn job_key(pos: u64, job: &Job) -> Vec<u8> {
    key(&[
        &u64_be(pos),
        job.user.as_bytes(),
        job.app_id.as_bytes(),
        job.pushkey.as_bytes(),
    ])
}

/// Queues `job` (for the event at `pos`) into `batch`.
pub fn put(batch: &mut Batch, pos: u64, job: &Job) -> ApiResult<()> {
    table().put(batch, &job_key(pos, job), job)?;
    Ok(())
}

/// Rewrites a job under its key.
pub fn update(batch: &mut Batch, key: &[u8], job: &Job) -> ApiResult<()> {
    table().put(batch, key, job)?;
    Ok(())
}

/// Removes a job.
pub fn remove(batch: &mut Batch, key: &[u8]) {
    table().delete(batch, key);
}

/// Every queued job with its key, oldest event first.
pub fn all(db: &Db) -> ApiResult<Vec<(Vec<u8>, Job)>> {
    Ok(table().scan_prefix(db, b"")?)
}
