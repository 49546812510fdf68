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
    uiaa::require_password(&gw, &caller.user_id, req.ip, req.json.as_ref()).await?;
    remove_device(&gw, &caller.user_id, req.body.device_id.as_str()).await?;
    Ok(RumaResponse(delete_one::Response::new()))
}

async fn delete_several(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<delete_many::Request>,
) -> RumaResult<delete_many::Response> {
    let caller = req.caller()?;
    uiaa::require_password(&gw, &caller.user_id, req.ip, req.json.as_ref()).await?;
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

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};
    use serde_json::json;

    use crate::api::e2ee_testing::{call, gateway, user, PASSWORD};

    #[tokio::test]
    async fn devices_list_rename_and_delete_with_uia() {
        let (gw, app) = gateway();
        let a1 = user(&gw, "alice", "A1").await;
        let a2 = user(&gw, "alice", "A2").await;
        let uid = ruma::user_id!("@alice:test.local");
        let upload = json!({
            "device_keys": {"user_id": uid, "device_id": "A2", "algorithms": [],
                            "keys": {"ed25519:A2": "k", "curve25519:A2": "c"}, "signatures": {}},
            "one_time_keys": {"signed_curve25519:X": {"key": "x"}},
        });
        let (status, _) = call(
            &app,
            Method::POST,
            "/_matrix/client/v3/keys/upload",
            &a2,
            Some(upload),
        )
        .await;
        assert_eq!(status, StatusCode::OK);

        let (status, body) = call(&app, Method::GET, "/_matrix/client/v3/devices", &a1, None).await;
        assert_eq!(status, StatusCode::OK);
        let ids: Vec<&str> = body["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .filter_map(|d| d["device_id"].as_str())
            .collect();
        assert_eq!(ids, vec!["A1", "A2"]);

        let before = gw.stream.current();
        let (status, _) = call(
            &app,
            Method::PUT,
            "/_matrix/client/v3/devices/A2",
            &a1,
            Some(json!({"display_name": "Phone"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (_, body) = call(
            &app,
            Method::GET,
            "/_matrix/client/v3/devices/A2",
            &a1,
            None,
        )
        .await;
        assert_eq!(body["display_name"], "Phone");
        assert_eq!(
            gw.keys
                .changed_users(before, gw.stream.current())
                .expect("c"),
            vec![uid]
        );
        let (status, body) = call(
            &app,
            Method::GET,
            "/_matrix/client/v3/devices/NOPE",
            &a1,
            None,
        )
        .await;
        assert_eq!(
            (status, body["errcode"].clone()),
            (StatusCode::NOT_FOUND, json!("M_NOT_FOUND"))
        );

        // Deleting needs the password.
        let path = "/_matrix/client/v3/devices/A2";
        let (status, body) = call(&app, Method::DELETE, path, &a1, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["flows"], json!([{"stages": ["m.login.password"]}]));
        let auth = |pw: &str| {
            json!({"auth": {"type": "m.login.password", "password": pw,
                             "identifier": {"type": "m.id.user", "user": "alice"}}})
        };
        let (status, _) = call(&app, Method::DELETE, path, &a1, Some(auth("nope"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let before = gw.stream.current();
        let (status, body) = call(&app, Method::DELETE, path, &a1, Some(auth(PASSWORD))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(gw.users.device(uid, "A2").expect("d").is_none());
        assert!(gw.keys.device_keys(uid, "A2").expect("k").is_none());
        assert_eq!(
            gw.keys.one_time_key_counts(uid, "A2").expect("c")["signed_curve25519"],
            0
        );
        assert_eq!(
            gw.keys
                .changed_users(before, gw.stream.current())
                .expect("c"),
            vec![uid]
        );
        // The deleted device's token no longer works.
        let (status, body) = call(&app, Method::GET, "/_matrix/client/v3/devices", &a2, None).await;
        assert_eq!(
            (status, body["errcode"].clone()),
            (StatusCode::UNAUTHORIZED, json!("M_UNKNOWN_TOKEN"))
        );

        // delete_devices too.
        let a3 = user(&gw, "alice", "A3").await;
        let _ = a3;
        let (status, _) = call(
            &app,
            Method::POST,
            "/_matrix/client/v3/delete_devices",
            &a1,
            Some(json!({"devices": ["A3"]})),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let mut body = auth(PASSWORD);
        body["devices"] = json!(["A3"]);
        let (status, _) = call(
            &app,
            Method::POST,
            "/_matrix/client/v3/delete_devices",
            &a1,
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(gw.users.device(uid, "A3").expect("d").is_none());
    }
}
