//! `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync` (MSC4186).

use std::{sync::Arc, time::Duration};

use axum::{
    body::{to_bytes, Body},
    extract::State,
    routing::post,
    Json, Router,
};
use http::Request;
use serde_json::Value;

use super::authenticate;
use crate::{
    error::{ApiError, ApiResult},
    service::{sliding_sync, Gateway},
};

/// Longest long-poll honoured.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// The path Element X and matrix-rust-sdk use.
pub const PATH: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

async fn sliding(State(gw): State<Arc<Gateway>>, req: Request<Body>) -> ApiResult<Json<Value>> {
    let (parts, body) = req.into_parts();
    let caller = authenticate(&gw, &parts, true)?
        .ok_or_else(|| ApiError::missing_token("Missing access token"))?;
    let mut pos = None;
    let mut timeout = Duration::ZERO;
    for (k, v) in url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()) {
        match &*k {
            "pos" => pos = Some(v.into_owned()),
            "timeout" => {
                let ms: u64 = v
                    .parse()
                    .map_err(|_| ApiError::invalid_param("timeout must be milliseconds"))?;
                timeout = Duration::from_millis(ms).min(MAX_TIMEOUT);
            }
            _ => {}
        }
    }
    let bytes = to_bytes(body, gw.config.max_request_bytes)
        .await
        .map_err(|_| ApiError::too_large("Request body too large"))?;
    let request: sliding_sync::SlidingRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        sliding_sync::SlidingRequest::default()
    } else {
        let json: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::not_json(format!("Body is not valid JSON: {e}")))?;
        serde_json::from_value(json)
            .map_err(|e| ApiError::bad_json(format!("Not a sliding sync request: {e}")))?
    };
    Ok(Json(
        sliding_sync::sliding_sync(&gw, &caller, pos, timeout, request).await?,
    ))
}

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    r.route(PATH, post(sliding))
}
