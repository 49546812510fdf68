//! What another gateway may read of a room's history.
//!
//! A gateway may read an event when one of its users may (history visibility at the event,
//! [`super::visibility`]): `world_readable` and `shared` history is readable by any gateway with a
//! member now, `invited` and `joined` history only by gateways whose users were invited or
//! joined when it was sent. Other events still go out, so the asker's DAG stays whole and
//! their signatures verify, but redacted: their content never leaves this gateway (the asker
//! sees a content-hash mismatch and stores the event redacted, as the spec says).

use ruma::{canonical_json::redact, CanonicalJsonObject, RoomId, ServerName};
use serde_json::value::{to_raw_value, RawValue};

use super::{Rooms, StoredPdu};
use crate::error::{ApiError, ApiResult};

/// The users of one gateway who have (or had) a membership in one room, for repeated
/// visibility checks.
pub struct ServerView<'a> {
    rooms: &'a Rooms,
    room: &'a RoomId,
    users: Vec<ruma::OwnedUserId>,
}

impl Rooms {
    /// What `server` may read of `room`'s history (see the module documentation).
    pub fn server_view<'a>(
        &'a self,
        room: &'a RoomId,
        server: &ServerName,
    ) -> ApiResult<ServerView<'a>> {
        let users = self
            .members(room)?
            .into_iter()
            .map(|(u, _)| u)
            .filter(|u| u.server_name() == server)
            .collect();
        Ok(ServerView {
            rooms: self,
            room,
            users,
        })
    }
}

impl ServerView<'_> {
    /// Whether a user of the gateway may read the event at stream position `pos`.
    pub fn can_read(&self, pos: u64) -> ApiResult<bool> {
        for user in &self.users {
            if self.rooms.can_see(self.room, user, pos)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The gateway's users (with a membership in the room, now or before).
    pub fn users(&self) -> &[ruma::OwnedUserId] {
        &self.users
    }

    /// Indexes into [`Self::users`] of those who may read the event at stream position `pos`.
    pub fn readers(&self, pos: u64) -> ApiResult<Vec<u16>> {
        let mut out = Vec::new();
        for (i, user) in self.users.iter().enumerate() {
            if self.rooms.can_see(self.room, user, pos)? {
                out.push(u16::try_from(i).unwrap_or(u16::MAX));
            }
        }
        Ok(out)
    }

    /// The event as the gateway may receive it: whole when it may read it, else redacted.
    pub fn pdu(&self, stored: &StoredPdu) -> ApiResult<Box<RawValue>> {
        if self.can_read(stored.pos)? {
            return Ok(stored.json.clone());
        }
        let object: CanonicalJsonObject = serde_json::from_str(stored.json.get())?;
        let rules = self.rooms.rules_of(self.room)?;
        let redacted = redact(object, &rules.redaction, None)
            .map_err(|e| ApiError::internal(format!("redaction failed: {e}")))?;
        Ok(to_raw_value(&redacted)?)
    }
}
