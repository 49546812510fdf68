//! `GET`/`PUT /_synapse/admin/v1/rooms/{roomId}/block`: whether a room is blocked, and
//! blocking or unblocking it without deleting it (Synapse's shapes).

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::request::Parts,
    routing::get,
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{admin, body, room_delete::room_id};
use crate::{error::ApiError, service::Gateway};

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    r.route(
        "/_synapse/admin/v1/rooms/{room_id}/block",
        get(status).put(set),
    )
}

type Reply = Result<Json<Value>, ApiError>;

/// The body of `PUT …/block`.
#[derive(Deserialize)]
struct SetBlock {
    block: bool,
}

async fn status(State(gw): State<Arc<Gateway>>, Path(raw): Path<String>, parts: Parts) -> Reply {
    admin(&gw, &parts)?;
    let room = room_id(&raw)?;
    Ok(Json(match gw.rooms.blocked(&room)? {
        Some(b) => json!({ "block": true, "user_id": b.user_id }),
        None => json!({ "block": false }),
    }))
}

async fn set(
    State(gw): State<Arc<Gateway>>,
    Path(raw): Path<String>,
    parts: Parts,
    bytes: Bytes,
) -> Reply {
    let caller = admin(&gw, &parts)?;
    let room = room_id(&raw)?;
    let req: SetBlock = body(&bytes)?;
    if req.block {
        gw.rooms.block(&room, &caller.user_id).await?;
    } else {
        gw.rooms.unblock(&room).await?;
    }
    Ok(Json(json!({ "block": req.block })))
}
