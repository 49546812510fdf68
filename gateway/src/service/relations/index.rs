//! The relation index: written in the same batch as every accepted timeline event.
//!
//! [`record`] is called by the room store for every event it accepts into a room's timeline,
//! whether sent here or received from another gateway, so the index covers the whole stored
//! timeline. It only says *which* events claim a relation: readers re-check each child (still
//! visible, still carrying the relation after a redaction) before using it.

use ruma::{EventId, OwnedEventId, RoomId};
use serde::{Deserialize, Serialize};
use storage::{key, u64_be, u64_from_be, Batch, Db, RawTable, Table};

use crate::{error::ApiResult, service::rooms::Pdu};

/// `rel_type` of a thread reply.
pub const THREAD: &str = "m.thread";
/// `rel_type` of an edit.
pub const REPLACE: &str = "m.replace";
/// `rel_type` of a reference.
pub const REFERENCE: &str = "m.reference";

/// One child of an event: an event that relates to it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RelEntry {
    /// The relating (child) event.
    pub event_id: OwnedEventId,
    /// Its `rel_type`.
    pub rel_type: String,
    /// Its event type.
    pub kind: String,
}

/// The `m.relates_to` of an event's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// `rel_type`.
    pub rel_type: String,
    /// The parent event.
    pub event_id: OwnedEventId,
}

#[derive(Deserialize)]
struct Content {
    #[serde(rename = "m.relates_to")]
    relates_to: Option<RelatesTo>,
}

#[derive(Deserialize)]
struct RelatesTo {
    rel_type: Option<String>,
    event_id: Option<OwnedEventId>,
}

/// The relation an event's content declares, if it is well formed (`rel_type` and `event_id`
/// both strings, the id valid). Replies (`m.in_reply_to` alone) are not relations.
pub fn relation_of(pdu: &Pdu) -> Option<Relation> {
    let content: Content = serde_json::from_str(pdu.content.get()).ok()?;
    let r = content.relates_to?;
    Some(Relation {
        rel_type: r.rel_type?,
        event_id: r.event_id?,
    })
}

/// The tables of the index.
pub(crate) struct Tables {
    /// parent, pos → child entry.
    pub children: Table<RelEntry>,
    /// room, pos → thread root, one entry per thread reply.
    pub thread_activity: RawTable,
}

impl Tables {
    pub fn new() -> Self {
        Self {
            children: Table::new("relations"),
            thread_activity: RawTable::new("thread_activity"),
        }
    }
}

/// Indexes `pdu` (accepted at stream position `pos`) into `batch`, if it relates to an event.
pub fn record(batch: &mut Batch, pdu: &Pdu, pos: u64) -> ApiResult<()> {
    let Some(rel) = relation_of(pdu) else {
        return Ok(());
    };
    if rel.event_id == pdu.event_id {
        return Ok(());
    }
    let t = Tables::new();
    t.children.put(
        batch,
        &key(&[rel.event_id.as_bytes(), &u64_be(pos)]),
        &RelEntry {
            event_id: pdu.event_id.clone(),
            rel_type: rel.rel_type.clone(),
            kind: pdu.kind.to_string(),
        },
    )?;
    if rel.rel_type == THREAD {
        t.thread_activity.put(
            batch,
            &key(&[pdu.room_id.as_bytes(), &u64_be(pos)]),
            rel.event_id.as_bytes().to_vec(),
        );
    }
    Ok(())
}

/// Every indexed child of `parent`, oldest first, with its stream position.
pub(crate) fn children(db: &Db, parent: &EventId) -> ApiResult<Vec<(u64, RelEntry)>> {
    let mut prefix = parent.as_bytes().to_vec();
    prefix.push(0xff);
    Ok(Tables::new()
        .children
        .scan_prefix(db, &prefix)?
        .into_iter()
        .filter_map(|(k, v)| Some((u64_from_be(&k[prefix.len()..])?, v)))
        .collect())
}

/// Thread replies of a room at positions `<= from`, newest first: `(pos, root)`.
pub(crate) fn thread_activity(
    db: &Db,
    room: &RoomId,
    from: u64,
    limit: usize,
) -> ApiResult<Vec<(u64, OwnedEventId)>> {
    let mut prefix = room.as_bytes().to_vec();
    prefix.push(0xff);
    let start = match from.checked_add(1) {
        Some(s) => u64_be(s).to_vec(),
        None => vec![0xff; 9],
    };
    Ok(Tables::new()
        .thread_activity
        .range(db, &prefix, &start, true, limit)?
        .into_iter()
        .filter_map(|(k, v)| {
            let pos = u64_from_be(&k[prefix.len()..])?;
            let root = EventId::parse(String::from_utf8(v).ok()?).ok()?;
            Some((pos, root))
        })
        .collect())
}
