//! Queries to a service on loopback (users and aliases created on demand, a down service)
//! and exclusive alias namespaces.

use std::sync::{Arc, Mutex};

use axum::{
    extract::{Path as UrlPath, State},
    http::HeaderMap,
    routing::get,
    Router,
};
use http::{Method, StatusCode};
use ruma::{RoomAliasId, UserId};
use serde_json::json;

use crate::{
    service::Gateway,
    testkit::{enc, kit_with, Kit},
};

fn yaml(url: &str) -> String {
    format!(
        "id: bridge\nurl: {url}\nas_token: as-bridge\nhs_token: hs-bridge\n\
         sender_localpart: bridgebot\nnamespaces:\n  users:\n    - exclusive: true\n      \
         regex: '@_bridge_.*:example.org'\n  aliases:\n    - exclusive: true\n      \
         regex: '#_bridge_.*:example.org'\n    - exclusive: false\n      regex: '#shared_.*'\n"
    )
}

/// What the service sees, and the gateway it creates users and aliases on.
#[derive(Default)]
struct Service {
    gw: Option<Arc<Gateway>>,
    /// Room the service points new aliases at.
    room: Option<ruma::OwnedRoomId>,
    queries: Vec<(String, String)>,
}

type Shared = Arc<Mutex<Service>>;

async fn query_user(
    State(s): State<Shared>,
    UrlPath(user): UrlPath<String>,
    headers: HeaderMap,
) -> StatusCode {
    let gw = {
        let mut s = s.lock().expect("lock");
        s.queries.push(("user".into(), user.clone()));
        s.gw.clone()
    };
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer hs-bridge") {
        return StatusCode::FORBIDDEN;
    }
    let (Some(gw), Ok(id)) = (gw, UserId::parse(user.as_str())) else {
        return StatusCode::NOT_FOUND;
    };
    if id.localpart().ends_with("nobody") || gw.users.create(&id, None).await.is_err() {
        return StatusCode::NOT_FOUND;
    }
    StatusCode::OK
}

async fn query_alias(State(s): State<Shared>, UrlPath(alias): UrlPath<String>) -> StatusCode {
    let (gw, room) = {
        let mut s = s.lock().expect("lock");
        s.queries.push(("alias".into(), alias.clone()));
        (s.gw.clone(), s.room.clone())
    };
    let (Some(gw), Some(room), Ok(alias)) = (gw, room, RoomAliasId::parse(alias.as_str())) else {
        return StatusCode::NOT_FOUND;
    };
    let Ok(bot) = UserId::parse("@bridgebot:example.org") else {
        return StatusCode::NOT_FOUND;
    };
    if alias.alias().ends_with("none") {
        return StatusCode::NOT_FOUND;
    }
    match gw.rooms.create_alias_as(&bot, &alias, &room).await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::NOT_FOUND,
    }
}

async fn service() -> (String, Shared) {
    let shared = Shared::default();
    let app = Router::new()
        .route("/_matrix/app/v1/users/{user}", get(query_user))
        .route("/_matrix/app/v1/rooms/{alias}", get(query_alias))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://127.0.0.1:{port}"), shared)
}

/// A gateway with the `bridge` service of [`yaml`] at `url`.
pub(super) async fn kit_for(url: &str, dir: &std::path::Path) -> Kit {
    let file = dir.join("bridge.yaml");
    std::fs::write(&file, yaml(url)).expect("write");
    let k = kit_with(|c| c.appservices = vec![file]);
    k.gw.appservices
        .ensure_senders(&k.gw)
        .await
        .expect("sender user");
    k
}

#[tokio::test]
async fn unknown_users_and_aliases_of_a_namespace_are_asked_of_the_service() {
    let dir = tempfile::tempdir().expect("dir");
    let (url, shared) = service().await;
    let k = kit_for(&url, dir.path()).await;
    let bot = UserId::parse("@bridgebot:example.org").expect("bot");
    let bot_room = k.room(&bot).await;
    {
        let mut s = shared.lock().expect("lock");
        s.gw = Some(k.gw.clone());
        s.room = Some(bot_room.clone());
    }
    let (alice, at) = k.user("alice").await;
    let room = k.room(&alice).await;

    // Profile lookup: the service creates the user, the gateway looks again.
    let dave = "@_bridge_dave:example.org";
    let (s, b) = k
        .call(
            Method::GET,
            &format!("/_matrix/client/v3/profile/{}", enc(dave)),
            Some(&at),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // A user the service does not know stays 404; a user outside every namespace is not asked.
    for user in ["@_bridge_nobody:example.org", "@stranger:example.org"] {
        let (s, b) = k
            .call(
                Method::GET,
                &format!("/_matrix/client/v3/profile/{}", enc(user)),
                Some(&at),
                None,
            )
            .await;
        assert_eq!(
            (s, b["errcode"].as_str()),
            (StatusCode::NOT_FOUND, Some("M_NOT_FOUND"))
        );
    }
    // Invite: the service creates the invitee.
    let (s, b) = k
        .call(
            Method::POST,
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(room.as_str())),
            Some(&at),
            Some(json!({ "user_id": "@_bridge_erin:example.org" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Alias: resolved after the service created it, and joined by it.
    let lobby = "#_bridge_lobby:example.org";
    let (s, b) = k
        .call(
            Method::GET,
            &format!("/_matrix/client/v3/directory/room/{}", enc(lobby)),
            Some(&at),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["room_id"], bot_room.as_str());
    let (s, b) = k
        .call(
            Method::GET,
            &format!(
                "/_matrix/client/v3/directory/room/{}",
                enc("#_bridge_none:example.org")
            ),
            Some(&at),
            None,
        )
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND"))
    );
    let queries = shared.lock().expect("lock").queries.clone();
    let asked = |kind: &str, id: &str| queries.contains(&(kind.to_owned(), id.to_owned()));
    assert!(asked("user", dave), "{queries:?}");
    assert!(asked("user", "@_bridge_erin:example.org"), "{queries:?}");
    assert!(asked("alias", lobby), "{queries:?}");
    assert!(!asked("user", "@stranger:example.org"), "{queries:?}");
}

#[tokio::test]
async fn a_down_service_makes_lookups_fail_as_without_it() {
    let dir = tempfile::tempdir().expect("dir");
    // Nothing listens on port 9 of loopback: the query fails at once.
    let k = kit_for("http://127.0.0.1:9", dir.path()).await;
    let (alice, at) = k.user("alice").await;
    let room = k.room(&alice).await;
    let (s, b) = k
        .call(
            Method::GET,
            &format!(
                "/_matrix/client/v3/profile/{}",
                enc("@_bridge_x:example.org")
            ),
            Some(&at),
            None,
        )
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND"))
    );
    let (s, b) = k
        .call(
            Method::POST,
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(room.as_str())),
            Some(&at),
            Some(json!({ "user_id": "@_bridge_x:example.org" })),
        )
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND"))
    );
    let (s, b) = k
        .call(
            Method::POST,
            &format!("/_matrix/client/v3/join/{}", enc("#_bridge_x:example.org")),
            Some(&at),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND"))
    );
}

#[tokio::test]
async fn exclusive_alias_namespaces_belong_to_their_service() {
    let dir = tempfile::tempdir().expect("dir");
    let k = kit_for("null", dir.path()).await;
    let (alice, at) = k.user("alice").await;
    let room = k.room(&alice).await;
    let put_alias = |alias: &str, token: &str| {
        let (alias, token) = (alias.to_owned(), token.to_owned());
        let room = room.clone();
        let k = &k;
        async move {
            k.call(
                Method::PUT,
                &format!("/_matrix/client/v3/directory/room/{}", enc(&alias)),
                Some(&token),
                Some(json!({ "room_id": room })),
            )
            .await
        }
    };
    let (s, b) = put_alias("#_bridge_mine:example.org", &at).await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_EXCLUSIVE")),
        "{b}"
    );
    let (s, b) = k
        .call(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&at),
            Some(json!({ "room_alias_name": "_bridge_room" })),
        )
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_EXCLUSIVE")),
        "{b}"
    );
    // A non-exclusive namespace stays open to everyone.
    let (s, b) = put_alias("#shared_alice:example.org", &at).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // The owning service may, once its user is in the room.
    let (s, b) = k
        .call(
            Method::POST,
            &format!("/_matrix/client/v3/join/{}", enc(room.as_str())),
            Some("as-bridge"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = put_alias("#_bridge_mine:example.org", "as-bridge").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = k
        .call(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            Some("as-bridge"),
            Some(json!({ "room_alias_name": "_bridge_room" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}
