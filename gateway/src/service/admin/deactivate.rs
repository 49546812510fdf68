//! Deactivating an account: leave every joined room, delete every device (and its keys),
//! drop the password. Shared by `/account/deactivate` and the admin API.

use ruma::UserId;

use crate::{error::ApiResult, service::Gateway};

/// Deactivates `user` (a local account); a room that cannot be left is logged and skipped.
pub async fn deactivate(gw: &Gateway, user: &UserId) -> ApiResult<()> {
    for room in gw.rooms.joined_rooms(user)? {
        let leaver = user.to_owned();
        let leave = gw
            .rooms
            .write(&room, None, |txn| {
                txn.append(
                    &leaver,
                    "m.room.member",
                    Some(leaver.as_str()),
                    serde_json::json!({"membership": "leave"}),
                    None,
                )
            })
            .await;
        if let Err(e) = leave {
            tracing::warn!(room = %room, error = %e, "leave on deactivation failed");
        }
    }
    for (device_id, _) in gw.users.devices(user)? {
        crate::service::keys::remove_device(gw, user, device_id.as_str()).await?;
    }
    if let Some(mut record) = gw.users.get(user)? {
        record.deactivated = true;
        record.password_hash = None;
        gw.users.save(user, &record).await?;
    }
    Ok(())
}
