//! `/relations` and `/threads` (client-server API v1).

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    Json, Router,
};
use http::request::Parts;
use ruma::api::client::{
    relations::{
        get_relating_events::v1 as all_types, get_relating_events_with_rel_type::v1 as by_rel,
        get_relating_events_with_rel_type_and_event_type::v1 as by_rel_and_type,
    },
    threads::get_threads::v1 as threads,
};
use ruma::{RoomId, UInt};
use serde_json::Value;

use super::{add, authenticate, message::parse_token, Ruma};
use crate::{
    error::{ApiError, ApiResult},
    service::{
        relations::{
            page::{relations, RelationsQuery},
            threads::threads as list_threads,
            Viewer,
        },
        Gateway,
    },
};

fn limit(l: Option<UInt>) -> Option<usize> {
    l.map(|l| usize::try_from(u64::from(l)).unwrap_or(usize::MAX))
}

async fn get_all(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<all_types::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    let b = &req.body;
    let q = RelationsQuery {
        rel_type: None,
        event_type: None,
        from: parse_token(b.from.as_deref())?,
        to: parse_token(b.to.as_deref())?,
        dir: b.dir,
        limit: limit(b.limit),
        recurse: b.recurse,
    };
    let viewer = Viewer::new(&caller.user_id, caller.device_id.as_str());
    Ok(Json(relations(&gw, viewer, &b.room_id, &b.event_id, &q)?))
}

async fn get_by_rel(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<by_rel::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    let b = &req.body;
    let q = RelationsQuery {
        rel_type: Some(b.rel_type.to_string()),
        event_type: None,
        from: parse_token(b.from.as_deref())?,
        to: parse_token(b.to.as_deref())?,
        dir: b.dir,
        limit: limit(b.limit),
        recurse: b.recurse,
    };
    let viewer = Viewer::new(&caller.user_id, caller.device_id.as_str());
    Ok(Json(relations(&gw, viewer, &b.room_id, &b.event_id, &q)?))
}

async fn get_by_rel_and_type(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<by_rel_and_type::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    let b = &req.body;
    let q = RelationsQuery {
        rel_type: Some(b.rel_type.to_string()),
        event_type: Some(b.event_type.to_string()),
        from: parse_token(b.from.as_deref())?,
        to: parse_token(b.to.as_deref())?,
        dir: b.dir,
        limit: limit(b.limit),
        recurse: b.recurse,
    };
    let viewer = Viewer::new(&caller.user_id, caller.device_id.as_str());
    Ok(Json(relations(&gw, viewer, &b.room_id, &b.event_id, &q)?))
}

/// `/threads` parses its own query: ruma-client-api 0.24 requires `include`, which the spec
/// makes optional (default `all`).
async fn get_threads(
    State(gw): State<Arc<Gateway>>,
    Path(room): Path<String>,
    parts: Parts,
) -> ApiResult<Json<Value>> {
    let caller = authenticate(&gw, &parts, true)?
        .ok_or_else(|| ApiError::missing_token("Missing access token"))?;
    let room = RoomId::parse(&room)
        .map_err(|e| ApiError::invalid_param(format!("Invalid room id: {e}")))?;
    let (mut from, mut participated, mut limit) = (None, false, None);
    for (k, v) in url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()) {
        match &*k {
            "from" => from = parse_token(Some(&v))?,
            "include" => {
                participated = match &*v {
                    "all" => false,
                    "participated" => true,
                    _ => {
                        return Err(ApiError::invalid_param(
                            "`include` is `all` or `participated`",
                        ))
                    }
                }
            }
            "limit" => {
                limit = Some(
                    v.parse::<usize>()
                        .map_err(|_| ApiError::invalid_param("`limit` is a number"))?,
                )
            }
            _ => {}
        }
    }
    let viewer = Viewer::new(&caller.user_id, caller.device_id.as_str());
    Ok(Json(list_threads(
        &gw,
        viewer,
        &room,
        participated,
        from,
        limit,
    )?))
}

/// Registers the relations and threads endpoints.
pub fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    let r = add::<all_types::Request, _, _>(r, get_all);
    let r = add::<by_rel::Request, _, _>(r, get_by_rel);
    let r = add::<by_rel_and_type::Request, _, _>(r, get_by_rel_and_type);
    add::<threads::Request, _, _>(r, get_threads)
}
