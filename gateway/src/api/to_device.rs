//! `PUT /sendToDevice/{eventType}/{txnId}`.

use std::sync::Arc;

use axum::{extract::State, Router};
use ruma::{
    api::client::to_device::send_event_to_device::v3 as send, to_device::DeviceIdOrAllDevices,
};

use super::{add, keys::json_of, Ruma, RumaResponse, RumaResult};
use crate::service::{
    to_device::{Messages, Recipient},
    Gateway,
};

async fn send_to_device(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<send::Request>,
) -> RumaResult<send::Response> {
    let caller = req.caller()?;
    let mut messages = Messages::new();
    for (user, targets) in &req.body.messages {
        let entry = messages.entry(user.clone()).or_default();
        for (target, content) in targets {
            let recipient = match target {
                DeviceIdOrAllDevices::DeviceId(d) => Recipient::Device(d.clone()),
                DeviceIdOrAllDevices::AllDevices => Recipient::AllDevices,
                // `DeviceIdOrAllDevices` is non-exhaustive upstream.
                #[allow(unreachable_patterns)]
                _ => continue,
            };
            entry.insert(recipient, json_of(content)?);
        }
    }
    gw.to_device
        .send(
            &gw.users,
            gw.server_name(),
            &caller.user_id,
            caller.device_id.as_str(),
            req.body.txn_id.as_str(),
            &req.body.event_type.to_string(),
            &messages,
        )
        .await?;
    Ok(RumaResponse(send::Response::new()))
}

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    add::<send::Request, _, _>(r, send_to_device)
}
