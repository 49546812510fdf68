//! Account data (global and per room) and room tags.
//!
//! Only the owner may read or write their account data (403 otherwise). `m.push_rules` is
//! managed through `/pushrules` and cannot be written here (405 `M_BAD_JSON`, as the spec
//! says for server-managed types), nor can room `m.fully_read` (use `/read_markers`). Reading
//! `m.push_rules` gives the effective rules, defaults included. Tags are the room account
//! data `m.tag` (`{"tags": {tag: info}}`).

use std::sync::Arc;

use axum::{extract::State, http::StatusCode, Json, Router};
use ruma::{
    api::client::{
        config::{
            get_global_account_data::v3 as get_global, get_room_account_data::v3 as get_room,
            set_global_account_data::v3 as set_global, set_room_account_data::v3 as set_room,
        },
        tag::{
            create_tag::v3 as create_tag, delete_tag::v3 as delete_tag, get_tags::v3 as get_tags,
        },
    },
    UserId,
};
use serde_json::{json, Value};

use super::{add, Caller, Ruma};
use crate::{
    error::{ApiError, ApiResult},
    service::{
        account_data::{ruleset_json, PUSH_RULES, TAGS},
        Gateway,
    },
};

/// Fails with 403 unless the caller is `user`.
pub(super) fn require_self(caller: &Caller, user: &UserId) -> ApiResult<()> {
    if caller.user_id == user {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "You cannot access another user's account data",
        ))
    }
}

fn server_managed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "M_BAD_JSON",
        "This type of account data is managed by the server",
    )
}

/// The request body as a JSON object (the extractor already refused anything else).
fn body_object<T>(req: &Ruma<T>) -> Value {
    req.json
        .clone()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

async fn global_get(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<get_global::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    require_self(caller, &req.body.user_id)?;
    let kind = req.body.event_type.to_string();
    if kind == PUSH_RULES {
        return Ok(Json(
            json!({ "global": ruleset_json(&gw.account_data.push_rules(&caller.user_id)?) }),
        ));
    }
    gw.account_data
        .get(&caller.user_id, None, &kind)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("Account data not found"))
}

async fn global_set(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<set_global::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    require_self(caller, &req.body.user_id)?;
    let kind = req.body.event_type.to_string();
    if kind == PUSH_RULES {
        return Err(server_managed());
    }
    gw.account_data
        .set(&caller.user_id, None, &kind, body_object(&req))
        .await?;
    Ok(Json(json!({})))
}

async fn room_get(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<get_room::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    require_self(caller, &req.body.user_id)?;
    let kind = req.body.event_type.to_string();
    if kind == "m.fully_read" {
        // Stored with the read markers.
        return gw
            .ephemeral
            .fully_read_event(&req.body.room_id, &caller.user_id, 0)?
            .and_then(|e| e.get("content").cloned())
            .map(Json)
            .ok_or_else(|| ApiError::not_found("Account data not found"));
    }
    gw.account_data
        .get(&caller.user_id, Some(&req.body.room_id), &kind)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("Account data not found"))
}

async fn room_set(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<set_room::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    require_self(caller, &req.body.user_id)?;
    let kind = req.body.event_type.to_string();
    if kind == "m.fully_read" {
        return Err(server_managed());
    }
    gw.account_data
        .set(
            &caller.user_id,
            Some(&req.body.room_id),
            &kind,
            body_object(&req),
        )
        .await?;
    Ok(Json(json!({})))
}

async fn tags_get(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<get_tags::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    require_self(caller, &req.body.user_id)?;
    let tags = gw
        .account_data
        .get(&caller.user_id, Some(&req.body.room_id), TAGS)?
        .and_then(|c| c.get("tags").cloned())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    Ok(Json(json!({ "tags": tags })))
}

/// Applies `f` to the room's tag map and stores it.
async fn change_tags(
    gw: &Gateway,
    user: &UserId,
    room: &ruma::RoomId,
    f: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> ApiResult<()> {
    gw.account_data
        .update(user, Some(room), TAGS, |old| {
            let mut tags = old
                .and_then(|c| c.get("tags").cloned())
                .and_then(|t| match t {
                    Value::Object(m) => Some(m),
                    _ => None,
                })
                .unwrap_or_default();
            f(&mut tags);
            Ok(json!({ "tags": tags }))
        })
        .await?;
    Ok(())
}

async fn tag_put(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<create_tag::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    require_self(caller, &req.body.user_id)?;
    if req.body.tag.is_empty() || req.body.tag.len() > 255 {
        return Err(ApiError::invalid_param("Invalid tag name"));
    }
    let info = body_object(&req);
    let tag = req.body.tag.clone();
    change_tags(&gw, &caller.user_id, &req.body.room_id, |tags| {
        tags.insert(tag, info);
    })
    .await?;
    Ok(Json(json!({})))
}

async fn tag_delete(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<delete_tag::Request>,
) -> ApiResult<Json<Value>> {
    let caller = req.caller()?;
    require_self(caller, &req.body.user_id)?;
    let tag = req.body.tag.clone();
    change_tags(&gw, &caller.user_id, &req.body.room_id, |tags| {
        tags.remove(&tag);
    })
    .await?;
    Ok(Json(json!({})))
}

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    let r = add::<get_global::Request, _, _>(r, global_get);
    let r = add::<set_global::Request, _, _>(r, global_set);
    let r = add::<get_room::Request, _, _>(r, room_get);
    let r = add::<set_room::Request, _, _>(r, room_set);
    let r = add::<get_tags::Request, _, _>(r, tags_get);
    let r = add::<create_tag::Request, _, _>(r, tag_put);
    add::<delete_tag::Request, _, _>(r, tag_delete)
}

#[cfg(test)]
mod tests {
    use crate::testkit::{enc, kit};
    use http::{Method, StatusCode};
    use serde_json::json;

    #[tokio::test]
    async fn global_account_data() {
        let k = kit();
        let (alice, token) = k.user("alice").await;
        let (_, bob_token) = k.user("bob").await;
        let uri = format!(
            "/_matrix/client/v3/user/{}/account_data/m.direct",
            enc(alice.as_str())
        );
        let (status, body) = k.call(Method::GET, &uri, Some(&token), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["errcode"], "M_NOT_FOUND");

        let content = json!({"@bob:example.org": ["!r:example.org"]});
        let (status, _) = k
            .call(Method::PUT, &uri, Some(&token), Some(content.clone()))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = k.call(Method::GET, &uri, Some(&token), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, content);

        // Another user's account data: 403 both ways.
        let (status, body) = k.call(Method::GET, &uri, Some(&bob_token), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["errcode"], "M_FORBIDDEN");
        let (status, _) = k
            .call(Method::PUT, &uri, Some(&bob_token), Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Delivered through the stream for /sync.
        let (global, _) =
            k.gw.account_data
                .changes(&alice, 0, k.gw.stream.current())
                .expect("changes");
        assert!(global
            .iter()
            .any(|e| e["type"] == "m.direct" && e["content"] == content));

        // Server-managed types.
        let pr = format!(
            "/_matrix/client/v3/user/{}/account_data/m.push_rules",
            enc(alice.as_str())
        );
        let (status, body) = k
            .call(Method::PUT, &pr, Some(&token), Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["errcode"], "M_BAD_JSON");
        let (status, body) = k.call(Method::GET, &pr, Some(&token), None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body["global"]["override"].is_array());

        // Not JSON.
        let (status, body) = k
            .call(Method::PUT, &uri, Some(&token), Some(json!([1])))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }

    #[tokio::test]
    async fn room_account_data_and_tags() {
        let k = kit();
        let (alice, token) = k.user("alice").await;
        let (_, bob_token) = k.user("bob").await;
        let room = "!room:example.org";
        let base = format!(
            "/_matrix/client/v3/user/{}/rooms/{}",
            enc(alice.as_str()),
            enc(room)
        );
        let (status, _) = k
            .call(
                Method::GET,
                &format!("{base}/account_data/x.y"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = k
            .call(
                Method::PUT,
                &format!("{base}/account_data/x.y"),
                Some(&token),
                Some(json!({"a": 1})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, body) = k
            .call(
                Method::GET,
                &format!("{base}/account_data/x.y"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(body, json!({"a": 1}));
        let (status, _) = k
            .call(
                Method::GET,
                &format!("{base}/account_data/x.y"),
                Some(&bob_token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = k
            .call(
                Method::PUT,
                &format!("{base}/account_data/m.fully_read"),
                Some(&token),
                Some(json!({"event_id": "$x"})),
            )
            .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

        // Tags.
        let (_, body) = k
            .call(Method::GET, &format!("{base}/tags"), Some(&token), None)
            .await;
        assert_eq!(body, json!({"tags": {}}));
        for (tag, order) in [("m.favourite", 0.5), ("u.work", 0.1)] {
            let (status, _) = k
                .call(
                    Method::PUT,
                    &format!("{base}/tags/{tag}"),
                    Some(&token),
                    Some(json!({"order": order})),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        let (status, _) = k
            .call(
                Method::DELETE,
                &format!("{base}/tags/u.work"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, body) = k
            .call(Method::GET, &format!("{base}/tags"), Some(&token), None)
            .await;
        assert_eq!(body, json!({"tags": {"m.favourite": {"order": 0.5}}}));
        let (status, _) = k
            .call(Method::GET, &format!("{base}/tags"), Some(&bob_token), None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Tags reach /sync as room account data m.tag.
        let (_, rooms) =
            k.gw.account_data
                .changes(&alice, 0, k.gw.stream.current())
                .expect("changes");
        let room_id = ruma::RoomId::parse(room).expect("room");
        let events = &rooms[&room_id];
        assert!(events
            .iter()
            .any(|e| e["type"] == "m.tag" && e["content"]["tags"]["m.favourite"]["order"] == 0.5));
    }

    #[tokio::test]
    async fn delivered_by_sync() {
        let k = kit();
        let (alice, token) = k.user("alice").await;
        let t = Some(token.as_str());
        let room = k.room(&alice).await;
        let user = enc(alice.as_str());
        k.call(
            Method::PUT,
            &format!("/_matrix/client/v3/user/{user}/account_data/m.direct"),
            t,
            Some(json!({"a": 1})),
        )
        .await;
        k.call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/user/{user}/rooms/{}/tags/m.favourite",
                enc(room.as_str())
            ),
            t,
            Some(json!({})),
        )
        .await;
        let (status, body) = k
            .call(Method::GET, "/_matrix/client/v3/sync?timeout=0", t, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let types: Vec<&str> = body["account_data"]["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["type"].as_str())
            .collect();
        assert!(
            types.contains(&"m.direct") && types.contains(&"m.push_rules"),
            "{types:?}"
        );
        // Also with an inline filter that says nothing about account data.
        let (_, filtered) = k
            .call(
                Method::GET,
                &format!(
                    "/_matrix/client/v3/sync?timeout=0&filter={}",
                    enc(r#"{"room":{"timeline":{"limit":2}}}"#)
                ),
                t,
                None,
            )
            .await;
        assert_eq!(filtered["account_data"], body["account_data"], "{filtered}");
        let room_ad = &body["rooms"]["join"][room.as_str()]["account_data"]["events"];
        assert_eq!(room_ad[0]["type"], "m.tag", "{body}");
        let next = body["next_batch"].as_str().expect("next").to_owned();

        k.call(
            Method::PUT,
            &format!("/_matrix/client/v3/user/{user}/account_data/x.y"),
            t,
            Some(json!({"b": 2})),
        )
        .await;
        let (_, body) = k
            .call(
                Method::GET,
                &format!("/_matrix/client/v3/sync?timeout=0&since={next}"),
                t,
                None,
            )
            .await;
        assert_eq!(
            body["account_data"]["events"],
            json!([{"type": "x.y", "content": {"b": 2}}])
        );
    }
}
