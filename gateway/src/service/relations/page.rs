//! `GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`: the events relating to
//! one event, paginated like `/messages` (tokens are stream positions).

use std::collections::HashSet;

use ruma::{api::Direction, EventId, RoomId};
use serde_json::{json, Value};

use super::{
    bundle::{client_event, visible_children, Viewer},
    in_page,
};
use crate::{
    error::{ApiError, ApiResult},
    service::Gateway,
};

/// How deep `recurse=true` follows relations of relations (Synapse uses 3 as well).
pub const MAX_DEPTH: u64 = 3;
/// Most events a page returns.
pub const MAX_LIMIT: usize = 100;
/// Page size when the client gives none.
pub const DEFAULT_LIMIT: usize = 50;
/// Most descendants examined for one request (bounds the work of a huge reaction pile).
const MAX_EXAMINED: usize = 10_000;

/// What a `/relations` request asks for.
#[derive(Debug, Clone)]
pub struct RelationsQuery {
    /// Only this `rel_type`.
    pub rel_type: Option<String>,
    /// Only this event type (only with `rel_type`).
    pub event_type: Option<String>,
    /// Start token.
    pub from: Option<u64>,
    /// End token.
    pub to: Option<u64>,
    /// Direction (backwards, newest first, by default).
    pub dir: Direction,
    /// Page size.
    pub limit: Option<usize>,
    /// Follow relations of relations.
    pub recurse: bool,
}

/// One page of the events relating to `parent` in `room`, as `viewer` may see them. An event
/// the viewer may not see (or that does not exist in the room) is 404 `M_NOT_FOUND`.
pub fn relations(
    gw: &Gateway,
    viewer: Viewer<'_>,
    room: &RoomId,
    parent: &EventId,
    q: &RelationsQuery,
) -> ApiResult<Value> {
    let not_found = || ApiError::not_found("Unknown event");
    let (root, stored) = gw
        .rooms
        .get_visible_pdu(parent)?
        .filter(|(p, _)| p.room_id == room)
        .ok_or_else(not_found)?;
    if !gw.rooms.can_see(room, viewer.user, stored.pos)? {
        return Err(not_found());
    }
    let depth = if q.recurse { MAX_DEPTH } else { 1 };
    let mut frontier = vec![root];
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    let mut examined = 0usize;
    for _ in 0..depth {
        let mut next = Vec::new();
        for p in &frontier {
            for child in visible_children(gw, viewer.user, p)? {
                examined += 1;
                if examined > MAX_EXAMINED || !seen.insert(child.pdu.event_id.clone()) {
                    continue;
                }
                let type_ok = q.rel_type.as_ref().is_none_or(|r| *r == child.rel_type)
                    && q.event_type
                        .as_ref()
                        .is_none_or(|t| *t == child.pdu.kind.to_string());
                if type_ok && in_page(child.pos, q.from, q.to, q.dir) {
                    found.push((child.pos, child.pdu.clone(), child.stored.clone()));
                }
                next.push(child.pdu);
            }
        }
        frontier = next;
        if frontier.is_empty() {
            break;
        }
    }
    match q.dir {
        Direction::Backward => found.sort_by_key(|e| std::cmp::Reverse(e.0)),
        Direction::Forward => found.sort_by_key(|e| e.0),
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let more = found.len() > limit;
    found.truncate(limit);
    let mut chunk = Vec::with_capacity(found.len());
    for (_, pdu, stored) in &found {
        chunk.push(client_event(gw, viewer, pdu, stored)?);
    }
    let mut body = json!({ "chunk": chunk });
    if let (true, Some((last, _, _))) = (more, found.last()) {
        let next = match q.dir {
            Direction::Backward => last - 1,
            Direction::Forward => *last,
        };
        body["next_batch"] = json!(next.to_string());
    }
    if q.recurse {
        body["recursion_depth"] = json!(MAX_DEPTH);
    }
    Ok(body)
}
