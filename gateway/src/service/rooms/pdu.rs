//! PDUs: room events in their signed, federation-ready form.
//!
//! A PDU is stored as its full signed JSON (what another gateway would verify) plus local
//! metadata (stream position, the sender device's transaction id). [`Pdu`] is the parsed view
//! used for authorisation (it implements ruma's `state_res::Event`) and for rendering
//! client-format events.

use ruma::{
    events::TimelineEventType, state_res, CanonicalJsonObject, EventId, MilliSecondsSinceUnixEpoch,
    OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, value::RawValue as RawJsonValue, Value};

use crate::error::{ApiError, ApiResult};

/// A PDU as kept in the `pdus` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPdu {
    /// The signed PDU JSON (without `event_id`, which is its reference hash).
    pub json: Box<RawJsonValue>,
    /// Position in the global stream.
    pub pos: u64,
    /// Transaction id given by the sending device, if sent from this gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<(OwnedUserId, String, String)>,
    /// The redaction event that redacted this one, in client format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted_because: Option<Value>,
    /// State group of the room state before this event (none for outliers and events stored
    /// before state groups existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_before: Option<u64>,
    /// State group of the room state after this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_after: Option<u64>,
    /// What the gateway made of the event.
    #[serde(default, skip_serializing_if = "EventStatus::is_accepted")]
    pub status: EventStatus,
}

/// What the gateway made of a stored event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Authorised; part of the room's timeline and state.
    #[default]
    Accepted,
    /// Authorised by the state before it but not by the room's current state: kept in the DAG,
    /// never shown to clients and never a parent of new events.
    SoftFailed,
    /// Failed the auth rules (against its auth events or the state before it): kept only so
    /// that it is not fetched again and its children can be judged; never shown, never state.
    Rejected,
    /// Known only as part of a room's state or auth chain (e.g. received with a join): its
    /// own place in the DAG is unknown, so it has no state groups and no timeline entry.
    Outlier,
}

impl EventStatus {
    /// Whether the event is accepted.
    pub fn is_accepted(&self) -> bool {
        *self == EventStatus::Accepted
    }
}

/// The fields of a PDU that the gateway reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Pdu {
    /// Event id (the reference hash; not part of the JSON).
    #[serde(skip, default = "placeholder_event_id")]
    pub event_id: OwnedEventId,
    /// Room.
    pub room_id: OwnedRoomId,
    /// Sender.
    pub sender: OwnedUserId,
    /// Sender's timestamp.
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    /// Event type.
    #[serde(rename = "type")]
    pub kind: TimelineEventType,
    /// Content.
    pub content: Box<RawJsonValue>,
    /// State key, for state events.
    #[serde(default)]
    pub state_key: Option<String>,
    /// Parents in the room DAG.
    pub prev_events: Vec<OwnedEventId>,
    /// Events that authorise this one.
    pub auth_events: Vec<OwnedEventId>,
    /// Depth in the DAG.
    pub depth: UInt,
    /// Redacted event (room versions 11+ keep it in `content.redacts`).
    #[serde(skip)]
    pub redacts: Option<OwnedEventId>,
    /// Whether the event was rejected by the auth rules (state resolution ignores it).
    #[serde(skip)]
    pub rejected: bool,
}

fn placeholder_event_id() -> OwnedEventId {
    EventId::parse("$placeholder").expect("valid placeholder event id")
}

#[derive(Deserialize)]
struct RedactsContent {
    redacts: Option<OwnedEventId>,
}

impl Pdu {
    /// Parses a PDU's JSON; `event_id` is its known reference hash.
    pub fn parse(event_id: OwnedEventId, json: &RawJsonValue) -> ApiResult<Self> {
        let mut pdu: Pdu = serde_json::from_str(json.get())
            .map_err(|e| ApiError::bad_json(format!("invalid PDU: {e}")))?;
        pdu.event_id = event_id;
        if pdu.kind == TimelineEventType::RoomRedaction {
            pdu.redacts = serde_json::from_str::<RedactsContent>(pdu.content.get())
                .ok()
                .and_then(|c| c.redacts);
        }
        Ok(pdu)
    }

    /// The content as a JSON value.
    pub fn content_value(&self) -> Value {
        serde_json::from_str(self.content.get()).unwrap_or(Value::Null)
    }

    /// Whether this is a state event.
    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }

    /// The event in the client-server API format (`ClientEvent`).
    pub fn to_client_event(&self, stored: &StoredPdu, viewer: Option<(&UserId, &str)>) -> Value {
        let mut ev = json!({
            "content": self.content_value(),
            "event_id": self.event_id,
            "origin_server_ts": self.origin_server_ts,
            "room_id": self.room_id,
            "sender": self.sender,
            "type": self.kind,
        });
        let Value::Object(map) = &mut ev else {
            unreachable!("built as an object")
        };
        if let Some(sk) = &self.state_key {
            map.insert("state_key".into(), json!(sk));
        }
        if let Some(r) = &self.redacts {
            map.insert("redacts".into(), json!(r));
        }
        let mut unsigned = serde_json::Map::new();
        let now = MilliSecondsSinceUnixEpoch::now().get();
        unsigned.insert(
            "age".into(),
            json!(u64::from(now).saturating_sub(u64::from(self.origin_server_ts.get()))),
        );
        if let (Some((user, device, txn)), Some((vu, vd))) = (&stored.txn, viewer) {
            if user == vu && device == vd {
                unsigned.insert("transaction_id".into(), json!(txn));
            }
        }
        if let Some(because) = &stored.redacted_because {
            unsigned.insert("redacted_because".into(), because.clone());
        }
        map.insert("unsigned".into(), Value::Object(unsigned));
        ev
    }

    /// The event without `room_id`, as inside `/sync` rooms.
    pub fn to_sync_event(&self, stored: &StoredPdu, viewer: Option<(&UserId, &str)>) -> Value {
        let mut ev = self.to_client_event(stored, viewer);
        if let Value::Object(map) = &mut ev {
            map.remove("room_id");
        }
        ev
    }

    /// The stripped form used in invite state.
    pub fn to_stripped_state(&self) -> Value {
        json!({
            "content": self.content_value(),
            "sender": self.sender,
            "state_key": self.state_key,
            "type": self.kind,
        })
    }
}

impl state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }

    fn room_id(&self) -> Option<&RoomId> {
        Some(&self.room_id)
    }

    fn sender(&self) -> &UserId {
        &self.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }

    fn content(&self) -> &RawJsonValue {
        &self.content
    }

    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }

    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        self.rejected
    }
}

/// Converts a JSON object into canonical JSON.
pub fn to_canonical_object(value: Value) -> ApiResult<CanonicalJsonObject> {
    match ruma::CanonicalJsonValue::try_from(value) {
        Ok(ruma::CanonicalJsonValue::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::bad_json("event must be a JSON object")),
        Err(e) => Err(ApiError::bad_json(format!("not canonical JSON: {e}"))),
    }
}
