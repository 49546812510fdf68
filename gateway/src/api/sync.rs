//! `GET /sync`.

use std::{sync::Arc, time::Duration};

use axum::{extract::State, Json, Router};
use ruma::api::client::sync::sync_events::v3 as sync_events;
use serde_json::Value;

use super::{add, message::parse_token, Ruma};
use crate::{
    error::ApiResult,
    service::{sync, Gateway},
};

/// Longest long-poll honoured.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

async fn get_sync(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<sync_events::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?.clone();
    let b = req.body;
    let filter = match b.filter {
        Some(sync_events::Filter::FilterDefinition(def)) => Some(serde_json::to_value(&def)?),
        Some(sync_events::Filter::FilterId(id)) => Some(
            gw.account_data
                .filter(&caller.user_id, &id)?
                .ok_or_else(|| crate::error::ApiError::not_found("Unknown filter"))?,
        ),
        Some(_) | None => None,
    };
    let request = sync::SyncRequest {
        since: parse_token(b.since.as_deref())?,
        timeout: b.timeout.unwrap_or_default().min(MAX_TIMEOUT),
        full_state: b.full_state,
        filter,
    };
    Ok(Json(sync::sync(&gw, &caller, request).await?))
}

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    add::<sync_events::Request, _, _>(r, get_sync)
}
