//! Indexes derived from the timeline (relations, search terms, the event feed), written in the same batch as
//! each accepted event and rebuilt from the stored timelines when a database predates them.
//!
//! The room store calls [`record`] for every event it accepts into a room's timeline, sent
//! here or received from another gateway, so the indexes cover exactly what clients can see.
//! Readers treat them as hints and re-check each event (visibility, redaction).

use storage::{Batch, Db, Table};

use super::rooms::{Pdu, Rooms};
use crate::error::ApiResult;

/// Version of the derived indexes this build writes; a database with another one (or none)
/// gets them rebuilt at start-up. 1: relations; 2: search terms.
const INDEX_VERSION: u64 = 2;
const VERSION_KEY: &[u8] = b"derived_index_version";

/// Indexes `pdu`, accepted at stream position `pos`, into `batch`.
pub fn record(batch: &mut Batch, pdu: &Pdu, pos: u64) -> ApiResult<()> {
    super::relations::record(batch, pdu, pos)?;
    super::search::record(batch, pdu, pos);
    super::feed::record(batch, pdu, pos);
    Ok(())
}

/// Rebuilds the derived indexes from every room's timeline unless they are current. Returns
/// how many events were indexed (0 when nothing had to be done).
pub fn rebuild_if_needed(db: &Db, rooms: &Rooms) -> ApiResult<usize> {
    let meta: Table<u64> = Table::new("derived_meta");
    if meta.get(db, VERSION_KEY)? == Some(INDEX_VERSION) {
        return Ok(0);
    }
    let mut events = 0usize;
    for room in rooms.all_rooms()? {
        let mut batch = Batch::new();
        for (pos, id) in rooms.timeline(&room, 0, false, usize::MAX)? {
            if let Some((pdu, _)) = rooms.get_visible_pdu(&id)? {
                record(&mut batch, &pdu, pos)?;
                events += 1;
            }
        }
        db.apply(batch)?;
    }
    let mut batch = Batch::new();
    meta.put(&mut batch, VERSION_KEY, &INDEX_VERSION)?;
    db.apply(batch)?;
    db.flush_blocking()?;
    tracing::info!(
        events,
        "derived indexes (relations, search) built from the timelines"
    );
    Ok(events)
}
