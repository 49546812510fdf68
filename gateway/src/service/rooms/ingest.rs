//! The door for PDUs this gateway did not sign.
//!
//! A PDU from another gateway goes through these steps (the shape of Conduit's documented
//! pipeline; fetching is not done here: peering fetches what is missing and calls again):
//!
//! 1. **Format** ([`verify_pdu`], no lock): canonical JSON, at most 64 KiB, the spec's limits on
//!    `prev_events`/`auth_events`, the room it claims, event type and state key limits.
//! 2. **Signatures**: the origin's signature is checked against the key its server name stands
//!    for (server name = key, so no key server is asked). A content hash that does not match
//!    means the event is stored redacted, as the spec says.
//! 3. **Event id** = the reference hash.
//!
//! Then under the room's write lock ([`RoomTxn::ingest`]):
//!
//! 4. **Duplicate**: an event already stored (not as an outlier) is not stored again.
//! 5. **Auth events** must be known (else [`Ingested::Missing`]); the state-independent auth
//!    rules and the auth rules against its own auth events must pass, else it is stored
//!    *rejected*.
//! 6. **Parents** must be known (else [`Ingested::Missing`], unless the caller gave up fetching
//!    them: then the gap is accepted and the state before is that of the known parents).
//! 7. **State before** = the parents' states, resolved with state resolution v2 where they
//!    differ; the auth rules against it must pass, else *rejected*.
//! 8. **Soft fail**: an event the current state would not allow is kept in the DAG but never
//!    shown, never a parent of new events.
//! 9. **Store**: state groups, timeline, forward extremities, and the current state (resolved
//!    again where the room now forks).
//!
//! Rejected, soft-failed and outlier events never reach a client: they have no timeline entry
//! and [`Rooms::get_visible_pdu`] hides them.

use std::collections::BTreeMap;

use ruma::{
    events::StateEventType,
    room_version_rules::RoomVersionRules,
    serde::Base64,
    signatures::{reference_hash, verify_event, Verified},
    state_res, CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, RoomId,
    RoomVersionId,
};
use serde_json::value::{to_raw_value, RawValue};

use super::{state::StateMap, txn::RoomTxn, EventStatus, Pdu, Rooms};
use crate::{
    error::{ApiError, ApiResult},
    identity::{key_for_server_name, KEY_VERSION},
};

/// A PDU whose format, signature and hashes have been checked.
#[derive(Debug, Clone)]
pub struct IncomingPdu {
    /// Its id (the reference hash).
    pub event_id: OwnedEventId,
    /// The parsed view.
    pub pdu: Pdu,
    /// The JSON to store (redacted when its content hash did not match).
    pub json: Box<RawValue>,
    /// Whether the content was redacted on arrival (hash mismatch).
    pub redacted_on_arrival: bool,
}

/// Why a PDU was refused. Each kind has its own counter label ([`Rejection::label`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a well-formed PDU.
    #[error("malformed PDU: {0}")]
    Malformed(String),
    /// A required signature is missing or does not verify.
    #[error("bad signature: {0}")]
    Signature(String),
    /// The PDU names another room than the one it was sent for.
    #[error("PDU of room {0} sent for another room")]
    WrongRoom(String),
    /// The auth rules refuse it.
    #[error("not authorised: {0}")]
    Auth(String),
}

impl Rejection {
    /// A short label for counters and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed",
            Rejection::Signature(_) => "signature",
            Rejection::WrongRoom(_) => "wrong_room",
            Rejection::Auth(_) => "auth",
        }
    }
}

/// What became of an ingested PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// Stored and part of the timeline.
    Accepted,
    /// Stored, but the current state does not allow it: not shown.
    SoftFailed,
    /// Stored as rejected: never shown, never state.
    Rejected(Rejection),
    /// Already stored.
    Duplicate,
    /// Auth or parent events are unknown: fetch them, then ingest again.
    Missing(Vec<OwnedEventId>),
}

/// Steps 1–3: parses a PDU of `room_id` received from another gateway, checks its format and
/// its origin's signature (key derived from the server name), redacts it if its content hash
/// does not match, and computes its event id.
pub fn verify_pdu(
    rules: &RoomVersionRules,
    room_id: &RoomId,
    json: &RawValue,
) -> Result<IncomingPdu, Rejection> {
    let malformed = |e: String| Rejection::Malformed(e);
    let mut object: CanonicalJsonObject =
        serde_json::from_str(json.get()).map_err(|e| malformed(e.to_string()))?;
    // An event id from the sender is not trusted: ours is the reference hash.
    object.remove("event_id");
    state_res::check_pdu_format(&object, &rules.event_format).map_err(malformed)?;
    match object.get("room_id") {
        Some(CanonicalJsonValue::String(r)) if r == room_id.as_str() => {}
        Some(CanonicalJsonValue::String(r)) => return Err(Rejection::WrongRoom(r.clone())),
        _ => return Err(malformed("no room_id".into())),
    }
    let kind = match object.get("type") {
        Some(CanonicalJsonValue::String(t)) => t.clone(),
        _ => return Err(malformed("no type".into())),
    };
    let state_key = match object.get("state_key") {
        Some(CanonicalJsonValue::String(k)) => Some(k.clone()),
        None => None,
        Some(_) => return Err(malformed("state_key is not a string".into())),
    };
    super::limits::check_event_identifiers(&kind, state_key.as_deref())
        .map_err(|e| malformed(e.message))?;

    let keys = signing_keys(&object)?;
    let verified =
        verify_event(&keys, &object, rules).map_err(|e| Rejection::Signature(e.to_string()))?;
    let redacted_on_arrival = verified == Verified::Signatures;
    if redacted_on_arrival {
        object = ruma::canonical_json::redact(object, &rules.redaction, None)
            .map_err(|e| malformed(e.to_string()))?;
    }
    let hash = reference_hash(&object, rules).map_err(|e| malformed(e.to_string()))?;
    let event_id = EventId::parse(format!("${hash}")).map_err(|e| malformed(e.to_string()))?;
    let json = to_raw_value(&object).map_err(|e| malformed(e.to_string()))?;
    let pdu = Pdu::parse(event_id.clone(), &json).map_err(|e| malformed(e.message))?;
    Ok(IncomingPdu {
        event_id,
        pdu,
        json,
        redacted_on_arrival,
    })
}

/// The public keys of every key-derived server that signed the object.
fn signing_keys(object: &CanonicalJsonObject) -> Result<ruma::signatures::PublicKeyMap, Rejection> {
    let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else {
        return Err(Rejection::Signature("no signatures".into()));
    };
    let mut keys = BTreeMap::new();
    for server in signatures.keys() {
        let Ok(name) = ruma::ServerName::parse(server) else {
            continue;
        };
        if let Some(key) = key_for_server_name(&name) {
            let mut set = BTreeMap::new();
            set.insert(format!("ed25519:{KEY_VERSION}"), Base64::new(key.to_vec()));
            keys.insert(server.clone(), set);
        }
    }
    Ok(keys)
}

impl RoomTxn<'_> {
    /// Steps 4–9 for one verified PDU of this room. `accept_gaps`: parents that are still
    /// unknown are given up on (the state before is that of the known parents).
    pub fn ingest(&mut self, incoming: &IncomingPdu, accept_gaps: bool) -> ApiResult<Ingested> {
        let pdu = &incoming.pdu;
        if let Some((_, stored)) = self.pdu(&incoming.event_id)? {
            if stored.status != EventStatus::Outlier {
                return Ok(Ingested::Duplicate);
            }
        }
        let missing_auth: Vec<OwnedEventId> = pdu
            .auth_events
            .iter()
            .filter(|id| !matches!(self.pdu(id), Ok(Some(_))))
            .cloned()
            .collect();
        if !missing_auth.is_empty() {
            return Ok(Ingested::Missing(missing_auth));
        }
        let missing_prev: Vec<OwnedEventId> = pdu
            .prev_events
            .iter()
            .filter(|id| {
                // A parent counts as known once it has a place in the DAG (state groups).
                !matches!(self.pdu(id), Ok(Some((_, s))) if s.state_after.is_some() || s.status.is_accepted())
            })
            .cloned()
            .collect();
        if !missing_prev.is_empty() && !accept_gaps {
            return Ok(Ingested::Missing(missing_prev));
        }

        if let Err(reason) = self.auth_against_auth_events(pdu) {
            let before = self.state_before_of(&pdu.prev_events)?;
            self.store_aside(pdu, incoming.json.clone(), EventStatus::Rejected, before)?;
            return Ok(Ingested::Rejected(reason));
        }
        let before = match self.state_before_of(&pdu.prev_events)? {
            Some(b) => Some(b),
            // No parent with a known state (all given up on): judge it by the current state.
            None => self.current_group()?,
        };
        let before_state = match before {
            Some(b) => self.group_state(b)?.0,
            None => Default::default(),
        };
        if let Err(reason) = self.auth_against_state(pdu, &before_state) {
            self.store_aside(pdu, incoming.json.clone(), EventStatus::Rejected, before)?;
            return Ok(Ingested::Rejected(reason));
        }
        let current = match self.current_group()? {
            Some(g) => self.group_state(g)?.0,
            None => Default::default(),
        };
        if *current != *before_state && self.auth_against_state(pdu, &current).is_err() {
            self.store_aside(pdu, incoming.json.clone(), EventStatus::SoftFailed, before)?;
            return Ok(Ingested::SoftFailed);
        }
        let pos = self.positions_next();
        self.store_accepted(pdu, incoming.json.clone(), pos, before, None)?;
        self.note_appended(pdu);
        Ok(Ingested::Accepted)
    }

    /// Stores an event whose place in the DAG is unknown (state or auth chain received with a
    /// join): checked against its own auth events only.
    pub fn ingest_outlier(&mut self, incoming: &IncomingPdu) -> ApiResult<Ingested> {
        if self.pdu(&incoming.event_id)?.is_some() {
            return Ok(Ingested::Duplicate);
        }
        let missing: Vec<OwnedEventId> = incoming
            .pdu
            .auth_events
            .iter()
            .filter(|id| !matches!(self.pdu(id), Ok(Some(_))))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Ok(Ingested::Missing(missing));
        }
        if let Err(reason) = self.auth_against_auth_events(&incoming.pdu) {
            self.store_aside(
                &incoming.pdu,
                incoming.json.clone(),
                EventStatus::Rejected,
                None,
            )?;
            return Ok(Ingested::Rejected(reason));
        }
        self.store_aside(
            &incoming.pdu,
            incoming.json.clone(),
            EventStatus::Outlier,
            None,
        )?;
        Ok(Ingested::Accepted)
    }

    /// Stores the first event of a room this gateway joins through another: `state` is the
    /// room state before it (every event in it already stored as an outlier). The event becomes
    /// the room's only forward extremity.
    pub fn ingest_with_state(
        &mut self,
        incoming: &IncomingPdu,
        state: StateMap,
    ) -> ApiResult<Ingested> {
        if let Some((_, stored)) = self.pdu(&incoming.event_id)? {
            if stored.status != EventStatus::Outlier {
                return Ok(Ingested::Duplicate);
            }
        }
        if let Err(reason) = self.auth_against_auth_events(&incoming.pdu) {
            return Ok(Ingested::Rejected(reason));
        }
        let state = std::sync::Arc::new(state);
        if let Err(reason) = self.auth_against_state(&incoming.pdu, &state) {
            return Ok(Ingested::Rejected(reason));
        }
        self.ensure_meta()?;
        let base = self.current_group()?;
        let before = self.new_group(base, (*state).clone())?;
        let pos = self.positions_next();
        self.store_accepted(
            &incoming.pdu,
            incoming.json.clone(),
            pos,
            Some(before),
            None,
        )?;
        self.note_appended(&incoming.pdu);
        Ok(Ingested::Accepted)
    }

    fn auth_against_auth_events(&self, pdu: &Pdu) -> Result<(), Rejection> {
        let fetch_event = |id: &EventId| self.pdu(id).ok().flatten().map(|(p, _)| p);
        state_res::check_state_independent_auth_rules(
            &self.rules().authorization,
            pdu,
            fetch_event,
        )
        .map_err(|e| Rejection::Auth(e.to_string()))?;
        let auth: Vec<Pdu> = pdu
            .auth_events
            .iter()
            .filter_map(|id| self.pdu(id).ok().flatten().map(|(p, _)| p))
            .collect();
        let fetch_state = |ty: &StateEventType, sk: &str| {
            auth.iter()
                .find(|p| {
                    p.kind.to_string() == ty.to_string() && p.state_key.as_deref() == Some(sk)
                })
                .cloned()
        };
        state_res::check_state_dependent_auth_rules(&self.rules().authorization, pdu, fetch_state)
            .map_err(|e| Rejection::Auth(e.to_string()))
    }

    fn auth_against_state(&self, pdu: &Pdu, state: &StateMap) -> Result<(), Rejection> {
        let fetch_state = |ty: &StateEventType, sk: &str| {
            state
                .get(&(ty.to_string(), sk.to_owned()))
                .and_then(|id| self.pdu(id).ok().flatten().map(|(p, _)| p))
        };
        state_res::check_state_dependent_auth_rules(&self.rules().authorization, pdu, fetch_state)
            .map_err(|e| Rejection::Auth(e.to_string()))
    }
}

impl Rooms {
    /// Ingests verified PDUs of one room in one transaction, parents first (by depth), and
    /// reports what became of each. Events whose parents are in the same batch wait for them.
    /// `new_room`: the version of a room this gateway does not know yet (its create event is
    /// in the batch); ignored for a known room.
    pub async fn ingest(
        &self,
        room_id: &RoomId,
        new_room: Option<RoomVersionId>,
        mut pdus: Vec<IncomingPdu>,
        accept_gaps: bool,
    ) -> ApiResult<Vec<(OwnedEventId, Ingested)>> {
        pdus.sort_by_key(|p| u64::from(p.pdu.depth));
        let version = match self.meta(room_id)? {
            Some(_) => None,
            None => Some(new_room.ok_or_else(|| ApiError::not_found("Unknown room"))?),
        };
        let (outcomes, _) = self
            .write(room_id, version, |txn| {
                let mut outcomes = Vec::with_capacity(pdus.len());
                for incoming in &pdus {
                    let outcome = txn.ingest(incoming, accept_gaps)?;
                    outcomes.push((incoming.event_id.clone(), outcome));
                }
                Ok(outcomes)
            })
            .await?;
        Ok(outcomes)
    }

    /// The room version rules of a room this gateway knows.
    pub fn rules_of(&self, room_id: &RoomId) -> ApiResult<RoomVersionRules> {
        let meta = self
            .meta(room_id)?
            .ok_or_else(|| ApiError::not_found("Unknown room"))?;
        super::rules_for(&meta.version)
    }
}

#[cfg(test)]
#[path = "ingest_tests.rs"]
mod tests;
