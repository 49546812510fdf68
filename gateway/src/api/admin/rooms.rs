//! `/_synapse/admin/v1/rooms…`.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::request::Parts,
    routing::get,
    Json, Router,
};
use ruma::RoomId;
use serde_json::{json, Value};

use super::{admin, query, uint};
use crate::{
    error::ApiError,
    service::{admin::rooms as s, Gateway},
};

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    r.route("/_synapse/admin/v1/rooms", get(list))
        .route("/_synapse/admin/v1/rooms/{room_id}", get(details))
        .route("/_synapse/admin/v1/rooms/{room_id}/members", get(members))
}

type Reply = Result<Json<Value>, ApiError>;

fn room_id(raw: &str) -> Result<&RoomId, ApiError> {
    <&RoomId>::try_from(raw).map_err(|_| ApiError::not_found("Room not found"))
}

async fn list(State(gw): State<Arc<Gateway>>, parts: Parts) -> Reply {
    admin(&gw, &parts)?;
    let q = query(&parts);
    let order_by = match q.get("order_by") {
        None => s::RoomOrder::default(),
        Some(o) => s::RoomOrder::parse(o)
            .ok_or_else(|| ApiError::invalid_param(format!("Unknown order_by: {o}")))?,
    };
    let backwards = match q.get("dir").map(String::as_str) {
        None | Some("f") => false,
        Some("b") => true,
        Some(_) => return Err(ApiError::invalid_param("dir must be f or b")),
    };
    let page = s::list(
        &gw,
        &s::RoomQuery {
            search_term: q.get("search_term").cloned(),
            order_by,
            backwards,
            from: uint(&q, "from")?.unwrap_or(0),
            limit: uint(&q, "limit")?.unwrap_or(100),
        },
    )?;
    Ok(Json(json!(page)))
}

async fn details(State(gw): State<Arc<Gateway>>, Path(raw): Path<String>, parts: Parts) -> Reply {
    admin(&gw, &parts)?;
    Ok(Json(json!(s::room(&gw, room_id(&raw)?, true)?)))
}

async fn members(State(gw): State<Arc<Gateway>>, Path(raw): Path<String>, parts: Parts) -> Reply {
    admin(&gw, &parts)?;
    let members = s::joined_members(&gw, room_id(&raw)?)?;
    Ok(Json(json!({ "members": members, "total": members.len() })))
}
