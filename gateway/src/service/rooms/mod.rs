//! Rooms: the DAG of signed PDUs, current state, membership indexes and history visibility.
//!
//! Every change to a room happens inside [`Rooms::write`], which runs a [`RoomTxn`] under the
//! global stream lock: events are built on the current state, signed with the gateway key,
//! authorised with ruma's `state_res` auth rules and appended atomically with all their indexes.

mod create;
mod exchange;
pub mod ingest;
mod pdu;
pub mod remote;
mod server_view;
pub mod state;
mod tables;
mod txn;
mod visibility;

// Client use cases over the room store (also called by peering).
mod aliases;
pub mod backfill;
pub mod blocked;
mod directory;
pub mod limits;
pub mod markers;
mod members_at;
pub mod membership;
mod power;
pub mod purge;
pub mod send;

use std::sync::Arc;

use ruma::{
    room_version_rules::RoomVersionRules, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId,
    RoomAliasId, RoomId, RoomVersionId, UserId,
};
use serde_json::Value;
use storage::{key, u64_be, u64_from_be, Batch, Db};

pub use create::CreateRoom;
pub use members_at::MemberAt;
pub use pdu::{to_canonical_object, EventStatus, Pdu, StoredPdu};
pub use server_view::ServerView;
pub use tables::{MemberEntry, RemoteInvite, RoomMeta, StateEntry, UserRoom};
pub use txn::RoomTxn;

use self::tables::Tables;
use super::stream::Stream;
use crate::{
    error::{ApiError, ApiResult},
    identity::Identity,
};

/// The room version new rooms get.
pub const DEFAULT_ROOM_VERSION: RoomVersionId = RoomVersionId::V11;

/// The rules of a supported room version.
pub fn rules_for(version: &RoomVersionId) -> ApiResult<RoomVersionRules> {
    match version {
        RoomVersionId::V10 => Ok(RoomVersionRules::V10),
        RoomVersionId::V11 => Ok(RoomVersionRules::V11),
        other => Err(ApiError::unsupported_room_version(format!(
            "Room version {other} is not supported; use 10 or 11"
        ))),
    }
}

fn sep_prefix(part: &[u8]) -> Vec<u8> {
    let mut p = part.to_vec();
    p.push(0xff);
    p
}

/// The room store and event builder.
pub struct Rooms {
    db: Db,
    identity: Arc<Identity>,
    stream: Arc<Stream>,
    t: Tables,
    groups: state::StateGroups,
    /// Parsed state events: every event is authorised against the same few (create, power
    /// levels, members), so they are parsed once. Entries are immutable except by redaction,
    /// which evicts them.
    state_cache: std::sync::Mutex<std::collections::HashMap<OwnedEventId, (Pdu, StoredPdu)>>,
}

/// Most state events kept parsed.
const STATE_CACHE_ENTRIES: usize = 20_000;

impl Rooms {
    /// How many rooms this gateway knows and how many events it stores (walks two tables:
    /// for metrics).
    pub fn counts(&self) -> ApiResult<(u64, u64)> {
        Ok((self.t.meta.count(&self.db)?, self.t.pdus.count(&self.db)?))
    }

    /// Opens the room tables.
    pub fn new(db: Db, identity: Arc<Identity>, stream: Arc<Stream>) -> Self {
        Self {
            db,
            identity,
            stream,
            t: Tables::new(),
            groups: state::StateGroups::new(),
            state_cache: Default::default(),
        }
    }

    /// This gateway's identity (the signer of local events).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Runs `f` on a transaction over `room_id` and commits everything it appended atomically.
    /// `version` is needed only when creating the room.
    pub async fn write<T>(
        &self,
        room_id: &RoomId,
        version: Option<RoomVersionId>,
        f: impl FnOnce(&mut RoomTxn<'_>) -> ApiResult<T>,
    ) -> ApiResult<(T, Vec<Pdu>)> {
        let ((value, pdus), _) = self
            .stream
            .commit(|positions, batch| {
                let mut txn = RoomTxn::open(self, room_id, version, positions, batch)?;
                let value = f(&mut txn)?;
                let pdus = txn.finish()?;
                Ok((value, pdus))
            })
            .await?;
        // A redaction rewrote its target: drop any parse cached before the rewrite landed.
        for pdu in &pdus {
            if let Some(target) = &pdu.redacts {
                self.evict(target);
            }
        }
        Ok((value, pdus))
    }

    /// Metadata of a room this gateway knows.
    pub fn meta(&self, room_id: &RoomId) -> ApiResult<Option<RoomMeta>> {
        Ok(self.t.meta.get(&self.db, room_id.as_bytes())?)
    }

    /// Every room this gateway knows.
    pub fn all_rooms(&self) -> ApiResult<Vec<OwnedRoomId>> {
        Ok(self
            .t
            .meta
            .scan_prefix(&self.db, b"")?
            .into_iter()
            .filter_map(|(k, _)| RoomId::parse(String::from_utf8(k).ok()?).ok())
            .collect())
    }

    /// A stored PDU and its parsed view.
    pub fn get_pdu(&self, event_id: &ruma::EventId) -> ApiResult<Option<(Pdu, StoredPdu)>> {
        if let Some(hit) = self.cache().get(event_id) {
            return Ok(Some(hit.clone()));
        }
        let Some(stored) = self.t.pdus.get(&self.db, event_id.as_bytes())? else {
            return Ok(None);
        };
        let mut pdu = Pdu::parse(event_id.to_owned(), &stored.json)?;
        pdu.rejected = stored.status == EventStatus::Rejected;
        if pdu.is_state() {
            let mut cache = self.cache();
            if cache.len() >= STATE_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(event_id.to_owned(), (pdu.clone(), stored.clone()));
        }
        Ok(Some((pdu, stored)))
    }

    fn cache(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<OwnedEventId, (Pdu, StoredPdu)>> {
        self.state_cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops a cached parse (the stored event changed).
    pub(crate) fn evict(&self, event_id: &ruma::EventId) {
        self.cache().remove(event_id);
    }

    /// A stored PDU that clients may see: accepted (not rejected, soft-failed or an outlier).
    pub fn get_visible_pdu(&self, event_id: &ruma::EventId) -> ApiResult<Option<(Pdu, StoredPdu)>> {
        Ok(self
            .get_pdu(event_id)?
            .filter(|(_, stored)| stored.status.is_accepted()))
    }

    /// The current state entry for `(event_type, state_key)`.
    pub fn state_entry(
        &self,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
    ) -> ApiResult<Option<StateEntry>> {
        Ok(self.t.state.get(
            &self.db,
            &key(&[
                room_id.as_bytes(),
                event_type.as_bytes(),
                state_key.as_bytes(),
            ]),
        )?)
    }

    /// The current state event for `(event_type, state_key)`.
    pub fn state_pdu(
        &self,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
    ) -> ApiResult<Option<(Pdu, StoredPdu)>> {
        match self.state_entry(room_id, event_type, state_key)? {
            Some(entry) => self.get_pdu(&entry.event_id),
            None => Ok(None),
        }
    }

    /// The content of the current state event for `(event_type, state_key)`.
    pub fn state_content(
        &self,
        room_id: &RoomId,
        event_type: &str,
        state_key: &str,
    ) -> ApiResult<Option<Value>> {
        Ok(self
            .state_pdu(room_id, event_type, state_key)?
            .map(|(p, _)| p.content_value()))
    }

    /// The whole current state: `((type, state_key), entry)`.
    pub fn current_state(
        &self,
        room_id: &RoomId,
    ) -> ApiResult<Vec<((String, String), StateEntry)>> {
        let prefix = sep_prefix(room_id.as_bytes());
        Ok(self
            .t
            .state
            .scan_prefix(&self.db, &prefix)?
            .into_iter()
            .filter_map(|(k, v)| {
                let rest = &k[prefix.len()..];
                let split = rest.iter().position(|b| *b == 0xff)?;
                let ty = String::from_utf8(rest[..split].to_vec()).ok()?;
                let sk = String::from_utf8(rest[split + 1..].to_vec()).ok()?;
                Some(((ty, sk), v))
            })
            .collect())
    }

    /// A user's current membership in a room (`join`, `invite`, `leave`, `ban`, `knock`).
    pub fn membership(&self, room_id: &RoomId, user_id: &UserId) -> ApiResult<Option<String>> {
        Ok(self
            .t
            .members
            .get(&self.db, &key(&[room_id.as_bytes(), user_id.as_bytes()]))?
            .map(|m| m.membership))
    }

    /// Fails with M_FORBIDDEN unless the user is joined.
    pub fn require_joined(&self, room_id: &RoomId, user_id: &UserId) -> ApiResult<()> {
        if self.membership(room_id, user_id)?.as_deref() == Some("join") {
            Ok(())
        } else {
            Err(ApiError::forbidden("You are not joined to this room"))
        }
    }

    /// Every room a user has a membership in, with that membership.
    pub fn user_rooms(&self, user_id: &UserId) -> ApiResult<Vec<(OwnedRoomId, UserRoom)>> {
        let prefix = sep_prefix(user_id.as_bytes());
        Ok(self
            .t
            .user_rooms
            .scan_prefix(&self.db, &prefix)?
            .into_iter()
            .filter_map(|(k, v)| {
                let room = String::from_utf8(k[prefix.len()..].to_vec()).ok()?;
                Some((RoomId::parse(room).ok()?, v))
            })
            .collect())
    }

    /// Rooms the user is joined to.
    pub fn joined_rooms(&self, user_id: &UserId) -> ApiResult<Vec<OwnedRoomId>> {
        Ok(self
            .user_rooms(user_id)?
            .into_iter()
            .filter(|(_, r)| r.membership == "join")
            .map(|(id, _)| id)
            .collect())
    }

    /// Every member entry of a room.
    pub fn members(&self, room_id: &RoomId) -> ApiResult<Vec<(OwnedUserId, MemberEntry)>> {
        let prefix = sep_prefix(room_id.as_bytes());
        Ok(self
            .t
            .members
            .scan_prefix(&self.db, &prefix)?
            .into_iter()
            .filter_map(|(k, v)| {
                let user = String::from_utf8(k[prefix.len()..].to_vec()).ok()?;
                Some((UserId::parse(user).ok()?, v))
            })
            .collect())
    }

    /// Whether two users share a joined room.
    pub fn share_a_room(&self, a: &UserId, b: &UserId) -> ApiResult<bool> {
        for room in self.joined_rooms(a)? {
            if self.membership(&room, b)?.as_deref() == Some("join") {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Hides a room the user has left from their room lists.
    pub async fn forget(&self, room_id: &RoomId, user_id: &UserId) -> ApiResult<()> {
        let mut b = Batch::new();
        self.t
            .user_rooms
            .delete(&mut b, &key(&[user_id.as_bytes(), room_id.as_bytes()]));
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(())
    }

    /// Timeline entries `(pos, event_id)` of a room: backwards from `from` (positions `<= from`,
    /// newest first) or forwards (positions `> from`, oldest first).
    pub fn timeline(
        &self,
        room_id: &RoomId,
        from: u64,
        backwards: bool,
        limit: usize,
    ) -> ApiResult<Vec<(u64, OwnedEventId)>> {
        let prefix = sep_prefix(room_id.as_bytes());
        // Backwards ranges exclude their start, forwards ranges include it: both start at from+1.
        let start = match from.checked_add(1) {
            Some(s) => u64_be(s).to_vec(),
            None => vec![0xff; 9],
        };
        Ok(self
            .t
            .timeline
            .range(&self.db, &prefix, &start, backwards, limit)?
            .into_iter()
            .filter_map(|(k, v)| {
                let pos = u64_from_be(&k)?;
                let id = ruma::EventId::parse(String::from_utf8(v).ok()?).ok()?;
                Some((pos, id))
            })
            .collect())
    }

    /// The event a device already sent with this transaction id.
    pub fn txn_event(
        &self,
        user: &UserId,
        device: &str,
        txn: &str,
    ) -> ApiResult<Option<OwnedEventId>> {
        Ok(self
            .t
            .txns
            .get(
                &self.db,
                &key(&[user.as_bytes(), device.as_bytes(), txn.as_bytes()]),
            )?
            .and_then(|v| ruma::EventId::parse(String::from_utf8(v).ok()?).ok()))
    }

    /// The room an alias points to.
    pub fn resolve_alias(&self, alias: &RoomAliasId) -> ApiResult<Option<OwnedRoomId>> {
        Ok(self.t.aliases.get(&self.db, alias.as_bytes())?)
    }

    /// Points `alias` at `room_id`; fails if it is taken.
    pub async fn set_alias(&self, alias: &RoomAliasId, room_id: &RoomId) -> ApiResult<()> {
        let ((), _) = self
            .stream
            .commit(|_, batch| {
                if self.t.aliases.get(&self.db, alias.as_bytes())?.is_some() {
                    return Err(ApiError::room_in_use("Room alias already taken"));
                }
                self.t
                    .aliases
                    .put(batch, alias.as_bytes(), &room_id.to_owned())?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Removes an alias.
    pub async fn remove_alias(&self, alias: &RoomAliasId) -> ApiResult<()> {
        let mut b = Batch::new();
        self.t.aliases.delete(&mut b, alias.as_bytes());
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(())
    }

    /// All aliases of a room.
    pub fn aliases_of(&self, room_id: &RoomId) -> ApiResult<Vec<OwnedRoomAliasId>> {
        Ok(self
            .t
            .aliases
            .scan_prefix(&self.db, b"")?
            .into_iter()
            .filter(|(_, r)| r == room_id)
            .filter_map(|(k, _)| RoomAliasId::parse(String::from_utf8(k).ok()?).ok())
            .collect())
    }

    /// Publishes a room in (or removes it from) the public room directory.
    pub async fn set_public(&self, room_id: &RoomId, public: bool) -> ApiResult<()> {
        let mut b = Batch::new();
        if public {
            self.t.directory.put(&mut b, room_id.as_bytes(), &true)?;
        } else {
            self.t.directory.delete(&mut b, room_id.as_bytes());
        }
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(())
    }

    /// Whether a room is in the public directory.
    pub fn is_public(&self, room_id: &RoomId) -> ApiResult<bool> {
        Ok(self
            .t
            .directory
            .get(&self.db, room_id.as_bytes())?
            .is_some())
    }

    /// Rooms in the public directory.
    pub fn public_rooms(&self) -> ApiResult<Vec<OwnedRoomId>> {
        Ok(self
            .t
            .directory
            .scan_prefix(&self.db, b"")?
            .into_iter()
            .filter_map(|(k, _)| RoomId::parse(String::from_utf8(k).ok()?).ok())
            .collect())
    }

    /// Whether `user_id` may see the event at stream position `pos` in `room_id` under the
    /// room's history visibility.
    pub fn can_see(&self, room_id: &RoomId, user_id: &UserId, pos: u64) -> ApiResult<bool> {
        visibility::can_see(&self.db, &self.t, room_id, user_id, pos)
    }
}
