//! `POST /search` (room events).

use std::sync::Arc;

use axum::{extract::State, Json, Router};
use ruma::api::client::search::search_events::v3 as search_events;
use serde_json::{json, Value};

use super::{add, Ruma};
use crate::{
    error::{ApiError, ApiResult},
    service::{
        filter::EventFilter,
        relations::Viewer,
        search::{search, Order, SearchQuery},
        Gateway,
    },
};

async fn post_search(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<search_events::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    let b = &req.body;
    let Some(criteria) = &b.search_categories.room_events else {
        // No category asked for: nothing to search.
        return Ok(Json(json!({ "search_categories": {} })));
    };
    let order = match criteria.order_by.as_ref().map(|o| o.as_str()) {
        None | Some("rank") => Order::Rank,
        Some("recent") => Order::Recent,
        Some(other) => {
            return Err(ApiError::bad_json(format!(
                "order_by must be `rank` or `recent`, not `{other}`"
            )))
        }
    };
    let mut keys = Vec::new();
    for k in criteria.keys.iter().flatten() {
        match k.as_str() {
            key @ ("content.body" | "content.name" | "content.topic") => keys.push(key.to_owned()),
            other => return Err(ApiError::bad_json(format!("unknown search key `{other}`"))),
        }
    }
    let ctx = &criteria.event_context;
    let wants_context = req
        .json
        .as_ref()
        .and_then(|j| j.pointer("/search_categories/room_events/event_context"))
        .is_some();
    let q = SearchQuery {
        term: criteria.search_term.clone(),
        keys,
        filter: EventFilter::from_json(Some(&serde_json::to_value(&criteria.filter)?)),
        order,
        context: wants_context.then(|| {
            let n = |v: ruma::UInt| usize::try_from(u64::from(v)).unwrap_or(usize::MAX);
            (n(ctx.before_limit), n(ctx.after_limit), ctx.include_profile)
        }),
        include_state: criteria.include_state.unwrap_or(false),
        next_batch: b.next_batch.clone(),
    };
    let viewer = Viewer::new(&caller.user_id, caller.device_id.as_str());
    let room_events = search(&gw, viewer, &q)?;
    Ok(Json(
        json!({ "search_categories": { "room_events": room_events } }),
    ))
}

/// Registers the search endpoint.
pub fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    add::<search_events::Request, _, _>(r, post_search)
}
