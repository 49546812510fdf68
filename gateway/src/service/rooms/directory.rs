//! Who may publish a room in (or remove it from) the public room directory: a joined member
//! with the power to send `m.room.canonical_alias`, as in Synapse. Publishing shows the room's
//! name, topic and member count to anonymous clients, so an ordinary member must not decide it.

use ruma::{RoomId, UserId};

use super::Rooms;
use crate::error::{ApiError, ApiResult};

impl Rooms {
    /// `user` publishes `room` in the directory (or removes it): 404 for an unknown room, 403
    /// without the power to send `m.room.canonical_alias`.
    pub async fn set_public_as(&self, user: &UserId, room: &RoomId, public: bool) -> ApiResult<()> {
        if self.meta(room)?.is_none() {
            return Err(ApiError::not_found("Unknown room"));
        }
        if !self.may_send_state(room, user, "m.room.canonical_alias")? {
            return Err(ApiError::forbidden(
                "You need the power to change the room's aliases to publish it",
            ));
        }
        self.set_public(room, public).await
    }
}
