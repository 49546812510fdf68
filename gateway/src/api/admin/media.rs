//! `GET /_synapse/admin/v1/users/{userId}/media`, `DELETE /_synapse/admin/v1/media/{server}/{id}`.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::request::Parts,
    routing::{delete, get},
    Json, Router,
};
use serde_json::{json, Value};

use super::{admin, query, uint};
use crate::{
    error::ApiError,
    service::{
        admin::{self as svc, media as s},
        Gateway,
    },
};

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    r.route("/_synapse/admin/v1/users/{user_id}/media", get(list))
        .route(
            "/_synapse/admin/v1/media/{server}/{media_id}",
            delete(remove),
        )
}

type Reply = Result<Json<Value>, ApiError>;

async fn list(State(gw): State<Arc<Gateway>>, Path(user_id): Path<String>, parts: Parts) -> Reply {
    admin(&gw, &parts)?;
    let q = query(&parts);
    let user = svc::local_user(&gw, &user_id)?;
    let page = s::of_user(
        &gw,
        &user,
        uint(&q, "from")?.unwrap_or(0),
        uint(&q, "limit")?.unwrap_or(100),
    )?;
    Ok(Json(json!(page)))
}

async fn remove(
    State(gw): State<Arc<Gateway>>,
    Path((server, media_id)): Path<(String, String)>,
    parts: Parts,
) -> Reply {
    admin(&gw, &parts)?;
    s::delete(&gw, &server, &media_id).await?;
    Ok(Json(json!({ "deleted_media": [media_id], "total": 1 })))
}
