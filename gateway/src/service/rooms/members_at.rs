//! Membership as it was at a stream position, from the `membership_history` index: what a
//! former member may still see of the member list (the spec's "as of their leave").

use std::collections::BTreeMap;

use ruma::{OwnedEventId, OwnedUserId, RoomId, UserId};
use storage::{key, u64_be, u64_from_be};

use super::{sep_prefix, Rooms};
use crate::error::ApiResult;

/// One member as of a position: their membership then and the member event that set it.
#[derive(Debug, Clone)]
pub struct MemberAt {
    /// `join`, `invite`, `leave`, `ban` or `knock`.
    pub membership: String,
    /// The `m.room.member` event in force at that position.
    pub event_id: OwnedEventId,
}

impl Rooms {
    /// Whether `user` was ever joined to `room` (a rejected invite or a refused knock is not).
    pub fn ever_joined(&self, room: &RoomId, user: &UserId) -> ApiResult<bool> {
        let mut prefix = key(&[room.as_bytes(), user.as_bytes()]);
        prefix.push(0xff);
        Ok(self
            .t
            .membership_history
            .scan_prefix(&self.db, &prefix)?
            .into_iter()
            .any(|(_, m)| m == "join"))
    }

    /// Up to which stream position `viewer` may see the member list of `room`: `u64::MAX`
    /// (now) for a joined member or anyone in a `world_readable` room; for a former member,
    /// the position of the change that ended their last join ("as of their leave"); `None`
    /// for someone who never joined (only invited, knocked or rejected an invite).
    pub fn member_list_horizon(&self, room: &RoomId, viewer: &UserId) -> ApiResult<Option<u64>> {
        if self.membership(room, viewer)?.as_deref() == Some("join") {
            return Ok(Some(u64::MAX));
        }
        let readable = self
            .state_content(room, "m.room.history_visibility", "")?
            .and_then(|c| c.get("history_visibility").cloned())
            == Some(serde_json::json!("world_readable"));
        if readable {
            return Ok(Some(u64::MAX));
        }
        let mut prefix = key(&[room.as_bytes(), viewer.as_bytes()]);
        prefix.push(0xff);
        let history = self.t.membership_history.scan_prefix(&self.db, &prefix)?;
        let last_join = history.iter().rposition(|(_, m)| m == "join");
        Ok(last_join
            .and_then(|i| history.get(i + 1))
            .and_then(|(k, _)| u64_from_be(k)))
    }

    /// Every member of `room` as of stream position `pos` (their last membership at or before
    /// it).
    pub fn members_at(
        &self,
        room: &RoomId,
        pos: u64,
    ) -> ApiResult<BTreeMap<OwnedUserId, MemberAt>> {
        let prefix = sep_prefix(room.as_bytes());
        let mut latest: BTreeMap<OwnedUserId, (u64, String)> = BTreeMap::new();
        for (k, membership) in self.t.membership_history.scan_prefix(&self.db, &prefix)? {
            // key: user 0xff pos(8 bytes)
            let rest = &k[prefix.len()..];
            let (Some(at), Some(user_len)) = (u64_from_be(rest), rest.len().checked_sub(9)) else {
                continue;
            };
            if at > pos {
                continue;
            }
            let Some(user) = std::str::from_utf8(&rest[..user_len])
                .ok()
                .and_then(|u| UserId::parse(u).ok())
            else {
                continue;
            };
            // Keys are in position order per user, so the last one seen wins.
            latest.insert(user, (at, membership));
        }
        let mut out = BTreeMap::new();
        for (user, (at, membership)) in latest {
            let id = self
                .t
                .timeline
                .get(&self.db, &key(&[room.as_bytes(), &u64_be(at)]))?
                .and_then(|v| ruma::EventId::parse(String::from_utf8(v).ok()?).ok());
            if let Some(event_id) = id {
                out.insert(
                    user,
                    MemberAt {
                        membership,
                        event_id,
                    },
                );
            }
        }
        Ok(out)
    }
}
