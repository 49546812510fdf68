//! EDUs from other gateways: each is checked against its origin (a gateway speaks only for its
//! own users, and only in rooms where that user is joined) and handed to the same services the
//! CS API uses.

use std::time::Duration;

use ruma::{DeviceId, ServerName};

use super::{wire::Edu, Peer};
use crate::{
    error::ApiResult,
    service::to_device::{Messages, Recipient},
};

/// How long a remote user's typing flag lasts without a refresh.
const REMOTE_TYPING: Duration = Duration::from_secs(30);

/// Applies one EDU from `origin`; refused ones are counted.
pub async fn apply(peer: &Peer, origin: &ServerName, edu: Edu) -> ApiResult<()> {
    let gw = &peer.gw;
    match edu {
        Edu::Typing {
            room_id,
            user_id,
            typing,
        } => {
            if user_id.server_name() != origin
                || gw.rooms.membership(&room_id, &user_id)?.as_deref() != Some("join")
            {
                peer.stats.dropped("edu_refused");
                return Ok(());
            }
            let timeout = typing.then_some(REMOTE_TYPING);
            gw.ephemeral.set_typing(&room_id, &user_id, timeout).await
        }
        Edu::Receipt {
            room_id,
            user_id,
            event_id,
            thread_id,
            ..
        } => {
            let known = gw
                .rooms
                .get_visible_pdu(&event_id)?
                .is_some_and(|(p, _)| p.room_id == room_id);
            if user_id.server_name() != origin
                || !known
                || gw.rooms.membership(&room_id, &user_id)?.as_deref() != Some("join")
            {
                peer.stats.dropped("edu_refused");
                return Ok(());
            }
            gw.ephemeral
                .set_receipt(&room_id, &user_id, "m.read", &event_id, thread_id)
                .await
        }
        Edu::ToDevice {
            sender,
            kind,
            message_id,
            messages,
        } => {
            if sender.server_name() != origin {
                peer.stats.dropped("edu_refused");
                return Ok(());
            }
            let mut local = Messages::new();
            for (user, devices) in messages {
                if user.server_name() != gw.server_name() {
                    continue;
                }
                let entry = local.entry(user).or_default();
                for (device, content) in devices {
                    let recipient = if device == "*" {
                        Recipient::AllDevices
                    } else {
                        Recipient::Device(<&DeviceId>::from(device.as_str()).to_owned())
                    };
                    entry.insert(recipient, content);
                }
            }
            // Deduplicated per sender and message id (the transaction-id check of the
            // local path, with the origin standing in for the device).
            gw.to_device
                .send(
                    &gw.users,
                    gw.server_name(),
                    &sender,
                    origin.as_str(),
                    &message_id,
                    &kind,
                    &local,
                )
                .await
                .map(|_| ())
        }
        Edu::DeviceListUpdate { user_id } => {
            if user_id.server_name() != origin {
                peer.stats.dropped("edu_refused");
                return Ok(());
            }
            gw.keys.record_change(&user_id).await
        }
    }
}
