//! Synapse's admin API (`/_synapse/admin/…`), so synadm and synapse-admin work unchanged.
//! Every path needs the access token of an account with the server-admin flag: no token is
//! 401 `M_MISSING_TOKEN`, an unknown one 401 `M_UNKNOWN_TOKEN`, a non-admin 403 `M_FORBIDDEN`.
//! The logic lives in `service::admin`; these handlers parse and shape.

mod media;
mod room_block;
#[cfg(test)]
mod room_block_tests;
mod room_delete;
#[cfg(test)]
mod room_delete_tests;
mod rooms;
#[cfg(test)]
mod tests;
mod tokens;
mod users;

use std::{collections::HashMap, sync::Arc};

use axum::{body::Bytes, extract::State, http::request::Parts, routing::get, Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::{authenticate, Caller};
use crate::{error::ApiError, service::Gateway};

/// The admin routes.
pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    let r = r.route("/_synapse/admin/v1/server_version", get(server_version));
    let r = users::routes(r);
    let r = rooms::routes(r);
    let r = room_delete::routes(r);
    let r = room_block::routes(r);
    let r = media::routes(r);
    tokens::routes(r)
}

/// The caller, if it is a server admin.
fn admin(gw: &Gateway, parts: &Parts) -> Result<Caller, ApiError> {
    let caller = authenticate(gw, parts, true)?
        .ok_or_else(|| ApiError::missing_token("Missing access token"))?;
    if !crate::service::admin::is_admin(gw, &caller.user_id)? {
        return Err(ApiError::forbidden("You are not a server admin"));
    }
    Ok(caller)
}

/// The query parameters (last value wins).
fn query(parts: &Parts) -> HashMap<String, String> {
    parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// A non-negative integer parameter (400 `M_INVALID_PARAM` otherwise).
fn uint(q: &HashMap<String, String>, name: &str) -> Result<Option<usize>, ApiError> {
    q.get(name)
        .map(|v| {
            v.parse::<usize>().map_err(|_| {
                ApiError::invalid_param(format!("{name} must be a non-negative integer"))
            })
        })
        .transpose()
}

/// A boolean parameter (`true`/`false`; 400 `M_INVALID_PARAM` otherwise).
fn boolean(q: &HashMap<String, String>, name: &str) -> Result<Option<bool>, ApiError> {
    q.get(name)
        .map(|v| match v.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(ApiError::invalid_param(format!(
                "{name} must be true or false"
            ))),
        })
        .transpose()
}

/// The JSON body (an empty body is `{}`): 400 `M_NOT_JSON` if it is not JSON, `M_BAD_JSON`
/// if it has the wrong shape.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(bytes).map_err(|_| ApiError::not_json("Body is not JSON"))?
    };
    if !value.is_object() {
        return Err(ApiError::bad_json("Body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| ApiError::bad_json(e.to_string()))
}

async fn server_version(
    State(gw): State<Arc<Gateway>>,
    parts: Parts,
) -> Result<Json<Value>, ApiError> {
    admin(&gw, &parts)?;
    Ok(Json(json!({
        "server_version": format!("mixgate {}", env!("CARGO_PKG_VERSION")),
    })))
}
