//! `/_synapse/admin/v1/registration_tokens…`.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::request::Parts,
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{admin, body, boolean, query};
use crate::{
    error::ApiError,
    service::{admin::tokens as s, Gateway},
};

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    r.route("/_synapse/admin/v1/registration_tokens", get(list))
        .route("/_synapse/admin/v1/registration_tokens/new", post(create))
        .route(
            "/_synapse/admin/v1/registration_tokens/{token}",
            get(details).put(update).delete(delete),
        )
}

type Reply = Result<Json<Value>, ApiError>;

async fn list(State(gw): State<Arc<Gateway>>, parts: Parts) -> Reply {
    admin(&gw, &parts)?;
    let valid = boolean(&query(&parts), "valid")?;
    Ok(Json(json!({ "registration_tokens": s::list(&gw, valid)? })))
}

async fn details(State(gw): State<Arc<Gateway>>, Path(token): Path<String>, parts: Parts) -> Reply {
    admin(&gw, &parts)?;
    Ok(Json(json!(s::get(&gw, &token)?)))
}

#[derive(Deserialize)]
struct NewBody {
    token: Option<String>,
    length: Option<u32>,
    uses_allowed: Option<u32>,
    expiry_time: Option<u64>,
}

async fn create(State(gw): State<Arc<Gateway>>, parts: Parts, bytes: Bytes) -> Reply {
    admin(&gw, &parts)?;
    let b: NewBody = body(&bytes)?;
    let t = s::create(&gw, b.token, b.length, b.uses_allowed, b.expiry_time).await?;
    Ok(Json(json!(t)))
}

/// `Some(None)` when the key is present with `null` (clears the limit).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct UpdateBody {
    #[serde(default, deserialize_with = "present")]
    uses_allowed: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    expiry_time: Option<Option<u64>>,
}

async fn update(
    State(gw): State<Arc<Gateway>>,
    Path(token): Path<String>,
    parts: Parts,
    bytes: Bytes,
) -> Reply {
    admin(&gw, &parts)?;
    let b: UpdateBody = body(&bytes)?;
    let t = s::update(
        &gw,
        &token,
        s::TokenChange {
            uses_allowed: b.uses_allowed,
            expiry_time: b.expiry_time,
        },
    )
    .await?;
    Ok(Json(json!(t)))
}

async fn delete(State(gw): State<Arc<Gateway>>, Path(token): Path<String>, parts: Parts) -> Reply {
    admin(&gw, &parts)?;
    s::delete(&gw, &token).await?;
    Ok(Json(json!({})))
}
