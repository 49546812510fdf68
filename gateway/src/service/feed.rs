//! The event feed: `position → event id` of every event accepted into a timeline (local or
//! from another gateway), written with the event, for background consumers that must see each
//! event once and in order (push delivery). A consumer keeps its own durable cursor; entries
//! at or below every consumer's cursor are pruned.

use ruma::{EventId, OwnedEventId};
use storage::{u64_be, u64_from_be, Batch, Db, RawTable, Table};

use super::rooms::Pdu;
use crate::error::ApiResult;

fn table() -> RawTable {
    RawTable::new("event_feed")
}

/// Adds `pdu`, accepted at `pos`, to the feed in `batch`.
pub fn record(batch: &mut Batch, pdu: &Pdu, pos: u64) {
    table().put(batch, &u64_be(pos), pdu.event_id.as_bytes().to_vec());
}

/// Up to `limit` feed entries after `cursor`, oldest first.
pub fn after(db: &Db, cursor: u64, limit: usize) -> ApiResult<Vec<(u64, OwnedEventId)>> {
    let start = match cursor.checked_add(1) {
        Some(s) => u64_be(s).to_vec(),
        None => return Ok(Vec::new()),
    };
    Ok(table()
        .range(db, b"", &start, false, limit)?
        .into_iter()
        .filter_map(|(k, v)| {
            let pos = u64_from_be(&k)?;
            Some((pos, EventId::parse(String::from_utf8(v).ok()?).ok()?))
        })
        .collect())
}

fn cursors() -> Table<u64> {
    Table::new("feed_cursors")
}

/// The stored cursor of `consumer`, if it ever stored one.
pub fn cursor(db: &Db, consumer: &str) -> ApiResult<Option<u64>> {
    Ok(cursors().get(db, consumer.as_bytes())?)
}

/// Queues `consumer`'s new cursor into `batch`.
pub fn set_cursor(batch: &mut Batch, consumer: &str, pos: u64) -> ApiResult<()> {
    cursors().put(batch, consumer.as_bytes(), &pos)?;
    Ok(())
}

/// Queues the removal of entries every consumer has passed: at positions `<=` the smallest
/// cursor, where `consumer` is about to store `own`.
pub fn prune(db: &Db, batch: &mut Batch, consumer: &str, own: u64) -> ApiResult<()> {
    let mut upto = own;
    for (name, pos) in cursors().scan_prefix(db, b"")? {
        if name != consumer.as_bytes() {
            upto = upto.min(pos);
        }
    }
    for (k, _) in table().range(db, b"", &[], false, usize::MAX)? {
        match u64_from_be(&k) {
            Some(pos) if pos <= upto => table().delete(batch, &k),
            _ => break,
        }
    }
    Ok(())
}
