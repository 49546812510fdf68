//! Key backup endpoints: `/room_keys/version[/{version}]` and
//! `/room_keys/keys[/{roomId}[/{sessionId}]]`.
//!
//! `GET /room_keys/version` answers 404 `M_NOT_FOUND` when the user has no backup: Element
//! treats any other answer as a failure.

use std::sync::Arc;

use axum::{extract::State, Router};
use ruma::{
    api::client::backup::{
        add_backup_keys::v3 as add_keys, add_backup_keys_for_room::v3 as add_room,
        add_backup_keys_for_session::v3 as add_session, create_backup_version::v3 as create,
        delete_backup_keys::v3 as delete_keys, delete_backup_keys_for_room::v3 as delete_room,
        delete_backup_keys_for_session::v3 as delete_session,
        delete_backup_version::v3 as delete_version, get_backup_info::v3 as info,
        get_backup_keys::v3 as get_keys, get_backup_keys_for_room::v3 as get_room,
        get_backup_keys_for_session::v3 as get_session, get_latest_backup_info::v3 as latest,
        update_backup_version::v3 as update, RoomKeyBackup,
    },
    UInt,
};
use serde_json::Value;

use super::{
    add,
    keys::{convert, json_of},
    Ruma, RumaResponse, RumaResult,
};
use crate::{
    error::{ApiError, ApiResult},
    service::{
        backup::{BackupInfo, KeysChanged, RoomKeys},
        Gateway,
    },
};

fn no_backup() -> ApiError {
    ApiError::not_found("No current backup version")
}

/// The `(algorithm, count, etag, version)` of a ruma backup-info response.
fn info_parts(
    i: BackupInfo,
) -> ApiResult<(
    ruma::serde::Raw<ruma::api::client::backup::BackupAlgorithm>,
    UInt,
    String,
    String,
)> {
    Ok((
        convert(&i.algorithm)?,
        UInt::new_saturating(i.count),
        i.etag,
        i.version,
    ))
}

async fn latest_info(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<latest::Request>,
) -> RumaResult<latest::Response> {
    let caller = req.caller()?;
    let i = gw.backup.latest(&caller.user_id)?.ok_or_else(no_backup)?;
    let (a, c, e, v) = info_parts(i)?;
    Ok(RumaResponse(latest::Response::new(a, c, e, v)))
}

async fn version_info(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<info::Request>,
) -> RumaResult<info::Response> {
    let caller = req.caller()?;
    let i = gw
        .backup
        .info(&caller.user_id, &req.body.version)?
        .ok_or_else(|| ApiError::not_found("Unknown backup version"))?;
    let (a, c, e, v) = info_parts(i)?;
    Ok(RumaResponse(info::Response::new(a, c, e, v)))
}

async fn create_version(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<create::Request>,
) -> RumaResult<create::Response> {
    let caller = req.caller()?;
    let body = json_of(&req.body.algorithm)?;
    let version = gw.backup.create_version(&caller.user_id, &body).await?;
    Ok(RumaResponse(create::Response::new(version)))
}

async fn update_version(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<update::Request>,
) -> RumaResult<update::Response> {
    let caller = req.caller()?;
    let body = req.json.clone().unwrap_or(Value::Null);
    gw.backup
        .update_version(&caller.user_id, &req.body.version, &body)
        .await?;
    Ok(RumaResponse(update::Response::new()))
}

async fn delete_version(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<delete_version::Request>,
) -> RumaResult<delete_version::Response> {
    let caller = req.caller()?;
    gw.backup
        .delete_version(&caller.user_id, &req.body.version)
        .await?;
    Ok(RumaResponse(delete_version::Response::new()))
}

/// Stores keys and builds the `(etag, count)` answer.
async fn store(
    gw: &Gateway,
    user: &ruma::UserId,
    version: &str,
    keys: RoomKeys,
) -> ApiResult<(String, UInt)> {
    let KeysChanged { etag, count } = gw.backup.add_keys(user, version, &keys).await?;
    Ok((etag, UInt::new_saturating(count)))
}

async fn put_keys(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<add_keys::Request>,
) -> RumaResult<add_keys::Response> {
    let caller = req.caller()?;
    let mut keys = RoomKeys::new();
    for (room, backup) in &req.body.rooms {
        let sessions = keys.entry(room.to_string()).or_default();
        for (session, data) in &backup.sessions {
            sessions.insert(session.clone(), json_of(data)?);
        }
    }
    let (etag, count) = store(&gw, &caller.user_id, &req.body.version, keys).await?;
    Ok(RumaResponse(add_keys::Response::new(etag, count)))
}

async fn put_room_keys(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<add_room::Request>,
) -> RumaResult<add_room::Response> {
    let caller = req.caller()?;
    let mut keys = RoomKeys::new();
    let sessions = keys.entry(req.body.room_id.to_string()).or_default();
    for (session, data) in &req.body.sessions {
        sessions.insert(session.clone(), json_of(data)?);
    }
    let (etag, count) = store(&gw, &caller.user_id, &req.body.version, keys).await?;
    Ok(RumaResponse(add_room::Response::new(etag, count)))
}

async fn put_session_key(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<add_session::Request>,
) -> RumaResult<add_session::Response> {
    let caller = req.caller()?;
    let mut keys = RoomKeys::new();
    keys.entry(req.body.room_id.to_string())
        .or_default()
        .insert(
            req.body.session_id.clone(),
            json_of(&req.body.session_data)?,
        );
    let (etag, count) = store(&gw, &caller.user_id, &req.body.version, keys).await?;
    Ok(RumaResponse(add_session::Response::new(etag, count)))
}

async fn all_keys(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<get_keys::Request>,
) -> RumaResult<get_keys::Response> {
    let caller = req.caller()?;
    let keys = gw
        .backup
        .get_keys(&caller.user_id, &req.body.version, None, None)?;
    let mut rooms = std::collections::BTreeMap::new();
    for (room, sessions) in keys {
        let Ok(room) = ruma::RoomId::parse(&room) else {
            continue;
        };
        rooms.insert(room, RoomKeyBackup::new(convert(&sessions)?));
    }
    Ok(RumaResponse(get_keys::Response::new(rooms)))
}

async fn room_keys(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<get_room::Request>,
) -> RumaResult<get_room::Response> {
    let caller = req.caller()?;
    let room = req.body.room_id.as_str();
    let mut keys = gw
        .backup
        .get_keys(&caller.user_id, &req.body.version, Some(room), None)?;
    let sessions = keys.remove(room).unwrap_or_default();
    Ok(RumaResponse(get_room::Response::new(convert(&sessions)?)))
}

async fn session_key(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<get_session::Request>,
) -> RumaResult<get_session::Response> {
    let caller = req.caller()?;
    let room = req.body.room_id.as_str();
    let session = req.body.session_id.as_str();
    let keys = gw.backup.get_keys(
        &caller.user_id,
        &req.body.version,
        Some(room),
        Some(session),
    )?;
    let data = keys
        .get(room)
        .and_then(|s| s.get(session))
        .ok_or_else(|| ApiError::not_found("No key for this session"))?;
    Ok(RumaResponse(get_session::Response::new(convert(data)?)))
}

async fn remove(
    gw: &Gateway,
    user: &ruma::UserId,
    version: &str,
    room: Option<&str>,
    session: Option<&str>,
) -> ApiResult<(String, UInt)> {
    let KeysChanged { etag, count } = gw.backup.delete_keys(user, version, room, session).await?;
    Ok((etag, UInt::new_saturating(count)))
}

async fn delete_all_keys(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<delete_keys::Request>,
) -> RumaResult<delete_keys::Response> {
    let caller = req.caller()?;
    let (etag, count) = remove(&gw, &caller.user_id, &req.body.version, None, None).await?;
    Ok(RumaResponse(delete_keys::Response::new(etag, count)))
}

async fn delete_room_keys(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<delete_room::Request>,
) -> RumaResult<delete_room::Response> {
    let caller = req.caller()?;
    let room = Some(req.body.room_id.as_str());
    let (etag, count) = remove(&gw, &caller.user_id, &req.body.version, room, None).await?;
    Ok(RumaResponse(delete_room::Response::new(etag, count)))
}

async fn delete_session_key(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<delete_session::Request>,
) -> RumaResult<delete_session::Response> {
    let caller = req.caller()?;
    let (etag, count) = remove(
        &gw,
        &caller.user_id,
        &req.body.version,
        Some(req.body.room_id.as_str()),
        Some(req.body.session_id.as_str()),
    )
    .await?;
    Ok(RumaResponse(delete_session::Response::new(etag, count)))
}

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    let r = add::<latest::Request, _, _>(r, latest_info);
    let r = add::<info::Request, _, _>(r, version_info);
    let r = add::<create::Request, _, _>(r, create_version);
    let r = add::<update::Request, _, _>(r, update_version);
    let r = add::<delete_version::Request, _, _>(r, delete_version);
    let r = add::<add_keys::Request, _, _>(r, put_keys);
    let r = add::<add_room::Request, _, _>(r, put_room_keys);
    let r = add::<add_session::Request, _, _>(r, put_session_key);
    let r = add::<get_keys::Request, _, _>(r, all_keys);
    let r = add::<get_room::Request, _, _>(r, room_keys);
    let r = add::<get_session::Request, _, _>(r, session_key);
    let r = add::<delete_keys::Request, _, _>(r, delete_all_keys);
    let r = add::<delete_room::Request, _, _>(r, delete_room_keys);
    add::<delete_session::Request, _, _>(r, delete_session_key)
}

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};
    use serde_json::json;

    use crate::api::e2ee_testing::{call, gateway, user};

    fn session(idx: u64) -> serde_json::Value {
        json!({"first_message_index": idx, "forwarded_count": 0, "is_verified": false,
               "session_data": {"ephemeral": "e", "ciphertext": "c", "mac": "m"}})
    }

    #[tokio::test]
    async fn backup_lifecycle_over_http() {
        let (gw, app) = gateway();
        let alice = user(&gw, "alice", "ADEV").await;
        let version_path = "/_matrix/client/v3/room_keys/version";
        let (status, body) = call(&app, Method::GET, version_path, &alice, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["errcode"], "M_NOT_FOUND");
        // The r0 and unstable paths answer the same.
        let (status, body) = call(
            &app,
            Method::GET,
            "/_matrix/client/r0/room_keys/version",
            &alice,
            None,
        )
        .await;
        assert_eq!(
            (status, body["errcode"].clone()),
            (StatusCode::NOT_FOUND, json!("M_NOT_FOUND"))
        );

        let algorithm = json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
                               "auth_data": {"public_key": "cGs", "signatures": {}}});
        let (status, body) = call(
            &app,
            Method::POST,
            version_path,
            &alice,
            Some(algorithm.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"version": "1"}));

        let keys = json!({"rooms": {"!room:test.local": {"sessions": {"sess1": session(3)}}}});
        let (status, body) = call(
            &app,
            Method::PUT,
            "/_matrix/client/v3/room_keys/keys?version=1",
            &alice,
            Some(keys.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["count"], 1);
        let etag = body["etag"].clone();

        let (status, body) = call(&app, Method::GET, version_path, &alice, None).await;
        assert_eq!(status, StatusCode::OK);
        insta::assert_json_snapshot!("backup_version", body);
        assert_eq!(body["etag"], etag);

        // A new version makes version 1 stale.
        call(&app, Method::POST, version_path, &alice, Some(algorithm)).await;
        let (status, body) = call(
            &app,
            Method::PUT,
            "/_matrix/client/v3/room_keys/keys?version=1",
            &alice,
            Some(keys),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["errcode"], "M_WRONG_ROOM_KEYS_VERSION");
        assert_eq!(body["current_version"], "2");

        // Version 1's keys are still readable; a missing session is 404.
        let (status, body) = call(
            &app,
            Method::GET,
            "/_matrix/client/v3/room_keys/keys/!room:test.local/sess1?version=1",
            &alice,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["first_message_index"], 3);
        let (status, body) = call(
            &app,
            Method::GET,
            "/_matrix/client/v3/room_keys/keys/!room:test.local/nope?version=1",
            &alice,
            None,
        )
        .await;
        assert_eq!(
            (status, body["errcode"].clone()),
            (StatusCode::NOT_FOUND, json!("M_NOT_FOUND"))
        );
        let (status, body) = call(
            &app,
            Method::GET,
            "/_matrix/client/v3/room_keys/keys/!other:test.local?version=1",
            &alice,
            None,
        )
        .await;
        assert_eq!((status, body), (StatusCode::OK, json!({"sessions": {}})));

        let (status, _) = call(
            &app,
            Method::DELETE,
            "/_matrix/client/v3/room_keys/version/1",
            &alice,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = call(
            &app,
            Method::GET,
            "/_matrix/client/v3/room_keys/version/1",
            &alice,
            None,
        )
        .await;
        assert_eq!(
            (status, body["errcode"].clone()),
            (StatusCode::NOT_FOUND, json!("M_NOT_FOUND"))
        );
        let (status, body) = call(&app, Method::GET, version_path, &alice, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["version"], "2");
        assert_eq!(body["count"], 0);
    }
}
