//! Small endpoints clients call at start-up, answered with "nothing here".
//!
//! - `GET /thirdparty/protocols` → `{}` (no bridges to third-party networks).
//! - `GET /account/3pid` → `{"threepids": []}` (the gateway keeps no e-mail or phone numbers).
//! - `GET /voip/turnServer` → `{}` (no TURN server; what Synapse answers when none is
//!   configured, and clients fall back to STUN/host candidates).
//! - `GET /_matrix/client/v1/auth_metadata` (and MSC2965's unstable paths) → 404
//!   `M_UNRECOGNIZED`, so clients use password login instead of OAuth 2.0.
//!
//! `POST /user/{userId}/openid/request_token` is not offered: nobody could verify the token
//! (there is no federation API to ask), and it exists to introduce the user to third-party
//! services such as integration managers.

use std::sync::Arc;

use axum::{routing::get, Json, Router};
use ruma::api::client::{
    account::get_3pids::v3 as threepids, thirdparty::get_protocols::v3 as protocols,
    voip::get_turn_server_info::v3 as turn,
};
use serde_json::{json, Value};

use super::{add, Ruma};
use crate::{
    error::{ApiError, ApiResult},
    service::Gateway,
};

async fn get_protocols(req: Ruma<protocols::Request>) -> ApiResult<Json<Value>> {
    req.caller()?;
    Ok(Json(json!({})))
}

async fn get_threepids(req: Ruma<threepids::Request>) -> ApiResult<Json<Value>> {
    req.caller()?;
    Ok(Json(json!({ "threepids": [] })))
}

async fn get_turn_server(req: Ruma<turn::Request>) -> ApiResult<Json<Value>> {
    req.caller()?;
    Ok(Json(json!({})))
}

async fn auth_metadata() -> ApiError {
    ApiError::unrecognized("OAuth 2.0 is not supported; use password login")
}

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    let r = add::<protocols::Request, _, _>(r, get_protocols);
    let r = add::<threepids::Request, _, _>(r, get_threepids);
    let r = add::<turn::Request, _, _>(r, get_turn_server);
    r.route("/_matrix/client/v1/auth_metadata", get(auth_metadata))
        .route(
            "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
            get(auth_metadata),
        )
        .route(
            "/_matrix/client/unstable/org.matrix.msc2965/auth_issuer",
            get(auth_metadata),
        )
}

#[cfg(test)]
mod tests {
    use crate::testkit::kit;
    use http::{Method, StatusCode};
    use serde_json::json;

    #[tokio::test]
    async fn startup_stubs() {
        let k = kit();
        let (_, token) = k.user("alice").await;
        let t = Some(token.as_str());
        let cases = [
            ("/_matrix/client/v3/thirdparty/protocols", json!({})),
            ("/_matrix/client/v3/account/3pid", json!({"threepids": []})),
            ("/_matrix/client/v3/voip/turnServer", json!({})),
        ];
        for (uri, want) in cases {
            let (status, body) = k.call(Method::GET, uri, t, None).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert_eq!(body, want, "{uri}");
            let (status, _) = k.call(Method::GET, uri, None, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        }
        let (status, body) = k
            .call(Method::GET, "/_matrix/client/v1/auth_metadata", None, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["errcode"], "M_UNRECOGNIZED");
    }
}
