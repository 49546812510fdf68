//! History visibility: who may read which part of a room's history.
//!
//! Membership and `m.room.history_visibility` are indexed by stream position, so the rule for
//! an event is evaluated against the state in force when it was sent:
//! - `world_readable`: everyone;
//! - `shared`: members joined at the event, and everyone joined now;
//! - `invited`: members invited or joined at the event;
//! - `joined`: members joined at the event.

use ruma::{RoomId, UserId};
use storage::{key, u64_be, Db};

use super::tables::Tables;
use crate::error::ApiResult;

/// The last value at or before `pos` in a history table under `prefix`.
fn value_at(
    table: &storage::Table<String>,
    db: &Db,
    prefix: &[u8],
    pos: u64,
) -> ApiResult<Option<String>> {
    let from = match pos.checked_add(1) {
        Some(p) => u64_be(p).to_vec(),
        None => vec![0xff; 9],
    };
    Ok(table
        .range(db, prefix, &from, true, 1)?
        .into_iter()
        .next()
        .map(|(_, v)| v))
}

pub(super) fn can_see(
    db: &Db,
    t: &Tables,
    room: &RoomId,
    user: &UserId,
    pos: u64,
) -> ApiResult<bool> {
    let mut vis_prefix = room.as_bytes().to_vec();
    vis_prefix.push(0xff);
    let visibility = value_at(&t.visibility_history, db, &vis_prefix, pos)?
        .unwrap_or_else(|| "shared".to_owned());
    if visibility == "world_readable" {
        return Ok(true);
    }
    let mut member_prefix = key(&[room.as_bytes(), user.as_bytes()]);
    member_prefix.push(0xff);
    let at_event = value_at(&t.membership_history, db, &member_prefix, pos)?;
    let joined_then = at_event.as_deref() == Some("join");
    Ok(match visibility.as_str() {
        "joined" => joined_then,
        "invited" => joined_then || at_event.as_deref() == Some("invite"),
        _ => {
            joined_then
                || t.members
                    .get(db, &key(&[room.as_bytes(), user.as_bytes()]))?
                    .is_some_and(|m| m.membership == "join")
        }
    })
}
