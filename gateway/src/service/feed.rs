//! The event feed: `position → event id` of every event accepted into a timeline (local or
//! from another gateway), written with the event, for background consumers that must see each
//! event once and in order (push delivery). A consumer keeps its own durable cursor; entries
//! at or below every consumer's cursor are pruned.

use ruma::{EventId, OwnedEventId};
use storage::{u64_be, u64_from_be, Batch, Db, RawTable};

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

/// Queues the removal of entries at positions `<= upto` (those seen by every consumer).
pub fn prune(db: &Db, batch: &mut Batch, upto: u64) -> ApiResult<()> {
    for (k, _) in table().range(db, b"", &[], false, usize::MAX)? {
        match u64_from_be(&k) {
            Some(pos) if pos <= upto => table().delete(batch, &k),
            _ => break,
        }
    }
    Ok(())
}
