//! Building, signing, authorising and appending events to one room.

use std::collections::HashMap;

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
    tables::{Heads, MemberEntry, RoomMeta, UserRoom},
    to_canonical_object, Pdu, Rooms, StateEntry, StoredPdu,
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
    state: HashMap<(String, String), StateEntry>,
    pdus: HashMap<OwnedEventId, (Pdu, StoredPdu)>,
    heads: Heads,
    appended: Vec<Pdu>,
}

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
            (None, Some(v)) => v,
            (Some(_), Some(_)) => return Err(ApiError::room_in_use("Room already exists")),
            (None, None) => return Err(ApiError::not_found("Unknown room")),
        };
        let rules = rules_for(&version)?;
        let heads = rooms
            .t
            .heads
            .get(&rooms.db, room_id.as_bytes())?
            .unwrap_or_default();
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
            appended: Vec::new(),
        })
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
            return Ok(Some(e.clone()));
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
        let mut event = json!({
            "room_id": self.room_id,
            "sender": sender,
            "origin_server_ts": MilliSecondsSinceUnixEpoch::now(),
            "type": kind,
            "content": content,
            "prev_events": self.heads.events,
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

        let pos = self.positions.next();
        let stored = StoredPdu {
            json,
            pos,
            txn: txn.map(|(u, d, t)| (u.to_owned(), d.to_owned(), t.to_owned())),
            redacted_because: None,
        };
        self.index(&pdu, &stored)?;
        self.pdus.insert(event_id.clone(), (pdu.clone(), stored));
        self.heads = Heads {
            events: vec![event_id],
            depth,
        };
        self.appended.push(pdu.clone());
        Ok(pdu)
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

    /// Writes the PDU and every index it touches into the batch.
    fn index(&mut self, pdu: &Pdu, stored: &StoredPdu) -> ApiResult<()> {
        let t = &self.rooms.t;
        let room = self.room_id.as_bytes();
        let pos = stored.pos;
        t.pdus.put(self.batch, pdu.event_id.as_bytes(), stored)?;
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
        if let Some(sk) = &pdu.state_key {
            let ty = pdu.kind.to_string();
            let entry = StateEntry {
                event_id: pdu.event_id.clone(),
                pos,
            };
            t.state.put(
                self.batch,
                &key(&[room, ty.as_bytes(), sk.as_bytes()]),
                &entry,
            )?;
            self.state.insert((ty, sk.clone()), entry);
            let content = pdu.content_value();
            match pdu.kind {
                TimelineEventType::RoomMember => {
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
                            event_id: pdu.event_id.clone(),
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
                TimelineEventType::RoomHistoryVisibility => {
                    let vis = content
                        .get("history_visibility")
                        .and_then(Value::as_str)
                        .unwrap_or("shared")
                        .to_owned();
                    t.visibility_history
                        .put(self.batch, &key(&[room, &u64_be(pos)]), &vis)?;
                }
                TimelineEventType::RoomCreate => {
                    t.meta.put(
                        self.batch,
                        room,
                        &RoomMeta {
                            version: self.version.clone(),
                        },
                    )?;
                }
                _ => {}
            }
        }
        if let Some(target) = &pdu.redacts {
            self.apply_redaction(target, pdu, stored)?;
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

    /// Writes the DAG tip and returns what was appended.
    pub(super) fn finish(self) -> ApiResult<Vec<Pdu>> {
        if !self.appended.is_empty() {
            self.rooms
                .t
                .heads
                .put(self.batch, self.room_id.as_bytes(), &self.heads)?;
        }
        Ok(self.appended)
    }
}
