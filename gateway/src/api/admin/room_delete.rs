//! Room deletion: `DELETE /_synapse/admin/v2/rooms/{roomId}` (in the background, with
//! `…/delete_status`), and the synchronous v1 form `DELETE /_synapse/admin/v1/rooms/{roomId}`.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::request::Parts,
    routing::{delete, get},
    Json, Router,
};
use ruma::{OwnedRoomId, RoomId};
use serde_json::{json, Value};

use super::{admin, body};
use crate::{
    error::ApiError,
    service::{
        admin::{deletions, shutdown},
        Gateway,
    },
};

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    r.route("/_synapse/admin/v1/rooms/{room_id}", delete(delete_v1))
        .route("/_synapse/admin/v2/rooms/{room_id}", delete(delete_v2))
        .route(
            "/_synapse/admin/v2/rooms/{room_id}/delete_status",
            get(status_by_room),
        )
        .route(
            "/_synapse/admin/v2/rooms/delete_status/{delete_id}",
            get(status_by_id),
        )
}

type Reply = Result<Json<Value>, ApiError>;

/// A room id from the path: 400 `M_INVALID_PARAM` if it is not one (Synapse's answer).
pub(super) fn room_id(raw: &str) -> Result<OwnedRoomId, ApiError> {
    RoomId::parse(raw).map_err(|_| ApiError::invalid_param(format!("{raw} is not a room id")))
}

async fn delete_v1(
    State(gw): State<Arc<Gateway>>,
    Path(raw): Path<String>,
    parts: Parts,
    bytes: Bytes,
) -> Reply {
    let caller = admin(&gw, &parts)?;
    let room = room_id(&raw)?;
    let req: shutdown::DeleteRoom = body(&bytes)?;
    let mut result = shutdown::ShutdownRoom::default();
    shutdown::delete_room(&gw, &caller.user_id, &room, &req, &mut result).await?;
    Ok(Json(json!(result)))
}

async fn delete_v2(
    State(gw): State<Arc<Gateway>>,
    Path(raw): Path<String>,
    parts: Parts,
    bytes: Bytes,
) -> Reply {
    let caller = admin(&gw, &parts)?;
    let room = room_id(&raw)?;
    let req: shutdown::DeleteRoom = body(&bytes)?;
    let delete_id = deletions::schedule(gw.clone(), caller.user_id, room, req).await?;
    Ok(Json(json!({ "delete_id": delete_id })))
}

async fn status_by_room(
    State(gw): State<Arc<Gateway>>,
    Path(raw): Path<String>,
    parts: Parts,
) -> Reply {
    admin(&gw, &parts)?;
    let room = room_id(&raw)?;
    Ok(Json(json!({ "results": deletions::by_room(&gw, &room)? })))
}

async fn status_by_id(
    State(gw): State<Arc<Gateway>>,
    Path(delete_id): Path<String>,
    parts: Parts,
) -> Reply {
    admin(&gw, &parts)?;
    Ok(Json(json!(deletions::by_id(&gw, &delete_id)?)))
}
