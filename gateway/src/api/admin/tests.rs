//! Error cases and shapes of the admin API (synadm drives the happy paths end to end in
//! `tests/tests/synadm.rs`).

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    service::admin::users::{upsert, UserChange},
    testkit::{enc, kit, Kit},
};

/// A kit with `@root` (admin) and `@alice` (not); their tokens.
pub(super) async fn setup() -> (Kit, String, String) {
    let k = kit();
    let (root, root_token) = k.user("root").await;
    upsert(
        &k.gw,
        &root,
        UserChange {
            admin: Some(true),
            ..Default::default()
        },
    )
    .await
    .expect("make root an admin");
    let (_, alice_token) = k.user("alice").await;
    (k, root_token, alice_token)
}

pub(super) fn assert_err(got: (StatusCode, Value), status: StatusCode, errcode: &str) {
    assert_eq!(
        (got.0, got.1["errcode"].as_str()),
        (status, Some(errcode)),
        "{}",
        got.1
    );
}

const ALICE: &str = "@alice:example.org";

/// Every admin route, with a body where one is needed.
fn every_route() -> Vec<(Method, String, Option<Value>)> {
    let u = enc(ALICE);
    let room = enc("!nope:example.org");
    vec![
        (
            Method::GET,
            "/_synapse/admin/v1/server_version".into(),
            None,
        ),
        (Method::GET, "/_synapse/admin/v2/users".into(), None),
        (Method::GET, format!("/_synapse/admin/v2/users/{u}"), None),
        (
            Method::PUT,
            format!("/_synapse/admin/v2/users/{u}"),
            Some(json!({"admin": true})),
        ),
        (
            Method::POST,
            format!("/_synapse/admin/v1/deactivate/{u}"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/_synapse/admin/v1/reset_password/{u}"),
            Some(json!({"new_password": "a-long-password"})),
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v1/users/{u}/joined_rooms"),
            None,
        ),
        (Method::GET, format!("/_synapse/admin/v1/whois/{u}"), None),
        (Method::GET, "/_synapse/admin/v1/rooms".into(), None),
        (
            Method::GET,
            format!("/_synapse/admin/v1/rooms/{room}"),
            None,
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v1/rooms/{room}/members"),
            None,
        ),
        (
            Method::DELETE,
            format!("/_synapse/admin/v1/rooms/{room}"),
            Some(json!({"block": true})),
        ),
        (
            Method::DELETE,
            format!("/_synapse/admin/v2/rooms/{room}"),
            Some(json!({"block": true})),
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v2/rooms/{room}/delete_status"),
            None,
        ),
        (
            Method::GET,
            "/_synapse/admin/v2/rooms/delete_status/abc".into(),
            None,
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v1/rooms/{room}/block"),
            None,
        ),
        (
            Method::PUT,
            format!("/_synapse/admin/v1/rooms/{room}/block"),
            Some(json!({"block": true})),
        ),
        (
            Method::GET,
            "/_synapse/admin/v1/registration_tokens".into(),
            None,
        ),
        (
            Method::POST,
            "/_synapse/admin/v1/registration_tokens/new".into(),
            Some(json!({})),
        ),
        (
            Method::GET,
            "/_synapse/admin/v1/registration_tokens/abc".into(),
            None,
        ),
        (
            Method::PUT,
            "/_synapse/admin/v1/registration_tokens/abc".into(),
            Some(json!({})),
        ),
        (
            Method::DELETE,
            "/_synapse/admin/v1/registration_tokens/abc".into(),
            None,
        ),
    ]
}

#[tokio::test]
async fn admin_paths_refuse_missing_unknown_and_non_admin_tokens() {
    let (k, _, alice) = setup().await;
    for (method, path, body) in every_route() {
        let none = k.call(method.clone(), &path, None, body.clone()).await;
        assert_err(none, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
        let wrong = k
            .call(method.clone(), &path, Some("nope"), body.clone())
            .await;
        assert_err(wrong, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
        let user = k
            .call(method.clone(), &path, Some(&alice), body.clone())
            .await;
        assert_err(user, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    // Nothing changed: alice is still no admin and still active.
    let record =
        k.gw.users
            .get(&ruma::UserId::parse(ALICE).expect("id"))
            .expect("read")
            .expect("alice");
    assert!(!record.admin && !record.deactivated);
    // Nor was any room blocked.
    let nope = ruma::RoomId::parse("!nope:example.org").expect("id");
    assert!(k.gw.rooms.blocked(&nope).expect("read").is_none());
}

#[tokio::test]
async fn unknown_users_rooms_and_tokens_are_not_found() {
    let (k, root, _) = setup().await;
    let ghost = enc("@ghost:example.org");
    for (method, path, body) in [
        (
            Method::GET,
            format!("/_synapse/admin/v2/users/{ghost}"),
            None,
        ),
        (
            Method::POST,
            format!("/_synapse/admin/v1/deactivate/{ghost}"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/_synapse/admin/v1/reset_password/{ghost}"),
            Some(json!({"new_password": "a-long-password"})),
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v1/users/{ghost}/joined_rooms"),
            None,
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v1/whois/{ghost}"),
            None,
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v2/users/{}", enc("not-a-user-id")),
            None,
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v1/rooms/{}", enc("!nope:example.org")),
            None,
        ),
        (
            Method::GET,
            format!(
                "/_synapse/admin/v1/rooms/{}/members",
                enc("!nope:example.org")
            ),
            None,
        ),
        (
            Method::GET,
            format!("/_synapse/admin/v1/rooms/{}", enc("garbage")),
            None,
        ),
        (
            Method::GET,
            "/_synapse/admin/v1/registration_tokens/none".into(),
            None,
        ),
        (
            Method::PUT,
            "/_synapse/admin/v1/registration_tokens/none".into(),
            Some(json!({})),
        ),
        (
            Method::DELETE,
            "/_synapse/admin/v1/registration_tokens/none".into(),
            None,
        ),
    ] {
        let got = k.call(method, &path, Some(&root), body).await;
        assert_err(got, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    }
}

#[tokio::test]
async fn malformed_bodies_and_parameters_are_refused() {
    let (k, root, _) = setup().await;
    let alice = format!("/_synapse/admin/v2/users/{}", enc(ALICE));
    for body in [
        json!({"admin": "yes"}),
        json!({"password": 5}),
        json!([1, 2]),
    ] {
        let got = k.call(Method::PUT, &alice, Some(&root), Some(body)).await;
        assert_err(got, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    }
    let reset = format!("/_synapse/admin/v1/reset_password/{}", enc(ALICE));
    let got = k
        .call(Method::POST, &reset, Some(&root), Some(json!({})))
        .await;
    assert_err(got, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let got = k
        .call(
            Method::POST,
            "/_synapse/admin/v1/registration_tokens/new",
            Some(&root),
            Some(json!({"uses_allowed": -1})),
        )
        .await;
    assert_err(got, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let raw = k
        .send(
            http::Request::builder()
                .method(Method::PUT)
                .uri(&alice)
                .header("authorization", format!("Bearer {root}"))
                .body(axum::body::Body::from("{not json"))
                .expect("request"),
        )
        .await;
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let body: Value =
        serde_json::from_slice(&crate::testkit::body_bytes(raw).await).expect("a JSON error");
    assert_eq!(body["errcode"], "M_NOT_JSON");
    for q in ["limit=-1", "from=x", "deactivated=maybe"] {
        let got = k
            .call(
                Method::GET,
                &format!("/_synapse/admin/v2/users?{q}"),
                Some(&root),
                None,
            )
            .await;
        assert_err(got, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    let got = k
        .call(
            Method::GET,
            "/_synapse/admin/v1/rooms?order_by=nonsense",
            Some(&root),
            None,
        )
        .await;
    assert_err(got, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    // Another server's user cannot be administered.
    let other = format!("/_synapse/admin/v2/users/{}", enc("@bob:elsewhere.org"));
    let got = k
        .call(Method::PUT, &other, Some(&root), Some(json!({})))
        .await;
    assert_err(got, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
}

#[tokio::test]
async fn an_admin_creates_modifies_and_deactivates_accounts() {
    let (k, root, _) = setup().await;
    let carol = format!("/_synapse/admin/v2/users/{}", enc("@carol:example.org"));
    let (status, created) = k
        .call(
            Method::PUT,
            &carol,
            Some(&root),
            Some(json!({"password": "carols-password", "displayname": "Carol"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "@carol:example.org");
    assert_eq!(created["displayname"], "Carol");
    assert_eq!(created["admin"], false);
    let (status, changed) = k
        .call(
            Method::PUT,
            &carol,
            Some(&root),
            Some(json!({"admin": true})),
        )
        .await;
    assert_eq!((status, &changed["admin"]), (StatusCode::OK, &json!(true)));
    let (_, list) = k
        .call(
            Method::GET,
            "/_synapse/admin/v2/users?limit=2",
            Some(&root),
            None,
        )
        .await;
    assert_eq!(list["total"], 3, "{list}");
    assert_eq!(list["users"].as_array().map(Vec::len), Some(2));
    assert_eq!(list["next_token"], "2");
    let (status, _) = k
        .call(
            Method::POST,
            &format!(
                "/_synapse/admin/v1/deactivate/{}",
                enc("@carol:example.org")
            ),
            Some(&root),
            Some(json!({"erase": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, shown) = k.call(Method::GET, &carol, Some(&root), None).await;
    assert_eq!(shown["deactivated"], true);
    let (_, active) = k
        .call(Method::GET, "/_synapse/admin/v2/users", Some(&root), None)
        .await;
    assert_eq!(
        active["total"], 2,
        "deactivated accounts are hidden by default"
    );
}

#[tokio::test]
async fn a_server_admin_reads_the_aliases_of_a_room_it_is_not_in() {
    let (k, root, alice) = setup().await;
    let (_, created) = k
        .call(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            Some(json!({"room_alias_name": "den"})),
        )
        .await;
    let room = created["room_id"].as_str().expect("room id").to_owned();
    let path = format!("/_matrix/client/r0/rooms/{}/aliases", enc(&room));
    let (status, aliases) = k.call(Method::GET, &path, Some(&root), None).await;
    assert_eq!(status, StatusCode::OK, "{aliases}");
    assert_eq!(aliases["aliases"], json!(["#den:example.org"]));
    let (_, bob) = k.user("bob").await;
    let got = k.call(Method::GET, &path, Some(&bob), None).await;
    assert_err(got, StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

#[tokio::test]
async fn an_admin_lists_and_deletes_a_users_media() {
    let (k, root, alice_token) = setup().await;
    let alice = ruma::UserId::parse(ALICE).expect("id");
    let id =
        k.gw.media
            .create(
                &alice,
                crate::service::media::Upload {
                    content_type: Some("text/plain".into()),
                    filename: Some("notes.txt".into()),
                    data: bytes::Bytes::from_static(b"hello"),
                },
            )
            .await
            .expect("upload");
    let list = format!("/_synapse/admin/v1/users/{}/media", enc(ALICE));
    let (status, page) = k.call(Method::GET, &list, Some(&root), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 1);
    assert_eq!(page["media"][0]["media_id"], id.as_str());
    assert_eq!(page["media"][0]["media_length"], 5);
    assert_eq!(page["media"][0]["upload_name"], "notes.txt");
    let item = format!("/_synapse/admin/v1/media/example.org/{id}");
    let (status, deleted) = k.call(Method::DELETE, &item, Some(&root), None).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["deleted_media"], json!([id]));
    let download = format!("/_matrix/client/v1/media/download/example.org/{id}");
    let got = k
        .call(Method::GET, &download, Some(&alice_token), None)
        .await;
    assert_err(got, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let (_, page) = k.call(Method::GET, &list, Some(&root), None).await;
    assert_eq!(page["total"], 0);
    let again = k.call(Method::DELETE, &item, Some(&root), None).await;
    assert_err(again, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}
