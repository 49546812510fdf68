//! Event relationships (spec v1.12 "Event relationships", "Threading"): the relation index,
//! bundled aggregations, `/relations` pages and the thread list.
//!
//! The index is written with each accepted timeline event ([`record`], called by the room
//! store for local and remote events alike) and rebuilt from the stored timelines when a
//! database predates it ([`Relations::open`]).

pub mod bundle;
mod index;
pub mod page;
#[cfg(test)]
mod tests;
pub mod threads;
pub mod unread;

use ruma::{api::Direction, RoomId};
use storage::{Batch, Db, Table};

pub use bundle::{client_event, sync_event, Viewer};
pub use index::{record, relation_of, RelEntry, Relation, REFERENCE, REPLACE, THREAD};

use crate::{error::ApiResult, service::rooms::Rooms};

/// Version of the derived indexes this build writes; a database with an older one (or none)
/// gets them rebuilt from its timelines at start-up.
const INDEX_VERSION: u64 = 1;
const VERSION_KEY: &[u8] = b"relations_index_version";

/// The relation service.
pub struct Relations {
    db: Db,
}

impl Relations {
    /// Opens the index, rebuilding it from every room's timeline if the database predates it.
    pub fn open(db: Db, rooms: &Rooms) -> ApiResult<Self> {
        let meta: Table<u64> = Table::new("derived_meta");
        if meta.get(&db, VERSION_KEY)? != Some(INDEX_VERSION) {
            let mut batch = Batch::new();
            let mut events = 0usize;
            for room in rooms.all_rooms()? {
                for (pos, id) in rooms.timeline(&room, 0, false, usize::MAX)? {
                    if let Some((pdu, _)) = rooms.get_visible_pdu(&id)? {
                        record(&mut batch, &pdu, pos)?;
                        events += 1;
                    }
                }
            }
            meta.put(&mut batch, VERSION_KEY, &INDEX_VERSION)?;
            db.apply(batch)?;
            db.flush_blocking()?;
            tracing::info!(events, "relation index built from the stored timelines");
        }
        Ok(Self { db })
    }

    /// Thread replies of `room` at positions `<= from`, newest first: `(pos, root)`.
    pub fn thread_activity(
        &self,
        room: &RoomId,
        from: u64,
        limit: usize,
    ) -> ApiResult<Vec<(u64, ruma::OwnedEventId)>> {
        index::thread_activity(&self.db, room, from, limit)
    }
}

/// Which way a page runs, as `/messages` tokens do: backwards takes positions `<= from`,
/// forwards positions `> from`.
pub(crate) fn in_page(pos: u64, from: Option<u64>, to: Option<u64>, dir: Direction) -> bool {
    match dir {
        Direction::Backward => from.is_none_or(|f| pos <= f) && to.is_none_or(|t| pos > t),
        Direction::Forward => from.is_none_or(|f| pos > f) && to.is_none_or(|t| pos <= t),
    }
}
