//! `GET /rooms/{roomId}/threads`: the thread roots of a room, most recently active first.
//!
//! The relation index keeps one `(room, pos) → root` entry per thread reply. Walking it
//! backwards, a root is listed at the entry of its newest reply the viewer may see (so each
//! thread appears once, at its latest activity, and a reply the viewer may not see does not
//! move it up). The next-page token is the position below the last entry examined.

use ruma::{RoomId, UserId};
use serde_json::{json, Value};

use super::{
    bundle::{client_event, visible_children, Viewer},
    index::THREAD,
};
use crate::{
    error::{ApiError, ApiResult},
    service::Gateway,
};

/// Page size when the client gives none.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest page.
pub const MAX_LIMIT: usize = 100;
/// Thread replies read from the index at a time.
const SCAN: usize = 200;

/// One page of the thread list of `room` for `viewer`; `participated` keeps only threads the
/// viewer started or replied in. A room the viewer never joined (and cannot read) is 403.
pub fn threads(
    gw: &Gateway,
    viewer: Viewer<'_>,
    room: &RoomId,
    participated: bool,
    from: Option<u64>,
    limit: Option<usize>,
) -> ApiResult<Value> {
    if gw.rooms.membership(room, viewer.user)?.is_none()
        && !gw.rooms.can_see(room, viewer.user, u64::MAX)?
    {
        return Err(ApiError::forbidden("You are not a member of this room"));
    }
    let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let mut cursor = from.unwrap_or(u64::MAX);
    let mut chunk = Vec::new();
    let mut next_batch = None;
    'scan: loop {
        let page = gw.relations.thread_activity(room, cursor, SCAN)?;
        if page.is_empty() {
            break;
        }
        for (pos, root_id) in page {
            cursor = pos.saturating_sub(1);
            if chunk.len() == limit {
                next_batch = Some(pos);
                break 'scan;
            }
            if let Some(root) = listed_root(gw, viewer.user, room, &root_id, pos, participated)? {
                let (pdu, stored) = root;
                chunk.push(client_event(gw, viewer, &pdu, &stored)?);
            }
            if pos == 0 {
                break 'scan;
            }
        }
    }
    let mut body = json!({ "chunk": chunk });
    if let Some(n) = next_batch {
        body["next_batch"] = json!(n.to_string());
    }
    Ok(body)
}

/// The root if the reply at `pos` is its newest reply visible to `user` and the root is visible
/// (and, with `participated`, the user took part).
fn listed_root(
    gw: &Gateway,
    user: &UserId,
    room: &RoomId,
    root_id: &ruma::EventId,
    pos: u64,
    participated: bool,
) -> ApiResult<Option<(crate::service::rooms::Pdu, crate::service::rooms::StoredPdu)>> {
    let Some((root, stored)) = gw
        .rooms
        .get_visible_pdu(root_id)?
        .filter(|(p, _)| p.room_id == room)
    else {
        return Ok(None);
    };
    if !gw.rooms.can_see(room, user, stored.pos)? {
        return Ok(None);
    }
    let replies: Vec<_> = visible_children(gw, user, &root)?
        .into_iter()
        .filter(|c| c.rel_type == THREAD)
        .collect();
    if replies.iter().map(|c| c.pos).max() != Some(pos) {
        return Ok(None);
    }
    if participated && root.sender != user && !replies.iter().any(|c| c.pdu.sender == user) {
        return Ok(None);
    }
    Ok(Some((root, stored)))
}
