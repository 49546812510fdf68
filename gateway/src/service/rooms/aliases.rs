//! Who may create, delete or re-point a room alias.
//!
//! The gateway records who created each alias (in its own table beside the alias table).
//! Creating needs a join in the target room. Deleting (the only way to re-point, since a taken
//! alias cannot be overwritten) is allowed to the alias's creator or to a joined member with
//! the power to send `m.room.canonical_alias` in the room it points to, as in Synapse. There are
//! no server admins in the client API yet; operators use the `mixgate admin` command.

use ruma::{OwnedUserId, RoomAliasId, RoomId, UserId};
use storage::{Batch, Table};

use super::Rooms;
use crate::error::{ApiError, ApiResult};

/// alias → the user who created it.
fn creators() -> Table<OwnedUserId> {
    Table::new("room_alias_creators")
}

impl Rooms {
    /// `user` points `alias` (of this gateway) at `room`: they must be joined to it, and the
    /// alias must be free (400 `M_ROOM_IN_USE` otherwise).
    pub async fn create_alias_as(
        &self,
        user: &UserId,
        alias: &RoomAliasId,
        room: &RoomId,
    ) -> ApiResult<()> {
        if alias.server_name() != self.identity().server_name() {
            return Err(ApiError::invalid_param("Alias must be on this server"));
        }
        self.require_joined(room, user)?;
        let ((), _) = self
            .stream
            .commit(|_, batch| {
                if self.t.aliases.get(&self.db, alias.as_bytes())?.is_some() {
                    return Err(ApiError::room_in_use("Room alias already taken"));
                }
                self.t
                    .aliases
                    .put(batch, alias.as_bytes(), &room.to_owned())?;
                creators().put(batch, alias.as_bytes(), &user.to_owned())?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// `user` deletes `alias`: 404 if unknown, 403 unless they created it or may send
    /// `m.room.canonical_alias` in its room.
    pub async fn delete_alias_as(&self, user: &UserId, alias: &RoomAliasId) -> ApiResult<()> {
        let room = self
            .resolve_alias(alias)?
            .ok_or_else(|| ApiError::not_found("Unknown room alias"))?;
        let creator = creators().get(&self.db, alias.as_bytes())?;
        if creator.as_deref() != Some(user)
            && !self.may_send_state(&room, user, "m.room.canonical_alias")?
        {
            return Err(ApiError::forbidden(
                "Only the alias's creator or a room moderator may delete it",
            ));
        }
        let mut b = Batch::new();
        self.t.aliases.delete(&mut b, alias.as_bytes());
        creators().delete(&mut b, alias.as_bytes());
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(())
    }

    /// An admin moves `alias` to `to` (keeping who created it), or removes it with its
    /// creator record when `to` is `None`. No permission check: the caller is a server admin.
    pub async fn move_alias(&self, alias: &RoomAliasId, to: Option<&RoomId>) -> ApiResult<()> {
        let mut b = Batch::new();
        match to {
            Some(room) => self
                .t
                .aliases
                .put(&mut b, alias.as_bytes(), &room.to_owned())?,
            None => {
                self.t.aliases.delete(&mut b, alias.as_bytes());
                creators().delete(&mut b, alias.as_bytes());
            }
        }
        self.db.apply(b)?;
        self.db.flush().await?;
        Ok(())
    }
}
