//! `POST /_matrix/client/v1/appservice/{appserviceId}/ping`: the gateway pings the service.

use std::{sync::Arc, time::Instant};

use axum::{extract::State, Json, Router};
use http::StatusCode;
use ruma::api::client::appservice::request_ping::v1 as ping;
use serde_json::{json, Value};

use super::{add, Ruma};
use crate::{
    error::{ApiError, ApiResult},
    service::Gateway,
};

/// How long the service has to answer a ping.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn post_ping(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<ping::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    let id = req.body.appservice_id.as_str();
    let service = gw
        .appservices
        .by_id(id)
        .filter(|_| caller.appservice.as_deref() == Some(id))
        .ok_or_else(|| ApiError::forbidden("The as_token is not that application service's"))?;
    let Some(url) = &service.reg.raw.url else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "M_URL_NOT_SET",
            "The application service has no url",
        ));
    };
    let mut body = json!({});
    if let Some(txn) = &req.body.transaction_id {
        body["transaction_id"] = json!(txn);
    }
    let client = reqwest::Client::builder()
        .timeout(PING_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ApiError::internal(format!("HTTP client: {e}")))?;
    let started = Instant::now();
    let sent = client
        .post(format!("{}/_matrix/app/v1/ping", url.trim_end_matches('/')))
        .bearer_auth(&service.reg.raw.hs_token)
        .json(&body)
        .send()
        .await;
    let res = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "M_CONNECTION_TIMEOUT",
                "The application service did not answer in time",
            ))
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "M_CONNECTION_FAILED",
                format!("Cannot reach the application service: {e}"),
            ))
        }
    };
    let status = res.status();
    if !status.is_success() {
        let text = res.text().await.unwrap_or_default();
        let mut err = ApiError::new(
            StatusCode::BAD_GATEWAY,
            "M_BAD_STATUS",
            "The application service answered with an error",
        );
        err.extra = Some(json!({ "status": status.as_u16(), "body": text }));
        return Err(err);
    }
    Ok(Json(
        json!({ "duration_ms": started.elapsed().as_millis() as u64 }),
    ))
}

/// Registers the ping endpoint.
pub fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    add::<ping::Request, _, _>(r, post_ping)
}
