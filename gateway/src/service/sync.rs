//! `/sync`: what changed for a user between two stream positions.
//!
//! A response covers the positions `(since, upto]`, where `upto` is read from the stream once,
//! before anything else; changes committed later are left for the next call (whose `since` is
//! `upto`), so nothing is skipped or sent twice. Long-polling waits on the stream's watch
//! channel, re-arming it before each read so a commit can never slip between read and wait.

use std::{collections::BTreeSet, time::Duration};

use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::{json, Map, Value};

use super::{
    filter::EventFilter,
    rooms::{Pdu, UserRoom},
    Gateway,
};
use crate::{error::ApiResult, service::caller::Caller};

/// Most to-device messages in one response (the rest follow in the next).
pub(crate) const TO_DEVICE_LIMIT: usize = 100;

/// Timeline length when the filter gives none.
const DEFAULT_TIMELINE_LIMIT: usize = 10;

/// What a sync call asks for, after filter resolution.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    /// Position of the previous response, or `None` for an initial sync.
    pub since: Option<u64>,
    /// Longest wait for something new.
    pub timeout: Duration,
    /// Send full room state even for incremental syncs.
    pub full_state: bool,
    /// The `filter` JSON (stored or inline), if any.
    pub filter: Option<Value>,
}

/// The filter parts sync uses.
struct SyncFilter {
    timeline: EventFilter,
    state: EventFilter,
    ephemeral: EventFilter,
    account_data: EventFilter,
    room_account_data: EventFilter,
    rooms: EventFilter,
    include_leave: bool,
}

impl SyncFilter {
    fn new(filter: Option<&Value>) -> Self {
        let room = filter.and_then(|f| f.get("room"));
        let part = |name: &str| EventFilter::from_json(room.and_then(|r| r.get(name)));
        Self {
            timeline: part("timeline"),
            state: part("state"),
            ephemeral: part("ephemeral"),
            account_data: EventFilter::from_json(filter.and_then(|f| f.get("account_data"))),
            room_account_data: part("account_data"),
            rooms: EventFilter::from_json(room),
            include_leave: room
                .and_then(|r| r.get("include_leave"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }
}

impl SyncFilter {
    /// Timeline length asked for by the filter, within 1..=100.
    fn timeline_limit(&self) -> usize {
        self.timeline
            .limit
            .unwrap_or(DEFAULT_TIMELINE_LIMIT)
            .clamp(1, 100)
    }
}

/// The `timeline` object of a room: events, `limited`, and a `prev_batch` just before the first
/// event (or `end` when there is none).
fn timeline_json(
    gw: &Gateway,
    events: &[(u64, Pdu, super::rooms::StoredPdu)],
    limited: bool,
    end: u64,
    viewer: Option<(&UserId, &str)>,
) -> ApiResult<Value> {
    let prev_batch = events.first().map(|(pos, _, _)| pos - 1).unwrap_or(end);
    let mut timeline = Vec::with_capacity(events.len());
    for (_, p, s) in events {
        timeline.push(match viewer {
            Some((user, device)) => {
                super::relations::sync_event(gw, super::relations::Viewer::new(user, device), p, s)?
            }
            None => p.to_sync_event(s, viewer),
        });
    }
    Ok(json!({ "events": timeline, "limited": limited, "prev_batch": prev_batch.to_string() }))
}

/// Runs one `/sync` call, waiting up to `req.timeout` for something new.
pub async fn sync(gw: &Gateway, caller: &Caller, req: SyncRequest) -> ApiResult<Value> {
    let filter = SyncFilter::new(req.filter.as_ref());
    let mut changes = gw.stream.subscribe();
    let deadline = tokio::time::Instant::now() + req.timeout;
    loop {
        changes.borrow_and_update();
        let upto = gw.stream.current();
        let since = req.since.unwrap_or(0);
        let pending_to_device =
            gw.to_device
                .has_undelivered(&caller.user_id, caller.device_id.as_str(), since)?;
        if upto > since || req.since.is_none() || req.full_state || pending_to_device {
            let (body, has_news) = build(gw, caller, &req, &filter, upto)?;
            if has_news || req.since.is_none() || req.full_state {
                return Ok(body);
            }
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let upto = gw.stream.current().max(req.since.unwrap_or(0));
    Ok(build(gw, caller, &req, &filter, upto)?.0)
}

/// Builds the response for `(since, upto]`; the flag says whether it holds anything new.
fn build(
    gw: &Gateway,
    caller: &Caller,
    req: &SyncRequest,
    filter: &SyncFilter,
    upto: u64,
) -> ApiResult<(Value, bool)> {
    let since = req.since.unwrap_or(0);
    let user = &caller.user_id;
    let mut join = Map::new();
    let mut invite = Map::new();
    let mut leave = Map::new();
    let (global_data, mut room_data) = gw.account_data.changes(user, since, upto)?;
    for (room, ur) in gw.rooms.user_rooms(user)? {
        if ur.pos > upto || !filter.rooms.allows_room(room.as_str()) {
            continue;
        }
        match ur.membership.as_str() {
            "join" => {
                let data = room_data.remove(&room).unwrap_or_default();
                if let Some(body) = joined_room(gw, caller, req, filter, &room, &ur, upto, data)? {
                    join.insert(room.to_string(), body);
                }
            }
            "invite" if ur.pos > since || req.since.is_none() => {
                invite.insert(room.to_string(), invited_room(gw, user, &room)?);
            }
            "leave" | "ban" if ur.pos > since && (req.since.is_some() || filter.include_leave) => {
                leave.insert(
                    room.to_string(),
                    left_room(gw, caller, filter, &room, &ur, since)?,
                );
            }
            _ => {}
        }
    }
    let account_data: Vec<Value> = global_data
        .into_iter()
        .filter(|e| {
            filter
                .account_data
                .allows(e["type"].as_str().unwrap_or_default(), None)
        })
        .collect();
    let (changed, left) = if req.since.is_some() {
        device_list_changes(gw, user, since, upto)?
    } else {
        Default::default()
    };
    let device = caller.device_id.as_str();
    let to_device = gw
        .to_device
        .take_for_sync(user, device, since, upto, TO_DEVICE_LIMIT)?;
    let has_news = !join.is_empty()
        || !invite.is_empty()
        || !leave.is_empty()
        || !account_data.is_empty()
        || !changed.is_empty()
        || !left.is_empty()
        || !to_device.is_empty();
    let body = json!({
        "next_batch": upto.to_string(),
        "rooms": { "join": join, "invite": invite, "leave": leave, "knock": {} },
        "account_data": { "events": account_data },
        "presence": { "events": [] },
        "to_device": { "events": to_device },
        "device_lists": { "changed": changed, "left": left },
        "device_one_time_keys_count": gw.keys.one_time_key_counts(user, device)?,
        "device_unused_fallback_key_types": gw.keys.unused_fallback_key_types(user, device)?,
    });
    Ok((body, has_news))
}

/// `device_lists`: users sharing a room with `user` (or `user`) whose device lists changed in
/// `(since, upto]` or who joined a shared room then; and users who stopped sharing any room.
pub fn device_list_changes(
    gw: &Gateway,
    user: &UserId,
    since: u64,
    upto: u64,
) -> ApiResult<(Vec<OwnedUserId>, Vec<OwnedUserId>)> {
    let mut changed = BTreeSet::new();
    for other in gw.keys.changed_users(since, upto)? {
        if other == user || gw.rooms.share_a_room(user, &other)? {
            changed.insert(other);
        }
    }
    let mut left = BTreeSet::new();
    for (room, ur) in gw.rooms.user_rooms(user)? {
        if ur.pos > upto {
            continue;
        }
        for (other, entry) in gw.rooms.members(&room)? {
            if other == user || entry.pos <= since || entry.pos > upto {
                continue;
            }
            match entry.membership.as_str() {
                "join" if ur.membership == "join" => {
                    changed.insert(other);
                }
                "leave" | "ban" if !gw.rooms.share_a_room(user, &other)? => {
                    left.insert(other);
                }
                _ => {}
            }
        }
    }
    // Someone who left and rejoined within the window is "changed", not "left".
    left.retain(|u| !changed.contains(u));
    Ok((changed.into_iter().collect(), left.into_iter().collect()))
}

/// Which part of a room's timeline a sync response covers.
pub(crate) struct Window {
    /// Position of the user's membership event.
    pub joined_at: u64,
    /// Exclusive lower bound.
    pub lower: u64,
    /// Inclusive upper bound.
    pub upto: u64,
    /// Most events returned.
    pub limit: usize,
}

/// Timeline events, oldest first, and whether older ones were left out.
pub(crate) type TimelineSlice = (Vec<(u64, Pdu, super::rooms::StoredPdu)>, bool);

/// Timeline events of `room` in `(lower, upto]`, newest `limit`, visible to the user.
pub(crate) fn timeline_events(
    gw: &Gateway,
    room: &RoomId,
    user: &UserId,
    w: Window,
    filter: &EventFilter,
) -> ApiResult<TimelineSlice> {
    let Window {
        joined_at,
        lower,
        upto,
        limit,
    } = w;
    let mut out = Vec::new();
    let mut cursor = upto;
    let mut limited = false;
    'scan: loop {
        let page = gw.rooms.timeline(room, cursor, true, limit + 1)?;
        if page.is_empty() {
            break;
        }
        for (pos, id) in page {
            cursor = pos - 1;
            if pos <= lower {
                break 'scan;
            }
            if pos < joined_at && !gw.rooms.can_see(room, user, pos)? {
                // Nothing older is visible either once history visibility hides it.
                limited = true;
                break 'scan;
            }
            let Some((pdu, stored)) = gw.rooms.get_pdu(&id)? else {
                continue;
            };
            if !filter.allows(pdu.kind.to_string().as_str(), Some(pdu.sender.as_str())) {
                continue;
            }
            if out.len() == limit {
                limited = true;
                break 'scan;
            }
            out.push((pos, pdu, stored));
        }
        if cursor == 0 {
            break;
        }
    }
    out.reverse();
    Ok((out, limited))
}

#[allow(clippy::too_many_arguments)]
fn joined_room(
    gw: &Gateway,
    caller: &Caller,
    req: &SyncRequest,
    filter: &SyncFilter,
    room: &RoomId,
    ur: &UserRoom,
    upto: u64,
    room_data: Vec<Value>,
) -> ApiResult<Option<Value>> {
    let user = &caller.user_id;
    let since = req.since.unwrap_or(0);
    let initial = req.since.is_none() || ur.pos > since;
    let viewer = Some((&**user, caller.device_id.as_str()));
    let limit = filter.timeline_limit();
    let window = Window {
        joined_at: ur.pos,
        lower: if req.since.is_none() { 0 } else { since },
        upto,
        limit,
    };
    let (events, limited) = timeline_events(gw, room, user, window, &filter.timeline)?;
    let timeline_ids: BTreeSet<_> = events.iter().map(|(_, p, _)| p.event_id.clone()).collect();

    let lazy = filter.state.lazy_load_members || filter.timeline.lazy_load_members;
    let senders: BTreeSet<String> = events
        .iter()
        .map(|(_, p, _)| p.sender.to_string())
        .chain([user.to_string()])
        .collect();
    let mut state = Vec::new();
    if initial || req.full_state || limited {
        let lower = if initial || req.full_state { 0 } else { since };
        for ((ty, sk), entry) in gw.rooms.current_state(room)? {
            if entry.pos <= lower || entry.pos > upto || timeline_ids.contains(&entry.event_id) {
                continue;
            }
            if lazy && ty == "m.room.member" && !senders.contains(&sk) {
                continue;
            }
            if !filter.state.allows(&ty, None) {
                continue;
            }
            if let Some((pdu, stored)) = gw.rooms.get_pdu(&entry.event_id)? {
                state.push(pdu.to_sync_event(&stored, viewer));
            }
        }
    } else if lazy {
        // Members of senders that were not sent before are needed to render the timeline.
        for (_, pdu, _) in &events {
            if pdu.kind.to_string() == "m.room.member" {
                continue;
            }
            if let Some(entry) = gw
                .rooms
                .state_entry(room, "m.room.member", pdu.sender.as_str())?
            {
                if entry.pos <= since
                    && !state
                        .iter()
                        .any(|s: &Value| s["state_key"] == json!(pdu.sender))
                {
                    if let Some((m, stored)) = gw.rooms.get_pdu(&entry.event_id)? {
                        state.push(m.to_sync_event(&stored, viewer));
                    }
                }
            }
        }
    }

    let mut ephemeral = Vec::new();
    if filter.ephemeral.allows("m.typing", None) {
        if let Some(t) = gw
            .ephemeral
            .typing_event(room, if initial { 0 } else { since })
        {
            ephemeral.push(t);
        }
    }
    if filter.ephemeral.allows("m.receipt", None) {
        if let Some(r) = gw
            .ephemeral
            .receipt_event(room, if initial { 0 } else { since }, user)?
        {
            ephemeral.push(r);
        }
    }
    let mut account_data: Vec<Value> = room_data
        .into_iter()
        .filter(|e| {
            filter
                .room_account_data
                .allows(e["type"].as_str().unwrap_or_default(), None)
        })
        .collect();
    if filter.room_account_data.allows("m.fully_read", None) {
        if let Some(fr) =
            gw.ephemeral
                .fully_read_event(room, user, if initial { 0 } else { since })?
        {
            account_data.push(fr);
        }
    }

    if !initial
        && events.is_empty()
        && state.is_empty()
        && ephemeral.is_empty()
        && account_data.is_empty()
    {
        return Ok(None);
    }
    let mut body = json!({
        "timeline": timeline_json(gw, &events, limited, upto, viewer)?,
        "state": { "events": state },
        "ephemeral": { "events": ephemeral },
        "account_data": { "events": account_data },
        "summary": summary(gw, room, user)?,
    });
    if filter.timeline.unread_thread_notifications {
        let split = super::relations::unread::thread_counts(gw, room, user, upto)?;
        body["unread_notifications"] = split.main;
        body["unread_thread_notifications"] = split.threads;
    } else {
        body["unread_notifications"] = unread_counts(gw, room, user, upto)?;
    }
    Ok(Some(body))
}

/// `m.heroes` and member counts, which clients use to name rooms without a name.
pub(crate) fn summary(gw: &Gateway, room: &RoomId, user: &UserId) -> ApiResult<Value> {
    let members = gw.rooms.members(room)?;
    let joined = members
        .iter()
        .filter(|(_, m)| m.membership == "join")
        .count();
    let invited = members
        .iter()
        .filter(|(_, m)| m.membership == "invite")
        .count();
    let heroes: Vec<&OwnedUserId> = members
        .iter()
        .filter(|(u, m)| u != user && (m.membership == "join" || m.membership == "invite"))
        .map(|(u, _)| u)
        .take(5)
        .collect();
    Ok(
        json!({ "m.heroes": heroes, "m.joined_member_count": joined, "m.invited_member_count": invited }),
    )
}

/// Messages from others after the user's own read receipt (counted up to 99).
pub(crate) fn unread_counts(
    gw: &Gateway,
    room: &RoomId,
    user: &UserId,
    upto: u64,
) -> ApiResult<Value> {
    let read_pos = match gw.ephemeral.own_receipt(room, user)? {
        Some(r) => gw
            .rooms
            .get_pdu(&r.event_id)?
            .map(|(_, s)| s.pos)
            .unwrap_or(0),
        None => 0,
    };
    let key = (room.to_owned(), user.to_owned());
    let cached = gw.unread.get(&key, read_pos, upto);
    // Counted by the user's push rules (reactions, edits, notices do not count; mentions
    // highlight). Only events after the cached position are evaluated.
    let floor = cached.map_or(read_pos, |c| c.upto.max(read_pos));
    let mut eval = None;
    let (mut count, mut highlights) = (0u64, 0u64);
    let mut own_event_seen = false;
    for (pos, id) in gw.rooms.timeline(room, upto, true, UNREAD_SCAN)? {
        if pos <= floor {
            break;
        }
        if let Some((pdu, stored)) = gw.rooms.get_pdu(&id)? {
            if pdu.sender == user {
                own_event_seen = true;
                break;
            }
            if eval.is_none() {
                eval = Some(super::push_eval::PushEvaluator::for_room(gw, user, room)?);
            }
            if let Some(eval) = &eval {
                let verdict = eval.evaluate(&stored.json);
                count += u64::from(verdict.notify);
                highlights += u64::from(verdict.highlight);
            }
        }
    }
    if let (Some(c), false) = (cached, own_event_seen) {
        count += c.count;
        highlights += c.highlights;
    }
    gw.unread.put(
        key,
        UnreadCount {
            read_pos,
            upto,
            count,
            highlights,
        },
    );
    Ok(json!({ "notification_count": count.min(99), "highlight_count": highlights.min(99) }))
}

/// Most events scanned back when counting unread messages from scratch.
const UNREAD_SCAN: usize = 100;

/// Unread counts of a user in a room as of a stream position.
#[derive(Debug, Clone, Copy)]
pub struct UnreadCount {
    /// Position of the user's read receipt the counts start after.
    pub read_pos: u64,
    /// Position the counts run up to.
    pub upto: u64,
    /// Notifying events in `(read_pos, upto]`.
    pub count: u64,
    /// Highlighting events in `(read_pos, upto]`.
    pub highlights: u64,
}

/// Memory-only cache of unread counts, so each sync evaluates push rules only on new events.
#[derive(Default)]
pub struct UnreadCache {
    entries:
        std::sync::Mutex<std::collections::HashMap<(ruma::OwnedRoomId, OwnedUserId), UnreadCount>>,
}

impl UnreadCache {
    /// The cached counts, if they start at `read_pos` and do not run past `upto`.
    fn get(
        &self,
        key: &(ruma::OwnedRoomId, OwnedUserId),
        read_pos: u64,
        upto: u64,
    ) -> Option<UnreadCount> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .copied()
            .filter(|c| c.read_pos == read_pos && c.upto <= upto)
    }

    /// Drops every cached count of `room` (the room was purged).
    pub fn forget_room(&self, room: &ruma::RoomId) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(r, _), _| r != room);
    }

    fn put(&self, key: (ruma::OwnedRoomId, OwnedUserId), value: UnreadCount) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() > 100_000 {
            entries.clear();
        }
        entries.insert(key, value);
    }
}

/// Stripped state shown with an invite of `user`.
pub(crate) fn invited_room(gw: &Gateway, user: &UserId, room: &RoomId) -> ApiResult<Value> {
    // An invite into a room on other gateways only: the state the inviter sent.
    if gw.rooms.meta(room)?.is_none() {
        if let Some(invite) = gw.rooms.remote_invite(user, room)? {
            return Ok(json!({ "invite_state": { "events": invite.invite_state } }));
        }
    }
    let mut events = Vec::new();
    for ((ty, _), entry) in gw.rooms.current_state(room)? {
        let shown = matches!(
            ty.as_str(),
            "m.room.create"
                | "m.room.join_rules"
                | "m.room.name"
                | "m.room.avatar"
                | "m.room.canonical_alias"
                | "m.room.encryption"
                | "m.room.topic"
                | "m.room.member"
        );
        if !shown {
            continue;
        }
        if let Some((pdu, _)) = gw.rooms.get_pdu(&entry.event_id)? {
            if ty == "m.room.member"
                && pdu.content_value().get("membership") != Some(&json!("invite"))
            {
                continue;
            }
            events.push(pdu.to_stripped_state());
        }
    }
    Ok(json!({ "invite_state": { "events": events } }))
}

/// The end of the timeline of a room the user left, up to their leave.
fn left_room(
    gw: &Gateway,
    caller: &Caller,
    filter: &SyncFilter,
    room: &RoomId,
    ur: &UserRoom,
    since: u64,
) -> ApiResult<Value> {
    let limit = filter.timeline_limit();
    let window = Window {
        joined_at: ur.pos,
        lower: since,
        upto: ur.pos,
        limit,
    };
    let (events, limited) = timeline_events(gw, room, &caller.user_id, window, &filter.timeline)?;
    let viewer = Some((&*caller.user_id, caller.device_id.as_str()));
    Ok(json!({
        "timeline": timeline_json(gw, &events, limited, ur.pos, viewer)?,
        "state": { "events": [] },
        "account_data": { "events": [] },
    }))
}
