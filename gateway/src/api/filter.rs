//! Filters: `POST /user/{userId}/filter` and `GET /user/{userId}/filter/{filterId}`.
//!
//! The filter is validated by ruma's parser but stored exactly as the client sent it, because
//! matrix-js-sdk deep-compares the stored definition with the one it wants. A missing filter is
//! 404 `M_NOT_FOUND` (js-sdk then uploads a new one). `/sync` reads filters with
//! [`crate::service::account_data::AccountData::filter`].

use std::sync::Arc;

use axum::{extract::State, Json, Router};
use ruma::api::client::filter::{create_filter::v3 as create, get_filter::v3 as get};
use serde_json::{json, Value};

use super::{account_data::require_self, add, Ruma};
use crate::{
    error::{ApiError, ApiResult},
    service::Gateway,
};

async fn create_filter(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<create::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    require_self(caller, &req.body.user_id)?;
    let filter = req.json.clone().unwrap_or_else(|| json!({}));
    let id = gw
        .account_data
        .create_filter(&caller.user_id, &filter)
        .await?;
    Ok(Json(json!({ "filter_id": id })))
}

async fn get_filter(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<get::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    require_self(caller, &req.body.user_id)?;
    gw.account_data
        .filter(&caller.user_id, &req.body.filter_id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("Filter not found"))
}

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    let r = add::<create::Request, _, _>(r, create_filter);
    add::<get::Request, _, _>(r, get_filter)
}

#[cfg(test)]
mod tests {
    use crate::testkit::{enc, kit};
    use http::{Method, StatusCode};
    use serde_json::json;

    #[tokio::test]
    async fn create_get_and_missing() {
        let k = kit();
        let (alice, token) = k.user("alice").await;
        let (_, bob_token) = k.user("bob").await;
        let base = format!("/_matrix/client/v3/user/{}/filter", enc(alice.as_str()));
        let filter = json!({
            "room": {"timeline": {"limit": 20}, "state": {"lazy_load_members": true}},
            "presence": {"not_types": ["*"]},
        });
        let (status, body) = k
            .call(Method::POST, &base, Some(&token), Some(filter.clone()))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let id = body["filter_id"].as_str().expect("id").to_owned();
        assert!(!id.starts_with('{'));

        let (status, body) = k
            .call(Method::GET, &format!("{base}/{id}"), Some(&token), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, filter);
        assert_eq!(
            k.gw.account_data.filter(&alice, &id).expect("filter"),
            Some(filter)
        );

        let (status, body) = k
            .call(
                Method::GET,
                &format!("{base}/nosuchfilter"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["errcode"], "M_NOT_FOUND");

        let (status, body) = k
            .call(Method::GET, &format!("{base}/{id}"), Some(&bob_token), None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["errcode"], "M_FORBIDDEN");
        let (status, _) = k
            .call(Method::POST, &base, Some(&bob_token), Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}
