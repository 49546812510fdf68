//! Read receipts and the fully-read marker a local user sets: only on an event of that room
//! which the user may see (404 `M_NOT_FOUND` otherwise), so receipts cannot point at events
//! of other rooms, invented ids, or history hidden from the user.

use ruma::{EventId, RoomId, UserId};

use crate::{
    error::{ApiError, ApiResult},
    service::Gateway,
};

/// Stores `user`'s receipt of `kind` (`m.read`, `m.read.private`) or `m.fully_read` marker on
/// `event_id` in `room`; `thread` is the receipt's thread id, if any.
pub async fn set_marker(
    gw: &Gateway,
    room: &RoomId,
    user: &UserId,
    kind: &str,
    event_id: &EventId,
    thread: Option<String>,
) -> ApiResult<()> {
    gw.rooms.require_joined(room, user)?;
    let visible = match gw.rooms.get_visible_pdu(event_id)? {
        Some((pdu, stored)) => pdu.room_id == room && gw.rooms.can_see(room, user, stored.pos)?,
        None => false,
    };
    if !visible {
        return Err(ApiError::not_found("Unknown event in this room"));
    }
    match kind {
        "m.read" | "m.read.private" => {
            gw.ephemeral
                .set_receipt(room, user, kind, event_id, thread.clone())
                .await?;
            // Private receipts never leave the gateway.
            if kind == "m.read" {
                crate::service::edus::receipt(gw, room, user, event_id, thread).await?;
            }
            Ok(())
        }
        "m.fully_read" => gw.ephemeral.set_fully_read(room, user, event_id).await,
        other => Err(ApiError::invalid_param(format!(
            "Unknown receipt type {other}"
        ))),
    }
}
