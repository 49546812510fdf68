//! Bundled aggregations (`unsigned.m.relations`) and the one helper that serves events with them.
//!
//! Every place that hands a timeline event to a client (`/sync`, sliding sync, `/messages`,
//! `/context`, `/event`, `/relations`, `/threads`, `/search`) goes through [`client_event`] or
//! [`sync_event`], so the aggregations are the same everywhere. They are computed from the
//! relation index over the stored timeline (events from other gateways included), as seen by
//! the viewer: a child the viewer may not see under history visibility does not count.
//!
//! - `m.replace`: the newest valid edit (latest `origin_server_ts`, then greatest event id),
//!   served whole. Valid means: same sender and type as the original, neither is a state event,
//!   the edit has `m.new_content` (unless encrypted), the original is not itself an edit (edits
//!   of edits are refused) and is not redacted. The original's content is left as it is
//!   (spec v1.7+, MSC3925).
//! - `m.thread`: `latest_event` (served with its own edit), `count`, and
//!   `current_user_participated` (the viewer sent the root or a reply).
//! - `m.reference`: `chunk` of `{event_id}`, oldest first.
//!
//! Reactions (`m.annotation`) are not bundled (the spec dropped that); they are served by
//! `/relations`.

use ruma::UserId;
use serde_json::{json, Map, Value};

use super::index::{self, relation_of, REFERENCE, REPLACE, THREAD};
use crate::{
    error::ApiResult,
    service::{
        rooms::{Pdu, StoredPdu},
        Gateway,
    },
};

/// Who is looking: the user, and their device (to show `transaction_id` on their own events).
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    /// The user.
    pub user: &'a UserId,
    /// Their device, if the request came from one.
    pub device: Option<&'a str>,
}

impl<'a> Viewer<'a> {
    /// A viewer from a user and device.
    pub fn new(user: &'a UserId, device: &'a str) -> Self {
        Self {
            user,
            device: Some(device),
        }
    }

    fn pair(&self) -> Option<(&'a UserId, &'a str)> {
        self.device.map(|d| (self.user, d))
    }
}

/// A child of an event that the viewer may see and that still carries its relation.
pub(crate) struct Child {
    pub pos: u64,
    pub rel_type: String,
    pub pdu: Pdu,
    pub stored: StoredPdu,
}

/// The children of `parent` the viewer may see, oldest first.
pub(crate) fn visible_children(
    gw: &Gateway,
    viewer: &UserId,
    parent: &Pdu,
) -> ApiResult<Vec<Child>> {
    let mut out = Vec::new();
    for (pos, entry) in index::children(&gw.db, &parent.event_id)? {
        let Some((pdu, stored)) = gw.rooms.get_visible_pdu(&entry.event_id)? else {
            continue;
        };
        // Redacted since it was indexed, or not in the parent's room: no longer a relation.
        let still = relation_of(&pdu)
            .is_some_and(|r| r.event_id == parent.event_id && r.rel_type == entry.rel_type);
        if !still || pdu.room_id != parent.room_id {
            continue;
        }
        if !gw.rooms.can_see(&pdu.room_id, viewer, stored.pos)? {
            continue;
        }
        out.push(Child {
            pos,
            rel_type: entry.rel_type,
            pdu,
            stored,
        });
    }
    Ok(out)
}

/// Whether `edit` is a valid replacement of `original` (stored as `original_stored`).
pub(crate) fn is_valid_edit(original: &Pdu, original_stored: &StoredPdu, edit: &Pdu) -> bool {
    if original.is_state() || edit.is_state() || original_stored.redacted_because.is_some() {
        return false;
    }
    if edit.sender != original.sender || edit.kind != original.kind {
        return false;
    }
    if relation_of(original).is_some_and(|r| r.rel_type == REPLACE) {
        return false;
    }
    let encrypted = edit.kind.to_string() == "m.room.encrypted";
    encrypted
        || edit
            .content_value()
            .get("m.new_content")
            .is_some_and(Value::is_object)
}

/// The newest valid edit of `original` among `children`.
pub(crate) fn latest_edit<'c>(
    original: &Pdu,
    original_stored: &StoredPdu,
    children: &'c [Child],
) -> Option<&'c Child> {
    children
        .iter()
        .filter(|c| c.rel_type == REPLACE && is_valid_edit(original, original_stored, &c.pdu))
        .max_by(|a, b| {
            (a.pdu.origin_server_ts, &a.pdu.event_id)
                .cmp(&(b.pdu.origin_server_ts, &b.pdu.event_id))
        })
}

/// The bundled aggregations of `pdu` for `viewer`, or `None` when there are none.
/// `nested` leaves out threads (for an event served inside another's aggregation).
pub fn aggregations(
    gw: &Gateway,
    viewer: Viewer<'_>,
    pdu: &Pdu,
    stored: &StoredPdu,
    nested: bool,
) -> ApiResult<Option<Value>> {
    let children = visible_children(gw, viewer.user, pdu)?;
    if children.is_empty() {
        return Ok(None);
    }
    let mut out = Map::new();
    if let Some(edit) = latest_edit(pdu, stored, &children) {
        out.insert(
            REPLACE.into(),
            edit.pdu.to_client_event(&edit.stored, viewer.pair()),
        );
    }
    if !nested {
        let replies: Vec<&Child> = children.iter().filter(|c| c.rel_type == THREAD).collect();
        if let Some(latest) = replies.iter().max_by_key(|c| c.pos) {
            let participated =
                pdu.sender == viewer.user || replies.iter().any(|c| c.pdu.sender == viewer.user);
            out.insert(
                THREAD.into(),
                json!({
                    "latest_event": serve(gw, viewer, &latest.pdu, &latest.stored, true)?,
                    "count": replies.len(),
                    "current_user_participated": participated,
                }),
            );
        }
    }
    let references: Vec<Value> = children
        .iter()
        .filter(|c| c.rel_type == REFERENCE)
        .map(|c| json!({ "event_id": c.pdu.event_id }))
        .collect();
    if !references.is_empty() {
        out.insert(REFERENCE.into(), json!({ "chunk": references }));
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

fn serve(
    gw: &Gateway,
    viewer: Viewer<'_>,
    pdu: &Pdu,
    stored: &StoredPdu,
    nested: bool,
) -> ApiResult<Value> {
    let mut ev = pdu.to_client_event(stored, viewer.pair());
    if gw.config.bundled_aggregations {
        if let Some(rel) = aggregations(gw, viewer, pdu, stored, nested)? {
            if let Some(unsigned) = ev.get_mut("unsigned").and_then(Value::as_object_mut) {
                unsigned.insert("m.relations".into(), rel);
            }
        }
    }
    Ok(ev)
}

/// `pdu` in the client-server format (`ClientEvent`) with its bundled aggregations.
pub fn client_event(
    gw: &Gateway,
    viewer: Viewer<'_>,
    pdu: &Pdu,
    stored: &StoredPdu,
) -> ApiResult<Value> {
    serve(gw, viewer, pdu, stored, false)
}

/// `pdu` as inside `/sync` rooms (no `room_id`) with its bundled aggregations.
pub fn sync_event(
    gw: &Gateway,
    viewer: Viewer<'_>,
    pdu: &Pdu,
    stored: &StoredPdu,
) -> ApiResult<Value> {
    let mut ev = client_event(gw, viewer, pdu, stored)?;
    if let Value::Object(map) = &mut ev {
        map.remove("room_id");
    }
    Ok(ev)
}
