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
    crate::service::edus::to_device(
        &gw,
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

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};
    use serde_json::json;

    use crate::api::e2ee_testing::{call, gateway, user};

    #[tokio::test]
    async fn send_to_device_is_idempotent_and_reaches_every_device() {
        let (gw, app) = gateway();
        let alice = user(&gw, "alice", "ADEV").await;
        user(&gw, "bob", "B1").await;
        user(&gw, "bob", "B2").await;
        let body = json!({"messages": {"@bob:test.local": {"*": {"hello": 1}}}});
        let path = "/_matrix/client/v3/sendToDevice/m.room_key_request/txn1";
        for _ in 0..2 {
            let (status, res) = call(&app, Method::PUT, path, &alice, Some(body.clone())).await;
            assert_eq!(status, StatusCode::OK, "{res}");
            assert_eq!(res, json!({}));
        }
        let bob = ruma::user_id!("@bob:test.local");
        let to = gw.stream.current();
        for device in ["B1", "B2"] {
            let msgs = gw
                .to_device
                .take_for_sync(bob, device, 0, to, 100)
                .expect("take");
            assert_eq!(
                msgs,
                vec![
                    json!({"type": "m.room_key_request", "sender": "@alice:test.local",
                            "content": {"hello": 1}})
                ]
            );
        }
        // A new transaction id is a new message.
        let path2 = "/_matrix/client/v3/sendToDevice/m.room_key_request/txn2";
        call(&app, Method::PUT, path2, &alice, Some(body)).await;
        let msgs = gw
            .to_device
            .take_for_sync(bob, "B1", to, gw.stream.current(), 100)
            .expect("take");
        assert_eq!(msgs.len(), 1);
        assert_eq!(gw.to_device.pending_count(bob, "B1").expect("n"), 1);
    }
}
