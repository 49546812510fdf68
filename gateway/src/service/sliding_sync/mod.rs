//! Simplified sliding sync (MSC4186), which Element X and the matrix-rust-sdk room list use.
//!
//! A request names lists (ranges over the user's rooms sorted by recency, with filters),
//! room subscriptions and extensions; the response says how many rooms each list holds and
//! sends, for the rooms in range or subscribed, what changed since the connection's `pos`:
//! everything asked for the first time a room is sent (`initial`), later only new timeline
//! events, changed required state and changed unread counts. Extensions carry to-device
//! messages, device-list changes and key counts, account data, receipts and typing.
//!
//! Like `/v3/sync`, a response covers the stream up to one position read once (`upto`), and
//! long-polls on the stream when there is nothing to send.

mod conn;
mod request;
mod room;

pub use conn::Connections;
pub use request::SlidingRequest;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use http::StatusCode;
use ruma::OwnedRoomId;
use serde_json::{json, Map, Value};

use self::conn::{ConnKey, Params, SentRoom, Snapshot};
use self::request::{ListFilters, RoomConfig};
use self::room::{direct_rooms, facts, payload, RoomFacts};
use super::sync::{device_list_changes, TO_DEVICE_LIMIT};
use super::Gateway;
use crate::error::{ApiError, ApiResult};
use crate::service::caller::Caller;

/// What a response is about to send, before its `pos` is known.
struct Built {
    body: Map<String, Value>,
    snapshot: Snapshot,
    news: bool,
}

/// Runs one sliding sync request: `pos` from the query (`None`: a new connection), waiting
/// up to `timeout` for something to send.
pub async fn sliding_sync(
    gw: &Gateway,
    caller: &Caller,
    pos: Option<String>,
    timeout: Duration,
    req: SlidingRequest,
) -> ApiResult<Value> {
    let key: ConnKey = (
        caller.user_id.clone(),
        caller.device_id.to_string(),
        req.conn_id.clone().unwrap_or_default(),
    );
    let (params, base) = gw.sliding.begin(&key, pos.as_deref(), &req).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "M_UNKNOWN_POS",
            "Unknown position: start a new connection",
        )
    })?;
    let mut changes = gw.stream.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    let built = loop {
        changes.borrow_and_update();
        let upto = gw.stream.current().max(base.upto);
        let built = build(gw, caller, &params, &base, &req, upto)?;
        if built.news || pos.is_none() {
            break built;
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    break built;
                }
            }
            _ = tokio::time::sleep_until(deadline) => break built,
        }
    };
    let Built {
        mut body, snapshot, ..
    } = built;
    let pos = gw.sliding.commit(&key, snapshot);
    body.insert("pos".into(), json!(pos));
    if let Some(t) = &req.txn_id {
        body.insert("txn_id".into(), json!(t));
    }
    Ok(Value::Object(body))
}

/// Whether a room belongs to a list with these filters.
fn in_list(f: &ListFilters, facts: &RoomFacts) -> bool {
    let invite = facts.membership.membership == "invite";
    f.is_invite.is_none_or(|want| want == invite)
        && f.is_dm.is_none_or(|want| want == facts.is_dm)
        && f.is_encrypted.is_none_or(|want| want == facts.is_encrypted)
        && (f.room_types.is_empty() || f.room_types.contains(&facts.room_type))
        && !f.not_room_types.contains(&facts.room_type)
}

/// Adds `room` to the rooms to send, with what `config` asks for on top of what other lists or
/// subscriptions asked for it.
fn want(wanted: &mut BTreeMap<OwnedRoomId, RoomConfig>, room: &OwnedRoomId, config: &RoomConfig) {
    let merged = wanted
        .get(room)
        .map_or_else(|| config.clone(), |c| c.union(config));
    wanted.insert(room.clone(), merged);
}

/// Builds the response for the stream up to `upto` against what `base` had sent.
fn build(
    gw: &Gateway,
    caller: &Caller,
    params: &Params,
    base: &Snapshot,
    req: &SlidingRequest,
    upto: u64,
) -> ApiResult<Built> {
    let user = &caller.user_id;
    let direct = direct_rooms(gw, user)?;
    // The rooms a list may hold: joined and invited ones, and rooms left since they were
    // last sent on this connection (so the client sees the leave).
    let mut all: Vec<(OwnedRoomId, RoomFacts)> = Vec::new();
    // An extensions-only connection (Element X's encryption sync) needs no room facts.
    let needs_rooms = !params.lists.is_empty() || !params.subscriptions.is_empty();
    let memberships = if needs_rooms {
        gw.rooms.user_rooms(user)?
    } else {
        Vec::new()
    };
    for (room, ur) in memberships {
        if ur.pos > upto {
            continue;
        }
        let keep = match ur.membership.as_str() {
            "join" | "invite" => true,
            _ => base
                .rooms
                .get(&room)
                .is_some_and(|s| s.membership != (ur.membership.clone(), ur.pos)),
        };
        if keep {
            let f = facts(gw, &room, &ur, &direct, upto)?;
            all.push((room, f));
        }
    }
    all.sort_by(|a, b| b.1.bump_stamp.cmp(&a.1.bump_stamp).then(a.0.cmp(&b.0)));

    let mut wanted: BTreeMap<OwnedRoomId, RoomConfig> = BTreeMap::new();
    let mut lists = Map::new();
    let mut counts = BTreeMap::new();
    for (name, (state, ranges)) in &params.lists {
        let members: Vec<&(OwnedRoomId, RoomFacts)> = all
            .iter()
            .filter(|(_, f)| in_list(&state.filters, f))
            .collect();
        for (i, (room, _)) in members.iter().enumerate() {
            let i = i as u64;
            if ranges.iter().any(|(lo, hi)| *lo <= i && i <= *hi) {
                want(&mut wanted, room, &state.config);
            }
        }
        lists.insert(name.clone(), json!({ "count": members.len() }));
        counts.insert(name.clone(), members.len());
    }
    for (room, config) in &params.subscriptions {
        if all.iter().any(|(r, _)| r == room) {
            want(&mut wanted, room, config);
        }
    }

    let mut snapshot = Snapshot {
        upto,
        rooms: base.rooms.clone(),
        counts: counts.clone(),
    };
    let mut rooms = Map::new();
    for (room, f) in &all {
        let Some(config) = wanted.get(room) else {
            continue;
        };
        let prev = base.rooms.get(room);
        if let Some((body, sent)) = payload(gw, caller, room, f, config, prev, upto)? {
            rooms.insert(room.to_string(), body);
            snapshot.rooms.insert(room.clone(), sent);
        }
    }
    // Rooms left and now sent for the last time are forgotten, so a later re-join is initial.
    snapshot
        .rooms
        .retain(|_, s: &mut SentRoom| s.membership.0 == "join" || s.membership.0 == "invite");

    let room_ids: BTreeSet<OwnedRoomId> = wanted.keys().cloned().collect();
    let (extensions, ext_news) = extensions(gw, caller, params, base, req, upto, &room_ids)?;
    let news = !rooms.is_empty() || counts != base.counts || ext_news;
    let mut body = Map::new();
    body.insert("lists".into(), Value::Object(lists));
    body.insert("rooms".into(), Value::Object(rooms));
    body.insert("extensions".into(), Value::Object(extensions));
    Ok(Built {
        body,
        snapshot,
        news,
    })
}

/// The extensions' part of a response; the flag says whether it carries anything new.
fn extensions(
    gw: &Gateway,
    caller: &Caller,
    params: &Params,
    base: &Snapshot,
    req: &SlidingRequest,
    upto: u64,
    rooms: &BTreeSet<OwnedRoomId>,
) -> ApiResult<(Map<String, Value>, bool)> {
    let user = &caller.user_id;
    let device = caller.device_id.as_str();
    let since = base.upto;
    let initial = since == 0;
    let on = params.extensions;
    let mut out = Map::new();
    let mut news = false;
    if on.to_device {
        let t = req.extensions.to_device.as_ref();
        let since = t
            .and_then(|t| t.since.as_deref())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        let limit = t
            .and_then(|t| t.limit)
            .map_or(TO_DEVICE_LIMIT, |l| l.clamp(1, 1000) as usize);
        let events = gw
            .to_device
            .take_for_sync(user, device, since, upto, limit)?;
        news |= !events.is_empty();
        out.insert(
            "to_device".into(),
            json!({ "next_batch": upto.to_string(), "events": events }),
        );
    }
    if on.e2ee {
        let (changed, left) = if initial {
            Default::default()
        } else {
            device_list_changes(gw, user, since, upto)?
        };
        news |= !changed.is_empty() || !left.is_empty();
        out.insert(
            "e2ee".into(),
            json!({
                "device_lists": { "changed": changed, "left": left },
                "device_one_time_keys_count": gw.keys.one_time_key_counts(user, device)?,
                "device_unused_fallback_key_types":
                    gw.keys.unused_fallback_key_types(user, device)?,
            }),
        );
    }
    if on.account_data {
        let (global, per_room) = gw.account_data.changes(user, since, upto)?;
        news |= !global.is_empty() || !per_room.is_empty();
        let per_room: Map<String, Value> = per_room
            .into_iter()
            .map(|(r, events)| (r.to_string(), Value::Array(events)))
            .collect();
        out.insert(
            "account_data".into(),
            json!({ "global": global, "rooms": per_room }),
        );
    }
    if on.receipts {
        let mut by_room = Map::new();
        for room in rooms {
            if let Some(ev) = gw.ephemeral.receipt_event(room, since, user)? {
                by_room.insert(room.to_string(), ev);
            }
        }
        news |= !by_room.is_empty();
        out.insert("receipts".into(), json!({ "rooms": by_room }));
    }
    if on.typing {
        let mut by_room = Map::new();
        for room in rooms {
            if let Some(ev) = gw.ephemeral.typing_event(room, since) {
                by_room.insert(room.to_string(), ev);
            }
        }
        news |= !by_room.is_empty();
        out.insert("typing".into(), json!({ "rooms": by_room }));
    }
    Ok((out, news))
}

#[cfg(test)]
mod tests;
