//! The request body of simplified sliding sync (MSC4186), read leniently: every field is
//! optional, unknown fields are ignored, and absent sticky fields keep their earlier values.

use std::collections::BTreeMap;

use ruma::OwnedRoomId;
use serde::Deserialize;

/// A sliding sync request body.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SlidingRequest {
    /// Names the connection (one client may run several, e.g. Element X's room list and its
    /// encryption sync).
    #[serde(default)]
    pub conn_id: Option<String>,
    /// Echoed in the response so the client knows its sticky parameters arrived.
    #[serde(default)]
    pub txn_id: Option<String>,
    /// Room lists by name.
    #[serde(default)]
    pub lists: BTreeMap<String, ListRequest>,
    /// Rooms wanted whatever the lists say.
    #[serde(default)]
    pub room_subscriptions: BTreeMap<OwnedRoomId, RoomConfig>,
    /// Extensions (to-device, end-to-end keys, account data, receipts, typing).
    #[serde(default)]
    pub extensions: ExtensionsRequest,
}

/// One list: which slice of the user's rooms, and what to send about each.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListRequest {
    /// Inclusive index ranges into the list, sorted by recency.
    #[serde(default)]
    pub ranges: Vec<(u64, u64)>,
    /// What to send about each room (sticky).
    #[serde(flatten)]
    pub details: RoomConfig,
    /// Which rooms belong to the list (sticky).
    #[serde(default)]
    pub filters: Option<ListFilters>,
}

/// What to send about a room.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct RoomConfig {
    /// `[event type, state key]` pairs; `*` matches any, `$LAZY` (members) the timeline's
    /// senders, `$ME` the user.
    #[serde(default)]
    pub required_state: Option<Vec<(String, String)>>,
    /// Most timeline events per room.
    #[serde(default)]
    pub timeline_limit: Option<u64>,
}

impl RoomConfig {
    /// `other` on top of `self`: fields `other` sets replace this one's.
    pub fn updated(&self, other: &RoomConfig) -> RoomConfig {
        RoomConfig {
            required_state: other
                .required_state
                .clone()
                .or_else(|| self.required_state.clone()),
            timeline_limit: other.timeline_limit.or(self.timeline_limit),
        }
    }

    /// The union of two configs (a room in two lists gets what both ask for).
    pub fn union(&self, other: &RoomConfig) -> RoomConfig {
        let mut state = self.required_state.clone().unwrap_or_default();
        for pair in other.required_state.iter().flatten() {
            if !state.contains(pair) {
                state.push(pair.clone());
            }
        }
        RoomConfig {
            required_state: Some(state),
            timeline_limit: Some(
                self.timeline_limit
                    .unwrap_or(0)
                    .max(other.timeline_limit.unwrap_or(0)),
            ),
        }
    }
}

/// Which rooms a list holds.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ListFilters {
    /// Only direct chats (`true`) or only other rooms (`false`).
    #[serde(default)]
    pub is_dm: Option<bool>,
    /// Only encrypted rooms, or only unencrypted ones.
    #[serde(default)]
    pub is_encrypted: Option<bool>,
    /// Only invites, or only rooms the user is in.
    #[serde(default)]
    pub is_invite: Option<bool>,
    /// Only these room types (`null`: rooms without a type).
    #[serde(default)]
    pub room_types: Vec<Option<String>>,
    /// Not these room types.
    #[serde(default)]
    pub not_room_types: Vec<Option<String>>,
}

/// The extensions part of a request; `enabled` is sticky.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExtensionsRequest {
    /// To-device messages.
    #[serde(default)]
    pub to_device: Option<ToDeviceRequest>,
    /// Device-list changes and one-time-key counts.
    #[serde(default)]
    pub e2ee: Option<Toggle>,
    /// Account data.
    #[serde(default)]
    pub account_data: Option<Toggle>,
    /// Read receipts.
    #[serde(default)]
    pub receipts: Option<Toggle>,
    /// Typing notifications.
    #[serde(default)]
    pub typing: Option<Toggle>,
}

/// An extension that is only switched on or off.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Toggle {
    /// On or off (absent: unchanged).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// The to-device extension.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ToDeviceRequest {
    /// On or off (absent: unchanged).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The `next_batch` of the last to-device answer the client processed.
    #[serde(default)]
    pub since: Option<String>,
    /// Most messages per response.
    #[serde(default)]
    pub limit: Option<u64>,
}
