//! Deleting a room as Synapse's admin API does (`DELETE /_synapse/admin/v{1,2}/rooms/{roomId}`):
//! optionally block it, make every local member leave (a real leave event through the
//! normal write path, so other gateways in the room see it), optionally move them into a new
//! room with a notice, take the room's local aliases and directory entry away, then
//! optionally purge what is stored about it ([`crate::service::rooms::purge`]).

use std::time::Duration;

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    error::{ApiError, ApiResult},
    service::{
        rooms::{membership, purge::purge, CreateRoom},
        Gateway,
    },
};

/// Synapse's default name of the room kicked users are moved into.
pub const DEFAULT_ROOM_NAME: &str = "Content Violation Notification";

/// Synapse's default first message in that room.
pub const DEFAULT_MESSAGE: &str =
    "Sharing illegal content on this server is not permitted and rooms in violation will be blocked.";

/// The body of a deletion request (Synapse's field names and defaults; like Synapse, other
/// fields are ignored).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct DeleteRoom {
    /// Local user who creates a new room the members are moved into.
    #[serde(default)]
    pub new_room_user_id: Option<OwnedUserId>,
    /// Name of that room.
    #[serde(default)]
    pub room_name: Option<String>,
    /// First message posted there.
    #[serde(default)]
    pub message: Option<String>,
    /// Refuse later local joins, invites and creates of this room id.
    #[serde(default)]
    pub block: bool,
    /// Remove the room's data from this gateway.
    #[serde(default = "yes")]
    pub purge: bool,
    /// Purge even if local users could not be made to leave.
    #[serde(default)]
    pub force_purge: bool,
}

fn yes() -> bool {
    true
}

impl Default for DeleteRoom {
    fn default() -> Self {
        Self {
            new_room_user_id: None,
            room_name: None,
            message: None,
            block: false,
            purge: true,
            force_purge: false,
        }
    }
}

/// What the shutdown did (Synapse's `shutdown_room` object; also the v1 response).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShutdownRoom {
    /// Local users who left the room.
    pub kicked_users: Vec<OwnedUserId>,
    /// Local users whose leave failed.
    pub failed_to_kick_users: Vec<OwnedUserId>,
    /// Local aliases that pointed at the room (moved to the new room if there is one,
    /// removed otherwise).
    pub local_aliases: Vec<String>,
    /// The room the users were moved into.
    pub new_room_id: Option<OwnedRoomId>,
}

/// Why a deletion cannot start or could not finish.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// Local users are still in the room and `force_purge` was not set.
    #[error("{0} local users could not be removed; not purging without force_purge")]
    UsersRemain(usize),
}

impl From<DeleteError> for ApiError {
    fn from(e: DeleteError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// Checks a request before any work: the room must be stored here unless it is only to be
/// blocked (404 `M_NOT_FOUND`), and `new_room_user_id` must be a local user id (400
/// `M_INVALID_PARAM`). Returns whether the room is stored here.
pub fn check(gw: &Gateway, room: &RoomId, req: &DeleteRoom) -> ApiResult<bool> {
    if let Some(user) = &req.new_room_user_id {
        if user.server_name() != gw.server_name() {
            return Err(ApiError::invalid_param(format!(
                "new_room_user_id must be a user of this server: {user}"
            )));
        }
    }
    let known = gw.rooms.meta(room)?.is_some();
    if !known && !req.block {
        return Err(ApiError::not_found("Room not found"));
    }
    Ok(known)
}

/// Runs a whole deletion (block, shutdown, purge) by `admin`, recording what was done in
/// `result` as it goes (so a failure still reports who left). A room not stored here is only
/// blocked (when asked; see [`check`]).
pub async fn delete_room(
    gw: &Gateway,
    admin: &UserId,
    room: &RoomId,
    req: &DeleteRoom,
    result: &mut ShutdownRoom,
) -> ApiResult<()> {
    let known = check(gw, room, req)?;
    if req.block {
        gw.rooms.block(room, admin).await?;
    }
    if !known {
        return Ok(());
    }
    shutdown(gw, room, req, result).await?;
    if req.purge {
        let remaining = membership::local_joined(gw, room)?.len();
        if remaining > 0 && !req.force_purge {
            return Err(DeleteError::UsersRemain(remaining).into());
        }
        leaves_sent(gw, room).await?;
        if !result.kicked_users.is_empty() {
            // Members' waiting syncs deliver the leave before its event is purged.
            tokio::time::sleep(PURGE_GRACE).await;
        }
        purge(gw, room).await?;
    }
    Ok(())
}

/// Pause between the members' leaves and the purge, so that syncs waiting on the leave
/// answer with it first (a client that does not sync in that window never sees the leave:
/// the room just disappears from its syncs).
const PURGE_GRACE: Duration = Duration::from_secs(1);

/// Longest wait for peering to send the leaves before a purge removes them.
const SEND_WAIT: Duration = Duration::from_secs(60);

/// Waits (at most [`SEND_WAIT`]) until the room's newest event, the last leave, has gone out
/// to the other gateways in the room, so they see the members leave before the events are
/// purged here. A room with no members elsewhere does not wait; if peering does not pass the
/// event in time (or is not running) the purge goes ahead and this is logged.
async fn leaves_sent(gw: &Gateway, room: &RoomId) -> ApiResult<()> {
    let elsewhere = gw
        .rooms
        .members(room)?
        .iter()
        .any(|(u, m)| u.server_name() != gw.server_name() && m.membership == "join");
    let Some((last, _)) = gw
        .rooms
        .timeline(room, u64::MAX, true, 1)?
        .into_iter()
        .next()
    else {
        return Ok(());
    };
    if !elsewhere {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + SEND_WAIT;
    loop {
        match gw.remote.sent_past(last).await {
            Ok(true) => return Ok(()),
            Ok(false) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(false) => break,
            Err(e) => {
                tracing::warn!(room = %room, "purging without peering: {}", e.message);
                return Ok(());
            }
        }
    }
    tracing::warn!(room = %room, "purging before peering sent the leaves");
    Ok(())
}

/// Local users with a membership that keeps them in the room: joined, invited or knocking.
fn local_members(gw: &Gateway, room: &RoomId) -> ApiResult<Vec<OwnedUserId>> {
    Ok(gw
        .rooms
        .members(room)?
        .into_iter()
        .filter(|(u, m)| {
            u.server_name() == gw.server_name()
                && matches!(m.membership.as_str(), "join" | "invite" | "knock")
        })
        .map(|(u, _)| u)
        .collect())
}

/// Creates the room members are moved into, by `creator` (registered if it does not exist,
/// as Synapse does), and posts the notice.
async fn new_room(gw: &Gateway, creator: &UserId, req: &DeleteRoom) -> ApiResult<OwnedRoomId> {
    if !gw.users.exists(creator)? {
        gw.users.create(creator, None).await?;
    }
    let mut power = serde_json::Map::new();
    power.insert("users_default".into(), json!(-10));
    let new_room = gw
        .rooms
        .create(
            creator,
            CreateRoom {
                preset: "public_chat".into(),
                name: Some(
                    req.room_name
                        .clone()
                        .unwrap_or_else(|| DEFAULT_ROOM_NAME.into()),
                ),
                power_level_override: Some(power),
                ..CreateRoom::default()
            },
        )
        .await?;
    let body = req
        .message
        .clone()
        .unwrap_or_else(|| DEFAULT_MESSAGE.into());
    let sender = creator.to_owned();
    gw.rooms
        .write(&new_room, None, |txn| {
            txn.append(
                &sender,
                "m.room.message",
                None,
                json!({"msgtype": "m.text", "body": body}),
                None,
            )
        })
        .await?;
    Ok(new_room)
}

/// The shutdown half: members leave (and join the new room), aliases and the directory entry
/// go, each step recorded in `result`. Failures of single users are reported, not fatal.
pub async fn shutdown(
    gw: &Gateway,
    room: &RoomId,
    req: &DeleteRoom,
    result: &mut ShutdownRoom,
) -> ApiResult<()> {
    if let Some(creator) = &req.new_room_user_id {
        result.new_room_id = Some(new_room(gw, creator, req).await?);
    }
    // Out of the directory first, so nobody finds it while members leave.
    gw.rooms.set_public(room, false).await?;
    for user in local_members(gw, room)? {
        let left = membership::leave(gw, &user, room, None).await;
        let moved = match (&left, &result.new_room_id) {
            (Ok(()), Some(new_room)) => membership::join(gw, &user, new_room, None).await,
            (other, _) => other.clone(),
        };
        match (left, moved) {
            (Ok(()), Ok(())) => result.kicked_users.push(user),
            (Ok(()), Err(e)) => {
                tracing::warn!(user = %user, "left, but not moved into the new room: {}", e.message);
                result.kicked_users.push(user);
            }
            (Err(e), _) => {
                tracing::warn!(user = %user, room = %room, "could not remove: {}", e.message);
                result.failed_to_kick_users.push(user);
            }
        }
    }
    for alias in gw.rooms.aliases_of(room)? {
        gw.rooms
            .move_alias(&alias, result.new_room_id.as_deref())
            .await?;
        result.local_aliases.push(alias.to_string());
    }
    Ok(())
}
