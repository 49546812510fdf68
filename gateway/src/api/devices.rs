//! Device management: `GET /devices`, `GET/PUT/DELETE /devices/{deviceId}`,
//! `POST /delete_devices`. Deletion needs password UIA and removes the device's keys too.

use std::sync::Arc;

use axum::{extract::State, Router};
use ruma::{
    api::client::device::{
        delete_device::v3 as delete_one, delete_devices::v3 as delete_many,
        get_device::v3 as get_one, get_devices::v3 as get_all, update_device::v3 as update, Device,
    },
    MilliSecondsSinceUnixEpoch, OwnedDeviceId, UInt,
};

use super::{add, Ruma, RumaResponse, RumaResult};
use crate::{
    error::ApiError,
    service::{keys::remove_device, uiaa, users::DeviceRecord, Gateway},
};

fn device(id: OwnedDeviceId, record: DeviceRecord) -> Device {
    let mut d = Device::new(id);
    d.display_name = record.display_name;
    d.last_seen_ip = record.last_seen_ip;
    d.last_seen_ts = Some(MilliSecondsSinceUnixEpoch(UInt::new_saturating(
        record.last_seen_ts,
    )));
    d
}

async fn list(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<get_all::Request>,
) -> RumaResult<get_all::Response> {
    let caller = req.caller()?;
    let devices = gw
        .users
        .devices(&caller.user_id)?
        .into_iter()
        .map(|(id, r)| device(id, r))
        .collect();
    Ok(RumaResponse(get_all::Response::new(devices)))
}

async fn get(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<get_one::Request>,
) -> RumaResult<get_one::Response> {
    let caller = req.caller()?;
    let id = &req.body.device_id;
    let record = gw
        .users
        .device(&caller.user_id, id.as_str())?
        .ok_or_else(|| ApiError::not_found("Unknown device"))?;
    Ok(RumaResponse(get_one::Response::new(device(
        id.clone(),
        record,
    ))))
}

async fn rename(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<update::Request>,
) -> RumaResult<update::Response> {
    let caller = req.caller()?;
    let id = req.body.device_id.as_str();
    if gw.users.device(&caller.user_id, id)?.is_none() {
        return Err(ApiError::not_found("Unknown device"));
    }
    if let Some(name) = &req.body.display_name {
        gw.users
            .rename_device(&caller.user_id, id, Some(name.clone()))
            .await?;
        // The name is shown to other users in `/keys/query`.
        if gw.keys.device_keys(&caller.user_id, id)?.is_some() {
            gw.keys.record_change(&caller.user_id).await?;
        }
    }
    Ok(RumaResponse(update::Response::new()))
}

async fn delete(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<delete_one::Request>,
) -> RumaResult<delete_one::Response> {
    let caller = req.caller()?;
    uiaa::require_password(&gw, &caller.user_id, req.json.as_ref()).await?;
    remove_device(&gw, &caller.user_id, req.body.device_id.as_str()).await?;
    Ok(RumaResponse(delete_one::Response::new()))
}

async fn delete_several(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<delete_many::Request>,
) -> RumaResult<delete_many::Response> {
    let caller = req.caller()?;
    uiaa::require_password(&gw, &caller.user_id, req.json.as_ref()).await?;
    for id in &req.body.devices {
        remove_device(&gw, &caller.user_id, id.as_str()).await?;
    }
    Ok(RumaResponse(delete_many::Response::new()))
}

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    let r = add::<get_all::Request, _, _>(r, list);
    let r = add::<get_one::Request, _, _>(r, get);
    let r = add::<update::Request, _, _>(r, rename);
    let r = add::<delete_one::Request, _, _>(r, delete);
    add::<delete_many::Request, _, _>(r, delete_several)
}
