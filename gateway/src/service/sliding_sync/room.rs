//! What sliding sync says about one room: the facts lists sort and filter by, and the room
//! object of a response (name, counts, required state, timeline, unread counts).

use std::collections::BTreeSet;

use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::{json, Map, Value};

use super::conn::SentRoom;
use super::request::RoomConfig;
use crate::error::ApiResult;
use crate::service::caller::Caller;
use crate::service::filter::EventFilter;
use crate::service::rooms::UserRoom;
use crate::service::sync::{invited_room, timeline_events, unread_counts, Window};
use crate::service::Gateway;

/// Event types that move a room up the list (as Synapse's defaults): messages and the like,
/// not state changes, reactions or receipts.
const BUMP_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "m.beacon_info",
];

/// Events looked at, newest first, to find a room's bump stamp.
const BUMP_SCAN: usize = 50;

/// Default timeline length when a list or subscription gives none.
const DEFAULT_TIMELINE_LIMIT: u64 = 1;

/// Most timeline events per room in one response.
const MAX_TIMELINE_LIMIT: u64 = 100;

/// Facts about a room the user is in, invited to or left, as lists need them.
#[derive(Debug, Clone)]
pub struct RoomFacts {
    /// The user's membership entry.
    pub membership: UserRoom,
    /// Position of the newest bump event the user may see (the list's sort key).
    pub bump_stamp: u64,
    /// Marked as a direct chat in `m.direct`, or invited to as one.
    pub is_dm: bool,
    /// Has `m.room.encryption`.
    pub is_encrypted: bool,
    /// `m.room.create`'s `type` (e.g. `m.space`).
    pub room_type: Option<String>,
}

/// Rooms listed as direct chats in the user's `m.direct` account data.
pub fn direct_rooms(gw: &Gateway, user: &UserId) -> ApiResult<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    if let Some(Value::Object(map)) = gw.account_data.get(user, None, "m.direct")? {
        for rooms in map.values() {
            for r in rooms.as_array().into_iter().flatten() {
                if let Some(r) = r.as_str() {
                    out.insert(r.to_owned());
                }
            }
        }
    }
    Ok(out)
}

/// Gathers a room's facts as of `upto`.
pub fn facts(
    gw: &Gateway,
    room: &RoomId,
    ur: &UserRoom,
    direct: &BTreeSet<String>,
    upto: u64,
) -> ApiResult<RoomFacts> {
    let visible_upto = if ur.membership == "join" {
        upto
    } else {
        ur.pos
    };
    let mut bump_stamp = ur.pos;
    if ur.membership != "invite" {
        for (pos, id) in gw.rooms.timeline(room, visible_upto, true, BUMP_SCAN)? {
            if let Some((pdu, _)) = gw.rooms.get_pdu(&id)? {
                if BUMP_TYPES.contains(&pdu.kind.to_string().as_str()) {
                    bump_stamp = bump_stamp.max(pos);
                    break;
                }
            }
        }
    }
    let invited_as_dm = ur.membership == "invite"
        && gw
            .rooms
            .get_pdu(&ur.event_id)?
            .is_some_and(|(p, _)| p.content_value().get("is_direct") == Some(&json!(true)));
    let room_type = gw
        .rooms
        .state_content(room, "m.room.create", "")?
        .and_then(|c| c.get("type").and_then(Value::as_str).map(str::to_owned));
    Ok(RoomFacts {
        membership: ur.clone(),
        bump_stamp,
        is_dm: invited_as_dm || direct.contains(room.as_str()),
        is_encrypted: gw
            .rooms
            .state_entry(room, "m.room.encryption", "")?
            .is_some(),
        room_type,
    })
}

/// Whether `required_state` asks for the state event `(kind, key)`.
fn wanted(
    required: &[(String, String)],
    kind: &str,
    key: &str,
    user: &UserId,
    senders: &BTreeSet<String>,
) -> bool {
    required.iter().any(|(t, k)| {
        (t == "*" || t == kind)
            && (k == "*"
                || k == key
                || (k == "$ME" && key == user.as_str())
                || (k == "$LAZY" && kind == "m.room.member" && senders.contains(key)))
    })
}

/// The room object of a response and what it sent, or `None` when nothing changed since
/// `prev` (the room as last sent on this connection).
pub fn payload(
    gw: &Gateway,
    caller: &Caller,
    room: &RoomId,
    facts: &RoomFacts,
    config: &RoomConfig,
    prev: Option<&SentRoom>,
    upto: u64,
) -> ApiResult<Option<(Value, SentRoom)>> {
    let user = &caller.user_id;
    let ur = &facts.membership;
    let membership = (ur.membership.clone(), ur.pos);
    if ur.membership == "invite" {
        if prev.is_some_and(|p| p.membership == membership) {
            return Ok(None);
        }
        let invite = invited_room(gw, user, room)?;
        let body = json!({
            "initial": true,
            "invite_state": invite["invite_state"]["events"],
            "is_dm": facts.is_dm,
            "bump_stamp": facts.bump_stamp,
        });
        let sent = SentRoom {
            upto,
            unread: (0, 0),
            membership,
        };
        return Ok(Some((body, sent)));
    }
    let initial = prev.is_none_or(|p| p.membership.0 == "invite");
    let lower = match prev {
        Some(p) if !initial => p.upto,
        _ => 0,
    };
    // A room the user left is shown up to the leave.
    let room_upto = if ur.membership == "join" {
        upto
    } else {
        ur.pos.min(upto)
    };
    let limit = config
        .timeline_limit
        .unwrap_or(DEFAULT_TIMELINE_LIMIT)
        .min(MAX_TIMELINE_LIMIT) as usize;
    let window = Window {
        joined_at: ur.pos,
        lower,
        upto: room_upto,
        limit,
    };
    let (events, limited) = if limit == 0 {
        (Vec::new(), true)
    } else {
        timeline_events(gw, room, user, window, &EventFilter::default())?
    };
    let viewer = Some((&**user, caller.device_id.as_str()));
    let senders: BTreeSet<String> = events
        .iter()
        .map(|(_, p, _)| p.sender.to_string())
        .collect();
    let in_timeline: BTreeSet<_> = events.iter().map(|(_, p, _)| p.event_id.clone()).collect();
    let required = config.required_state.clone().unwrap_or_default();
    let mut state = Vec::new();
    for ((kind, key), entry) in gw.rooms.current_state(room)? {
        if entry.pos > room_upto || in_timeline.contains(&entry.event_id) {
            continue;
        }
        if !wanted(&required, &kind, &key, user, &senders) {
            continue;
        }
        // Initial: everything asked for. Later: what changed, and the members of this
        // response's senders (they may never have been sent on this connection).
        let lazy_sender = kind == "m.room.member" && senders.contains(&key);
        if initial || entry.pos > lower || lazy_sender {
            if let Some((pdu, stored)) = gw.rooms.get_pdu(&entry.event_id)? {
                state.push(pdu.to_sync_event(&stored, viewer));
            }
        }
    }
    let unread = unread_counts(gw, room, user, room_upto)?;
    let counts = (
        unread["notification_count"].as_u64().unwrap_or(0),
        unread["highlight_count"].as_u64().unwrap_or(0),
    );
    let membership_changed = prev.is_some_and(|p| p.membership != membership);
    let unread_changed = prev.is_some_and(|p| p.unread != counts);
    if !initial && events.is_empty() && state.is_empty() && !membership_changed && !unread_changed {
        return Ok(None);
    }
    let mut body = Map::new();
    if initial {
        body.insert("initial".into(), json!(true));
    }
    describe(gw, room, user, facts, &mut body)?;
    let mut timeline: Vec<Value> = Vec::with_capacity(events.len());
    for (_, p, s) in &events {
        timeline.push(match viewer {
            Some((u, d)) => crate::service::relations::sync_event(
                gw,
                crate::service::relations::Viewer::new(u, d),
                p,
                s,
            )?,
            None => p.to_sync_event(s, viewer),
        });
    }
    let prev_batch = events
        .first()
        .map(|(pos, _, _)| pos - 1)
        .unwrap_or(room_upto);
    body.insert(
        "num_live".into(),
        json!(if initial { 0 } else { events.len() }),
    );
    body.insert("timeline".into(), Value::Array(timeline));
    body.insert("required_state".into(), Value::Array(state));
    body.insert("prev_batch".into(), json!(prev_batch.to_string()));
    body.insert("limited".into(), json!(limited));
    body.insert("notification_count".into(), json!(counts.0));
    body.insert("highlight_count".into(), json!(counts.1));
    let sent = SentRoom {
        upto: room_upto,
        unread: counts,
        membership,
    };
    Ok(Some((Value::Object(body), sent)))
}

/// Name, avatar, direct-chat flag, member counts, heroes and bump stamp.
fn describe(
    gw: &Gateway,
    room: &RoomId,
    user: &UserId,
    facts: &RoomFacts,
    body: &mut Map<String, Value>,
) -> ApiResult<()> {
    let name = gw
        .rooms
        .state_content(room, "m.room.name", "")?
        .and_then(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
        .filter(|n| !n.is_empty());
    if let Some(url) = gw
        .rooms
        .state_content(room, "m.room.avatar", "")?
        .and_then(|c| c.get("url").and_then(Value::as_str).map(str::to_owned))
    {
        body.insert("avatar".into(), json!(url));
    }
    let members = gw.rooms.members(room)?;
    let count = |m: &str| members.iter().filter(|(_, e)| e.membership == m).count();
    body.insert("joined_count".into(), json!(count("join")));
    body.insert("invited_count".into(), json!(count("invite")));
    body.insert("is_dm".into(), json!(facts.is_dm));
    body.insert("bump_stamp".into(), json!(facts.bump_stamp));
    match name {
        Some(n) => {
            body.insert("name".into(), json!(n));
        }
        None => {
            let heroes: Vec<&OwnedUserId> = members
                .iter()
                .filter(|(u, e)| u != user && (e.membership == "join" || e.membership == "invite"))
                .map(|(u, _)| u)
                .take(5)
                .collect();
            let mut out = Vec::new();
            for h in heroes {
                let content = gw
                    .rooms
                    .state_content(room, "m.room.member", h.as_str())?
                    .unwrap_or(Value::Null);
                let mut hero = Map::new();
                hero.insert("user_id".into(), json!(h));
                if let Some(d) = content.get("displayname").and_then(Value::as_str) {
                    hero.insert("displayname".into(), json!(d));
                }
                if let Some(a) = content.get("avatar_url").and_then(Value::as_str) {
                    hero.insert("avatar_url".into(), json!(a));
                }
                out.push(Value::Object(hero));
            }
            body.insert("heroes".into(), Value::Array(out));
        }
    }
    Ok(())
}
