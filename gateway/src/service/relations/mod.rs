//! Event relationships (spec v1.12 "Event relationships", "Threading"): the relation index,
//! bundled aggregations, `/relations` pages and the thread list.
//!
//! The index is written with each accepted timeline event ([`record`], through
//! [`crate::service::derived`], for local and remote events alike).

pub mod bundle;
mod index;
pub mod page;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod tests_support;
pub mod threads;
pub mod unread;

use ruma::{api::Direction, RoomId};
use storage::Db;

pub use bundle::{client_event, sync_event, Viewer};
pub use index::{record, relation_of, RelEntry, Relation, REFERENCE, REPLACE, THREAD};

use crate::error::ApiResult;

/// The relation service.
pub struct Relations {
    db: Db,
}

impl Relations {
    /// The service over `db` (the index itself is written by [`record`]).
    pub fn new(db: Db) -> Self {
        Self { db }
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
