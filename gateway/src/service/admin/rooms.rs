//! Rooms as Synapse's admin API shows them (`/_synapse/admin/v1/rooms…`).

use ruma::{OwnedUserId, RoomId};
use serde::Serialize;

use crate::{
    error::{ApiError, ApiResult},
    service::Gateway,
};

/// One room in Synapse's shape (list entry; details add `topic`, `avatar`, `room_type`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AdminRoom {
    /// Room id.
    pub room_id: String,
    /// `m.room.name`.
    pub name: Option<String>,
    /// `m.room.canonical_alias`.
    pub canonical_alias: Option<String>,
    /// Joined members (all gateways).
    pub joined_members: usize,
    /// Joined members of this gateway.
    pub joined_local_members: usize,
    /// Room version.
    pub version: String,
    /// Sender of `m.room.create`.
    pub creator: Option<String>,
    /// Encryption algorithm, if encrypted.
    pub encryption: Option<String>,
    /// Whether other gateways may join (`m.federate`).
    pub federatable: bool,
    /// Published in the room directory.
    pub public: bool,
    /// `m.room.join_rules`.
    pub join_rules: Option<String>,
    /// `m.room.guest_access`.
    pub guest_access: Option<String>,
    /// `m.room.history_visibility`.
    pub history_visibility: Option<String>,
    /// Current state events.
    pub state_events: usize,
    /// `m.room.topic` (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// `m.room.avatar` (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    /// Room type from `m.room.create` (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_type: Option<String>,
}

fn field(gw: &Gateway, room: &RoomId, ty: &str, key: &str) -> ApiResult<Option<String>> {
    Ok(gw
        .rooms
        .state_content(room, ty, "")?
        .and_then(|c| c.get(key).and_then(|v| v.as_str()).map(str::to_owned)))
}

/// One room; 404 `M_NOT_FOUND` for a room this gateway does not hold. `details` adds topic,
/// avatar and room type.
pub fn room(gw: &Gateway, room: &RoomId, details: bool) -> ApiResult<AdminRoom> {
    let meta = gw
        .rooms
        .meta(room)?
        .ok_or_else(|| ApiError::not_found("Room not found"))?;
    let joined = joined_members(gw, room)?;
    let local = joined
        .iter()
        .filter(|u| u.server_name() == gw.server_name())
        .count();
    let create = gw.rooms.state_pdu(room, "m.room.create", "")?;
    let create_content = create.as_ref().map(|(p, _)| p.content_value());
    Ok(AdminRoom {
        room_id: room.to_string(),
        name: field(gw, room, "m.room.name", "name")?,
        canonical_alias: field(gw, room, "m.room.canonical_alias", "alias")?,
        joined_members: joined.len(),
        joined_local_members: local,
        version: meta.version.to_string(),
        creator: create.as_ref().map(|(p, _)| p.sender.to_string()),
        encryption: field(gw, room, "m.room.encryption", "algorithm")?,
        federatable: create_content
            .as_ref()
            .and_then(|c| c.get("m.federate"))
            .and_then(|v| v.as_bool())
            .unwrap_or(true),
        public: gw.rooms.is_public(room)?,
        join_rules: field(gw, room, "m.room.join_rules", "join_rule")?,
        guest_access: field(gw, room, "m.room.guest_access", "guest_access")?,
        history_visibility: field(gw, room, "m.room.history_visibility", "history_visibility")?,
        state_events: gw.rooms.current_state(room)?.len(),
        topic: if details {
            field(gw, room, "m.room.topic", "topic")?
        } else {
            None
        },
        avatar: if details {
            field(gw, room, "m.room.avatar", "url")?
        } else {
            None
        },
        room_type: if details {
            create_content
                .as_ref()
                .and_then(|c| c.get("type"))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        } else {
            None
        },
    })
}

/// Joined members of a room (all gateways); 404 for an unknown room.
pub fn joined_members(gw: &Gateway, room: &RoomId) -> ApiResult<Vec<OwnedUserId>> {
    if gw.rooms.meta(room)?.is_none() {
        return Err(ApiError::not_found("Room not found"));
    }
    Ok(gw
        .rooms
        .members(room)?
        .into_iter()
        .filter(|(_, m)| m.membership == "join")
        .map(|(u, _)| u)
        .collect())
}

/// Sorting of the room list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoomOrder {
    /// By name (rooms without a name last), then id.
    #[default]
    Name,
    /// By joined members.
    JoinedMembers,
    /// By joined local members.
    JoinedLocalMembers,
    /// By state events.
    StateEvents,
    /// By room version.
    Version,
}

impl RoomOrder {
    /// Parses Synapse's `order_by` values this server supports.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "name" | "alphabetical" => Self::Name,
            "joined_members" | "size" => Self::JoinedMembers,
            "joined_local_members" => Self::JoinedLocalMembers,
            "state_events" => Self::StateEvents,
            "version" => Self::Version,
            _ => return None,
        })
    }
}

/// Filters and paging of the room list.
#[derive(Debug, Clone, Default)]
pub struct RoomQuery {
    /// Substring of the name, canonical alias or id (case-insensitive).
    pub search_term: Option<String>,
    /// Sort key.
    pub order_by: RoomOrder,
    /// Descending.
    pub backwards: bool,
    /// Offset.
    pub from: usize,
    /// Page size.
    pub limit: usize,
}

/// A page of rooms.
#[derive(Debug, Clone, Serialize)]
pub struct RoomPage {
    /// The rooms.
    pub rooms: Vec<AdminRoom>,
    /// Offset of this page.
    pub offset: usize,
    /// Matching rooms in all pages.
    pub total_rooms: usize,
    /// Offset of the next page, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_batch: Option<usize>,
    /// Offset of the previous page, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_batch: Option<usize>,
}

/// Lists the rooms this gateway holds.
pub fn list(gw: &Gateway, q: &RoomQuery) -> ApiResult<RoomPage> {
    let mut rooms = Vec::new();
    for id in gw.rooms.all_rooms()? {
        let r = room(gw, &id, false)?;
        let hit = q.search_term.as_ref().is_none_or(|t| {
            let t = t.to_lowercase();
            [
                Some(&r.room_id),
                r.name.as_ref(),
                r.canonical_alias.as_ref(),
            ]
            .into_iter()
            .flatten()
            .any(|s| s.to_lowercase().contains(&t))
        });
        if hit {
            rooms.push(r);
        }
    }
    rooms.sort_by(|a, b| {
        let by = match q.order_by {
            RoomOrder::Name => match (&a.name, &b.name) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            },
            RoomOrder::JoinedMembers => b.joined_members.cmp(&a.joined_members),
            RoomOrder::JoinedLocalMembers => b.joined_local_members.cmp(&a.joined_local_members),
            RoomOrder::StateEvents => b.state_events.cmp(&a.state_events),
            RoomOrder::Version => a.version.cmp(&b.version),
        };
        by.then_with(|| a.room_id.cmp(&b.room_id))
    });
    if q.backwards {
        rooms.reverse();
    }
    let total_rooms = rooms.len();
    let page: Vec<AdminRoom> = rooms.into_iter().skip(q.from).take(q.limit).collect();
    let end = q.from + page.len();
    Ok(RoomPage {
        offset: q.from,
        total_rooms,
        next_batch: (end < total_rooms).then_some(end),
        prev_batch: (q.from > 0).then(|| q.from.saturating_sub(q.limit)),
        rooms: page,
    })
}
