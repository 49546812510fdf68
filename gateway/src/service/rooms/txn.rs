//! Building, signing, authorising and appending events to one room.

use std::{collections::HashMap, sync::Arc};

use ruma::{
    canonical_json::{redact, RedactedBecause},
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
    signatures::{hash_and_sign_event, reference_hash},
    state_res, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, RoomId,
    RoomVersionId, UserId,
};
use serde_json::{json, value::to_raw_value, Value};
use storage::{key, u64_be, Batch};

use super::{
    rules_for,
    state::{self, StateMap},
    tables::{Heads, MemberEntry, RoomMeta, UserRoom},
    to_canonical_object, EventStatus, Pdu, Rooms, StateEntry, StoredPdu,
};
use crate::{
    error::{ApiError, ApiResult},
    service::stream::Positions,
};

/// An open write transaction on one room (see [`Rooms::write`]).
pub struct RoomTxn<'a> {
    rooms: &'a Rooms,
    room_id: OwnedRoomId,
    version: RoomVersionId,
    rules: RoomVersionRules,
    positions: &'a mut Positions,
    batch: &'a mut Batch,
    /// Current-state entries this transaction changed (`None`: removed).
    state: HashMap<(String, String), Option<StateEntry>>,
    pdus: HashMap<OwnedEventId, (Pdu, StoredPdu)>,
    heads: Heads,
    heads_dirty: bool,
    groups: HashMap<u64, (Arc<StateMap>, u32)>,
    last_group: u64,
    appended: Vec<Pdu>,
}

/// Most `prev_events` a new local event names (the spec's limit).
const MAX_PREV_EVENTS: usize = 20;

impl<'a> RoomTxn<'a> {
    pub(super) fn open(
        rooms: &'a Rooms,
        room_id: &RoomId,
        new_version: Option<RoomVersionId>,
        positions: &'a mut Positions,
        batch: &'a mut Batch,
    ) -> ApiResult<Self> {
        let meta = rooms.meta(room_id)?;
        let version = match (meta, new_version) {
            (Some(m), None) => m.version,
            (None, Some(v)) => {
                // A blocked id cannot be created again here.
                rooms.refuse_blocked(room_id)?;
                v
            }
            (Some(_), Some(_)) => return Err(ApiError::room_in_use("Room already exists")),
            (None, None) => return Err(ApiError::not_found("Unknown room")),
        };
        let rules = rules_for(&version)?;
        let heads = rooms
            .t
            .heads
            .get(&rooms.db, room_id.as_bytes())?
            .unwrap_or_default();
        let last_group = rooms.groups.last_id(&rooms.db)?;
        Ok(Self {
            rooms,
            room_id: room_id.to_owned(),
            version,
            rules,
            positions,
            batch,
            state: HashMap::new(),
            pdus: HashMap::new(),
            heads,
            heads_dirty: false,
            groups: HashMap::new(),
            last_group,
            appended: Vec::new(),
        })
    }

    /// Hands out the next stream position.
    pub(super) fn positions_next(&mut self) -> u64 {
        self.positions.next()
    }

    /// The write batch (for tables other modules keep in the same commit).
    pub(super) fn batch(&mut self) -> &mut Batch {
        self.batch
    }

    /// Records an event stored by this transaction (returned by [`Rooms::write`]).
    pub(super) fn note_appended(&mut self, pdu: &Pdu) {
        self.appended.push(pdu.clone());
    }

    /// Records the room as known (a room joined through another gateway has its create event
    /// as an outlier, so [`Self::index`] does not see it).
    pub(super) fn ensure_meta(&mut self) -> ApiResult<()> {
        self.rooms.t.meta.put(
            self.batch,
            self.room_id.as_bytes(),
            &RoomMeta {
                version: self.version.clone(),
            },
        )?;
        Ok(())
    }

    /// The room version.
    pub fn version(&self) -> &RoomVersionId {
        &self.version
    }

    /// The room's forward extremities.
    pub fn heads(&self) -> &[OwnedEventId] {
        &self.heads.events
    }

    /// The state of a group (including groups written by this transaction).
    pub(super) fn group_state(&self, id: u64) -> ApiResult<(Arc<StateMap>, u32)> {
        self.rooms.groups.load(&self.rooms.db, id, &self.groups)
    }

    /// Writes a new state group holding `state`, a delta over `base` where that pays.
    pub(super) fn new_group(&mut self, base: Option<u64>, state: StateMap) -> ApiResult<u64> {
        let base = match base {
            Some(b) => Some((b, self.group_state(b)?)),
            None => None,
        };
        self.last_group += 1;
        let id = self.last_group;
        let parsed = self.rooms.groups.write(
            self.batch,
            id,
            base.as_ref().map(|(b, (m, c))| (*b, &**m, *c)),
            state,
        )?;
        self.groups.insert(id, parsed);
        Ok(id)
    }

    /// The group of the room's current state. Rooms stored before state groups existed get
    /// one made from their current state table.
    pub(super) fn current_group(&mut self) -> ApiResult<Option<u64>> {
        if let Some(g) = self.heads.state_group {
            return Ok(Some(g));
        }
        if self.heads.events.is_empty() {
            return Ok(None);
        }
        let state: StateMap = self
            .rooms
            .current_state(&self.room_id)?
            .into_iter()
            .map(|(k, e)| (k, e.event_id))
            .collect();
        let id = self.new_group(None, state)?;
        self.heads.state_group = Some(id);
        self.heads_dirty = true;
        Ok(Some(id))
    }

    /// The state after a stored event of this room, if known (not for outliers).
    pub(super) fn state_after(&mut self, id: &EventId) -> ApiResult<Option<Arc<StateMap>>> {
        let Some((_, stored)) = self.pdu(id)? else {
            return Ok(None);
        };
        match stored.state_after {
            Some(g) => Ok(Some(self.group_state(g)?.0)),
            // An event stored before state groups existed: only the newest can still be a
            // parent, and its state is the current state.
            None if self.heads.events.iter().any(|h| h == id) && stored.status.is_accepted() => {
                match self.current_group()? {
                    Some(g) => Ok(Some(self.group_state(g)?.0)),
                    None => Ok(None),
                }
            }
            None => Ok(None),
        }
    }

    /// Resolves several states of this room into one (state resolution v2).
    pub(super) fn resolve(&self, states: &[Arc<StateMap>]) -> ApiResult<StateMap> {
        let fetch = |id: &EventId| self.pdu(id).ok().flatten().map(|(p, _)| p);
        state::resolve(&self.rules, states, &fetch)
    }

    /// The room's id.
    pub fn room_id(&self) -> &RoomId {
        &self.room_id
    }

    /// The room version's rules.
    pub fn rules(&self) -> &RoomVersionRules {
        &self.rules
    }

    /// The state entry for `(type, state_key)`, including this transaction's changes.
    pub fn state_entry(&self, ty: &str, sk: &str) -> ApiResult<Option<StateEntry>> {
        if let Some(e) = self.state.get(&(ty.to_owned(), sk.to_owned())) {
            return Ok(e.clone());
        }
        self.rooms.state_entry(&self.room_id, ty, sk)
    }

    /// A PDU by id, including this transaction's events.
    pub fn pdu(&self, id: &EventId) -> ApiResult<Option<(Pdu, StoredPdu)>> {
        if let Some(p) = self.pdus.get(id) {
            return Ok(Some(p.clone()));
        }
        self.rooms.get_pdu(id)
    }

    /// The current state event for `(type, state_key)`.
    pub fn state_pdu(&self, ty: &str, sk: &str) -> ApiResult<Option<Pdu>> {
        match self.state_entry(ty, sk)? {
            Some(e) => Ok(self.pdu(&e.event_id)?.map(|(p, _)| p)),
            None => Ok(None),
        }
    }

    /// The content of the current state event for `(type, state_key)`.
    pub fn state_content(&self, ty: &str, sk: &str) -> ApiResult<Option<Value>> {
        Ok(self.state_pdu(ty, sk)?.map(|p| p.content_value()))
    }

    /// A user's membership, including this transaction's changes.
    pub fn membership(&self, user: &UserId) -> ApiResult<Option<String>> {
        Ok(self
            .state_content("m.room.member", user.as_str())?
            .and_then(|c| {
                c.get("membership")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }))
    }

    /// A user's power level under the current `m.room.power_levels` (room creator rules of v11).
    pub fn power_level(&self, user: &UserId) -> ApiResult<i64> {
        match self.state_content("m.room.power_levels", "")? {
            Some(pl) => Ok(pl
                .get("users")
                .and_then(|u| u.get(user.as_str()))
                .and_then(Value::as_i64)
                .or_else(|| pl.get("users_default").and_then(Value::as_i64))
                .unwrap_or(0)),
            None => {
                let creator = self.state_pdu("m.room.create", "")?.map(|p| p.sender);
                Ok(if creator.as_deref() == Some(user) {
                    100
                } else {
                    0
                })
            }
        }
    }

    /// The power level needed for a power-levels field (`redact`, `kick`, `invite`, ...).
    pub fn required_level(&self, field: &str, default: i64) -> ApiResult<i64> {
        Ok(self
            .state_content("m.room.power_levels", "")?
            .and_then(|pl| pl.get(field).and_then(Value::as_i64))
            .unwrap_or(default))
    }

    /// Builds, signs, authorises and appends one event. Returns the new PDU.
    pub fn append(
        &mut self,
        sender: &UserId,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
        txn: Option<(&UserId, &str, &str)>,
    ) -> ApiResult<Pdu> {
        if !content.is_object() {
            return Err(ApiError::bad_json("Event content must be a JSON object"));
        }
        let kind_t = TimelineEventType::from(kind);
        let is_create = kind_t == TimelineEventType::RoomCreate;
        if self.heads.events.is_empty() && !is_create {
            return Err(ApiError::not_found("Unknown room"));
        }
        if is_create && !self.heads.events.is_empty() {
            return Err(ApiError::forbidden("The room already has a create event"));
        }
        let raw_content = to_raw_value(&content).map_err(ApiError::from)?;
        let auth_types = state_res::auth_types_for_event(
            &kind_t,
            sender,
            state_key,
            &raw_content,
            &self.rules.authorization,
        )
        .map_err(ApiError::bad_json)?;
        let mut auth_events = Vec::new();
        for (ty, sk) in auth_types {
            if let Some(e) = self.state_entry(&ty.to_string(), &sk)? {
                if !auth_events.contains(&e.event_id) {
                    auth_events.push(e.event_id);
                }
            }
        }
        let depth = self.heads.depth + 1;
        let prev_events: Vec<OwnedEventId> = self
            .heads
            .events
            .iter()
            .take(MAX_PREV_EVENTS)
            .cloned()
            .collect();
        let mut event = json!({
            "room_id": self.room_id,
            "sender": sender,
            "origin_server_ts": MilliSecondsSinceUnixEpoch::now(),
            "type": kind,
            "content": content,
            "prev_events": prev_events,
            "auth_events": auth_events,
            "depth": depth,
        });
        if let Some(sk) = state_key {
            event["state_key"] = json!(sk);
        }
        let mut object = to_canonical_object(event)?;
        let identity = self.rooms.identity();
        hash_and_sign_event(
            identity.server_name().as_str(),
            identity.keypair(),
            &mut object,
            &self.rules.redaction,
        )
        .map_err(|e| match e {
            ruma::signatures::JsonError::PduTooLarge => {
                ApiError::too_large("Event is larger than 65535 bytes")
            }
            other => ApiError::bad_json(format!("cannot sign event: {other}")),
        })?;
        let hash = reference_hash(&object, &self.rules)
            .map_err(|e| ApiError::too_large(format!("event rejected: {e}")))?;
        let event_id = EventId::parse(format!("${hash}"))
            .map_err(|e| ApiError::internal(format!("bad event id: {e}")))?;
        let json = to_raw_value(&object).map_err(ApiError::from)?;
        let pdu = Pdu::parse(event_id.clone(), &json)?;

        self.authorise(&pdu)?;

        // With every head as a parent, the state before the event is the current state.
        let before = if prev_events.len() == self.heads.events.len() {
            self.current_group()?
        } else {
            self.state_before_of(&prev_events)?
        };
        let pos = self.positions.next();
        self.store_accepted(&pdu, json, pos, before, txn)?;
        self.appended.push(pdu.clone());
        Ok(pdu)
    }

    /// The group of the state before an event with these parents (resolved where they fork).
    pub(super) fn state_before_of(
        &mut self,
        prev_events: &[OwnedEventId],
    ) -> ApiResult<Option<u64>> {
        let mut states = Vec::new();
        let mut groups = Vec::new();
        for prev in prev_events {
            if let Some((_, stored)) = self.pdu(prev)? {
                if let Some(g) = stored.state_after {
                    groups.push(g);
                }
            }
            if let Some(s) = self.state_after(prev)? {
                states.push(s);
            }
        }
        groups.sort_unstable();
        groups.dedup();
        match (groups.as_slice(), states.len()) {
            (_, 0) => Ok(None),
            ([one], 1) => Ok(Some(*one)),
            _ => {
                let resolved = self.resolve(&states)?;
                Ok(Some(self.new_group(groups.first().copied(), resolved)?))
            }
        }
    }

    /// Stores an accepted event at `pos`: its state groups, the timeline, the DAG tip and the
    /// current state (resolved again where the room forks).
    pub(super) fn store_accepted(
        &mut self,
        pdu: &Pdu,
        json: Box<serde_json::value::RawValue>,
        pos: u64,
        before: Option<u64>,
        txn: Option<(&UserId, &str, &str)>,
    ) -> ApiResult<()> {
        let after = match (&pdu.state_key, before) {
            (Some(sk), before) => {
                let mut state = match before {
                    Some(b) => (*self.group_state(b)?.0).clone(),
                    None => StateMap::new(),
                };
                state.insert((pdu.kind.to_string(), sk.clone()), pdu.event_id.clone());
                Some(self.new_group(before, state)?)
            }
            (None, before) => before,
        };
        let stored = StoredPdu {
            json,
            pos,
            txn: txn.map(|(u, d, t)| (u.to_owned(), d.to_owned(), t.to_owned())),
            redacted_because: None,
            state_before: before,
            state_after: after,
            status: EventStatus::Accepted,
        };
        self.index(pdu, &stored)?;
        self.pdus
            .insert(pdu.event_id.clone(), (pdu.clone(), stored));
        self.advance_heads(pdu, after, pos)
    }

    /// Stores an event that is not part of the timeline (rejected, soft-failed or an outlier).
    pub(super) fn store_aside(
        &mut self,
        pdu: &Pdu,
        json: Box<serde_json::value::RawValue>,
        status: EventStatus,
        before: Option<u64>,
    ) -> ApiResult<()> {
        // A soft-failed event still changes the state seen by its children; a rejected one
        // does not.
        let after = match (status, &pdu.state_key, before) {
            (EventStatus::SoftFailed, Some(sk), Some(b)) => {
                let mut state = (*self.group_state(b)?.0).clone();
                state.insert((pdu.kind.to_string(), sk.clone()), pdu.event_id.clone());
                Some(self.new_group(Some(b), state)?)
            }
            (EventStatus::Outlier, _, _) => None,
            _ => before,
        };
        let stored = StoredPdu {
            json,
            pos: 0,
            txn: None,
            redacted_because: None,
            state_before: before,
            state_after: after,
            status,
        };
        self.rooms
            .t
            .pdus
            .put(self.batch, pdu.event_id.as_bytes(), &stored)?;
        let mut pdu = pdu.clone();
        pdu.rejected = status == EventStatus::Rejected;
        self.pdus.insert(pdu.event_id.clone(), (pdu, stored));
        Ok(())
    }

    /// Makes `pdu` a forward extremity in place of its parents and brings the current state
    /// up to date (state resolution where several extremities remain).
    fn advance_heads(&mut self, pdu: &Pdu, after: Option<u64>, pos: u64) -> ApiResult<()> {
        let old_group = self.current_group()?;
        let mut heads: Vec<OwnedEventId> = self
            .heads
            .events
            .iter()
            .filter(|h| !pdu.prev_events.contains(h))
            .cloned()
            .collect();
        heads.push(pdu.event_id.clone());
        let new_group = if heads.len() == 1 {
            after
        } else {
            let mut states = Vec::new();
            for h in &heads {
                if let Some(s) = self.state_after(h)? {
                    states.push(s);
                }
            }
            let resolved = self.resolve(&states)?;
            Some(self.new_group(after, resolved)?)
        };
        let old = match old_group {
            Some(g) => self.group_state(g)?.0,
            None => Arc::new(StateMap::new()),
        };
        let new = match new_group {
            Some(g) => self.group_state(g)?.0,
            None => Arc::new(StateMap::new()),
        };
        if new_group != old_group {
            let mut changes: Vec<((String, String), Option<OwnedEventId>)> = new
                .iter()
                .filter(|(k, v)| old.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect();
            changes.extend(
                old.keys()
                    .filter(|k| !new.contains_key(*k))
                    .map(|k| (k.clone(), None)),
            );
            for (key, event) in changes {
                self.set_current(key, event, pos)?;
            }
        }
        self.heads = Heads {
            events: heads,
            depth: self.heads.depth.max(u64::from(pdu.depth)),
            state_group: new_group,
        };
        self.heads_dirty = true;
        Ok(())
    }

    fn authorise(&self, pdu: &Pdu) -> ApiResult<()> {
        let fetch_event = |id: &EventId| self.pdu(id).ok().flatten().map(|(p, _)| p);
        state_res::check_state_independent_auth_rules(&self.rules.authorization, pdu, fetch_event)
            .map_err(|e| ApiError::forbidden(format!("Event not authorised: {e}")))?;
        let fetch_state =
            |ty: &StateEventType, sk: &str| self.state_pdu(&ty.to_string(), sk).ok().flatten();
        state_res::check_state_dependent_auth_rules(&self.rules.authorization, pdu, fetch_state)
            .map_err(|e| ApiError::forbidden(format!("Event not authorised: {e}")))
    }

    /// Writes the PDU, its timeline entry and its transaction id into the batch, and applies a
    /// redaction it carries.
    fn index(&mut self, pdu: &Pdu, stored: &StoredPdu) -> ApiResult<()> {
        let t = &self.rooms.t;
        let room = self.room_id.as_bytes();
        let pos = stored.pos;
        t.pdus.put(self.batch, pdu.event_id.as_bytes(), stored)?;
        crate::service::derived::record(self.batch, pdu, pos)?;
        t.timeline.put(
            self.batch,
            &key(&[room, &u64_be(pos)]),
            pdu.event_id.as_bytes().to_vec(),
        );
        if let Some((u, d, txn)) = &stored.txn {
            t.txns.put(
                self.batch,
                &key(&[u.as_bytes(), d.as_bytes(), txn.as_bytes()]),
                pdu.event_id.as_bytes().to_vec(),
            );
        }
        if pdu.sender.server_name() == self.rooms.identity.server_name() {
            t.outgoing
                .put(self.batch, &u64_be(pos), pdu.event_id.as_bytes().to_vec());
        }
        if pdu.kind == TimelineEventType::RoomCreate {
            t.meta.put(
                self.batch,
                room,
                &RoomMeta {
                    version: self.version.clone(),
                },
            )?;
        }
        if let Some(target) = &pdu.redacts {
            self.apply_redaction(target, pdu, stored)?;
        }
        Ok(())
    }

    /// Sets one entry of the current state (`None`: the entry is gone) and the indexes derived
    /// from it (memberships, history visibility), as of stream position `pos`.
    fn set_current(
        &mut self,
        (ty, sk): (String, String),
        event: Option<OwnedEventId>,
        pos: u64,
    ) -> ApiResult<()> {
        let t = &self.rooms.t;
        let room = self.room_id.as_bytes();
        let state_key = key(&[room, ty.as_bytes(), sk.as_bytes()]);
        let Some(event_id) = event else {
            t.state.delete(self.batch, &state_key);
            self.state.insert((ty.clone(), sk.clone()), None);
            if ty == "m.room.member" {
                t.members.delete(self.batch, &key(&[room, sk.as_bytes()]));
                t.user_rooms
                    .delete(self.batch, &key(&[sk.as_bytes(), room]));
            }
            return Ok(());
        };
        let entry = StateEntry {
            event_id: event_id.clone(),
            pos,
        };
        t.state.put(self.batch, &state_key, &entry)?;
        self.state.insert((ty.clone(), sk.clone()), Some(entry));
        let content = match self.pdu(&event_id)? {
            Some((p, _)) => p.content_value(),
            None => Value::Null,
        };
        let t = &self.rooms.t;
        match ty.as_str() {
            "m.room.member" => {
                let membership = content
                    .get("membership")
                    .and_then(Value::as_str)
                    .unwrap_or("leave")
                    .to_owned();
                let user = sk.as_bytes();
                t.user_rooms.put(
                    self.batch,
                    &key(&[user, room]),
                    &UserRoom {
                        membership: membership.clone(),
                        pos,
                        event_id,
                    },
                )?;
                t.members.put(
                    self.batch,
                    &key(&[room, user]),
                    &MemberEntry {
                        membership: membership.clone(),
                        pos,
                    },
                )?;
                t.membership_history.put(
                    self.batch,
                    &key(&[room, user, &u64_be(pos)]),
                    &membership,
                )?;
            }
            "m.room.history_visibility" => {
                let vis = content
                    .get("history_visibility")
                    .and_then(Value::as_str)
                    .unwrap_or("shared")
                    .to_owned();
                t.visibility_history
                    .put(self.batch, &key(&[room, &u64_be(pos)]), &vis)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Redacts the stored target of a redaction event (content is removed for good).
    fn apply_redaction(
        &mut self,
        target: &EventId,
        redaction: &Pdu,
        stored: &StoredPdu,
    ) -> ApiResult<()> {
        let Some((target_pdu, mut target_stored)) = self.pdu(target)? else {
            return Ok(());
        };
        if target_pdu.room_id != self.room_id {
            return Ok(());
        }
        // The spec (room versions 3+): a redaction is always accepted, but it removes the
        // target's content only if its sender is on the target sender's server or has the
        // `redact` power level.
        if redaction.sender.server_name() != target_pdu.sender.server_name()
            && self.power_level(&redaction.sender)? < self.required_level("redact", 50)?
        {
            return Ok(());
        }
        let object: ruma::CanonicalJsonObject = serde_json::from_str(target_stored.json.get())?;
        let because: ruma::CanonicalJsonObject = serde_json::from_str(stored.json.get())?;
        let redacted = redact(
            object,
            &self.rules.redaction,
            Some(RedactedBecause::from_json(because)),
        )
        .map_err(|e| ApiError::internal(format!("redaction failed: {e}")))?;
        target_stored.json = to_raw_value(&redacted)?;
        target_stored.redacted_because = Some(redaction.to_client_event(stored, None));
        self.rooms
            .t
            .pdus
            .put(self.batch, target.as_bytes(), &target_stored)?;
        let reparsed = Pdu::parse(target.to_owned(), &target_stored.json)?;
        self.pdus
            .insert(target.to_owned(), (reparsed, target_stored));
        Ok(())
    }

    /// Writes the DAG tip and the state-group counter, and returns what was appended.
    pub(super) fn finish(self) -> ApiResult<Vec<Pdu>> {
        if self.heads_dirty {
            self.rooms
                .t
                .heads
                .put(self.batch, self.room_id.as_bytes(), &self.heads)?;
        }
        if !self.groups.is_empty() {
            self.rooms.groups.put_last_id(self.batch, self.last_group)?;
        }
        Ok(self.appended)
    }
}
