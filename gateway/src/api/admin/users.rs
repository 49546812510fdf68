//! `/_synapse/admin/v2/users…`, `v1/deactivate`, `v1/reset_password`, `v1/whois`,
//! `v1/users/{userId}/joined_rooms`.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{request::Parts, StatusCode},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{admin, body, boolean, query, uint};
use crate::{
    error::ApiError,
    service::{
        admin::{self as svc, users as s},
        Gateway,
    },
};

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    r.route("/_synapse/admin/v2/users", get(list))
        .route("/_synapse/admin/v2/users/{user_id}", get(details).put(put))
        .route("/_synapse/admin/v1/deactivate/{user_id}", post(deactivate))
        .route(
            "/_synapse/admin/v1/reset_password/{user_id}",
            post(reset_password),
        )
        .route(
            "/_synapse/admin/v1/users/{user_id}/joined_rooms",
            get(joined_rooms),
        )
        .route("/_synapse/admin/v1/whois/{user_id}", get(whois))
}

type Reply = Result<Json<Value>, ApiError>;

async fn list(State(gw): State<Arc<Gateway>>, parts: Parts) -> Reply {
    admin(&gw, &parts)?;
    let q = query(&parts);
    let page = s::list(
        &gw,
        &s::UserQuery {
            user_id: q.get("user_id").cloned(),
            name: q.get("name").cloned(),
            deactivated: boolean(&q, "deactivated")?.unwrap_or(false),
            admins: boolean(&q, "admins")?,
            from: uint(&q, "from")?.unwrap_or(0),
            limit: uint(&q, "limit")?.unwrap_or(100),
        },
    )?;
    Ok(Json(json!(page)))
}

async fn details(
    State(gw): State<Arc<Gateway>>,
    Path(user_id): Path<String>,
    parts: Parts,
) -> Reply {
    admin(&gw, &parts)?;
    let user = svc::local_user(&gw, &user_id)?;
    Ok(Json(json!(s::details(&gw, &user)?)))
}

/// The body of `PUT /v2/users/{userId}` (unknown keys, such as `threepids`, are ignored).
#[derive(Deserialize)]
struct PutBody {
    password: Option<String>,
    logout_devices: Option<bool>,
    displayname: Option<String>,
    avatar_url: Option<String>,
    admin: Option<bool>,
    deactivated: Option<bool>,
}

async fn put(
    State(gw): State<Arc<Gateway>>,
    Path(user_id): Path<String>,
    parts: Parts,
    bytes: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    admin(&gw, &parts)?;
    let b: PutBody = body(&bytes)?;
    let user = match svc::local_user(&gw, &user_id) {
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return Err(ApiError::invalid_param("Not a valid user id"))
        }
        other => other?,
    };
    let user = crate::service::users::Users::validate_localpart(user.localpart(), gw.server_name())
        .map_err(|e| ApiError::invalid_param(e.message))?;
    let (shown, created) = s::upsert(
        &gw,
        &user,
        s::UserChange {
            password: b.password,
            logout_devices: b.logout_devices.unwrap_or(true),
            displayname: b.displayname,
            avatar_url: b.avatar_url,
            admin: b.admin,
            deactivated: b.deactivated,
        },
    )
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(shown))))
}

#[derive(Deserialize)]
struct DeactivateBody {
    #[allow(dead_code)] // accepted for synadm; mixgate keeps no profile data to erase
    erase: Option<bool>,
}

async fn deactivate(
    State(gw): State<Arc<Gateway>>,
    Path(user_id): Path<String>,
    parts: Parts,
    bytes: Bytes,
) -> Reply {
    admin(&gw, &parts)?;
    let _: DeactivateBody = body(&bytes)?;
    let user = svc::local_user(&gw, &user_id)?;
    if !gw.users.exists(&user)? {
        return Err(ApiError::not_found("User not found"));
    }
    svc::deactivate::deactivate(&gw, &user).await?;
    Ok(Json(json!({ "id_server_unbind_result": "success" })))
}

#[derive(Deserialize)]
struct ResetBody {
    new_password: String,
    logout_devices: Option<bool>,
}

async fn reset_password(
    State(gw): State<Arc<Gateway>>,
    Path(user_id): Path<String>,
    parts: Parts,
    bytes: Bytes,
) -> Reply {
    admin(&gw, &parts)?;
    let b: ResetBody = body(&bytes)?;
    let user = svc::local_user(&gw, &user_id)?;
    s::reset_password(
        &gw,
        &user,
        &b.new_password,
        b.logout_devices.unwrap_or(true),
    )
    .await?;
    Ok(Json(json!({})))
}

async fn joined_rooms(
    State(gw): State<Arc<Gateway>>,
    Path(user_id): Path<String>,
    parts: Parts,
) -> Reply {
    admin(&gw, &parts)?;
    let user = svc::local_user(&gw, &user_id)?;
    let rooms = s::joined_rooms(&gw, &user)?;
    Ok(Json(json!({ "joined_rooms": rooms, "total": rooms.len() })))
}

async fn whois(State(gw): State<Arc<Gateway>>, Path(user_id): Path<String>, parts: Parts) -> Reply {
    admin(&gw, &parts)?;
    let user = svc::local_user(&gw, &user_id)?;
    let devices: serde_json::Map<String, Value> = s::whois(&gw, &user)?
        .into_iter()
        .map(|(id, c)| (id, json!({ "sessions": [{ "connections": [c] }] })))
        .collect();
    Ok(Json(json!({ "user_id": user, "devices": devices })))
}
