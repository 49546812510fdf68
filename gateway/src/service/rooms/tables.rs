//! The storage tables of rooms and what they hold.

use ruma::{OwnedEventId, OwnedRoomId, RoomVersionId};
use serde::{Deserialize, Serialize};
use storage::{RawTable, Table};

use super::StoredPdu;

/// Current state entry: which event holds `(type, state_key)` and since when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StateEntry {
    /// The state event.
    pub event_id: OwnedEventId,
    /// Its stream position.
    pub pos: u64,
}

/// A user's membership in a room, indexed by user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRoom {
    /// `join`, `invite`, `leave`, `ban` or `knock`.
    pub membership: String,
    /// Stream position of the membership event.
    pub pos: u64,
    /// The membership event.
    pub event_id: OwnedEventId,
}

/// A member of a room, indexed by room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberEntry {
    /// `join`, `invite`, `leave`, `ban` or `knock`.
    pub membership: String,
    /// Stream position of the membership event.
    pub pos: u64,
}

/// The tip of a room's DAG.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Heads {
    /// Forward extremities (the next event's `prev_events`).
    pub events: Vec<OwnedEventId>,
    /// Greatest depth so far.
    pub depth: u64,
    /// State group of the room's current state (the resolved state of `events`); `None` in
    /// rooms stored before state groups existed, until their next event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_group: Option<u64>,
}

/// What the gateway knows about a room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomMeta {
    /// Room version.
    pub version: RoomVersionId,
}

/// All room tables. Keys are built with `storage::key` (parts separated by `0xff`).
pub(crate) struct Tables {
    /// event_id → stored PDU.
    pub pdus: Table<StoredPdu>,
    /// room, pos → event_id.
    pub timeline: RawTable,
    /// room, type, state_key → current state entry.
    pub state: Table<StateEntry>,
    /// room → DAG tip.
    pub heads: Table<Heads>,
    /// user, room → membership.
    pub user_rooms: Table<UserRoom>,
    /// room, user → membership.
    pub members: Table<MemberEntry>,
    /// room, user, pos → membership from that position on.
    pub membership_history: Table<String>,
    /// room, pos → history visibility from that position on.
    pub visibility_history: Table<String>,
    /// user, device, txn id → event_id.
    pub txns: RawTable,
    /// room → metadata.
    pub meta: Table<RoomMeta>,
    /// alias → room.
    pub aliases: Table<OwnedRoomId>,
    /// room → published in the directory.
    pub directory: Table<bool>,
    /// pos → event id of every accepted event this gateway signed (what peering sends).
    pub outgoing: RawTable,
    /// user, room → an invite from another gateway into a room this gateway is not in.
    pub remote_invites: Table<RemoteInvite>,
    /// room, seq → fetched history, newest first (see `backfill.rs`).
    pub backfill: Table<super::backfill::BackfillEntry>,
    /// room, event id → its seq in `backfill`.
    pub backfill_index: RawTable,
    /// room → where fetching its history stands.
    pub backfill_meta: Table<super::backfill::BackfillMeta>,
}

/// An invite into a room this gateway is not in (yet).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteInvite {
    /// The room's version.
    pub room_version: RoomVersionId,
    /// The invite event (signed PDU JSON, verified).
    pub event: Box<serde_json::value::RawValue>,
    /// Its id.
    pub event_id: OwnedEventId,
    /// Stripped state to show with the invite.
    pub invite_state: Vec<serde_json::Value>,
}

impl Tables {
    pub fn new() -> Self {
        Self {
            pdus: Table::new("pdus"),
            timeline: RawTable::new("timeline"),
            state: Table::new("room_state"),
            heads: Table::new("room_heads"),
            user_rooms: Table::new("user_rooms"),
            members: Table::new("room_members"),
            membership_history: Table::new("membership_history"),
            visibility_history: Table::new("visibility_history"),
            txns: RawTable::new("txn_ids"),
            meta: Table::new("rooms"),
            aliases: Table::new("room_aliases"),
            directory: Table::new("room_directory"),
            outgoing: RawTable::new("outgoing_pdus"),
            remote_invites: Table::new("remote_invites"),
            backfill: Table::new("room_backfill"),
            backfill_index: RawTable::new("room_backfill_index"),
            backfill_meta: Table::new("room_backfill_meta"),
        }
    }
}
