//! Rooms an admin blocked (Synapse's `block: true` of the room deletion API): no local user
//! may join, be invited into, knock on or create a room with a blocked id, by any path.
//! The list lives in its own table, outside the room tables a purge removes; Synapse's
//! `PUT /_synapse/admin/v1/rooms/{roomId}/block` sets or lifts a block.

use ruma::{RoomId, UserId};
use serde::{Deserialize, Serialize};
use storage::{Batch, Table};

use super::Rooms;
use crate::error::{ApiError, ApiResult};

/// Why and by whom a room was blocked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Block {
    /// The admin who blocked it.
    pub user_id: String,
}

fn table() -> Table<Block> {
    Table::new("blocked_rooms")
}

/// The error every refused join, invite, knock or create of a blocked room gets.
pub fn blocked_error() -> ApiError {
    ApiError::forbidden("This room has been blocked on this server")
}

impl Rooms {
    /// Records `room` as blocked by `by` (idempotent).
    pub async fn block(&self, room: &RoomId, by: &UserId) -> ApiResult<()> {
        let mut b = Batch::new();
        table().put(
            &mut b,
            room.as_bytes(),
            &Block {
                user_id: by.to_string(),
            },
        )?;
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(())
    }

    /// Lifts the block of `room` (a no-op if it is not blocked).
    pub async fn unblock(&self, room: &RoomId) -> ApiResult<()> {
        let mut b = Batch::new();
        table().delete(&mut b, room.as_bytes());
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(())
    }

    /// The block of `room`, if it is blocked.
    pub fn blocked(&self, room: &RoomId) -> ApiResult<Option<Block>> {
        Ok(table().get(&self.db, room.as_bytes())?)
    }

    /// 403 `M_FORBIDDEN` ("This room has been blocked on this server") if `room` is blocked.
    pub fn refuse_blocked(&self, room: &RoomId) -> ApiResult<()> {
        match self.blocked(room)? {
            Some(_) => Err(blocked_error()),
            None => Ok(()),
        }
    }
}
