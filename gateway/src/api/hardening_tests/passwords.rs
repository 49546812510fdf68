//! Flaw 5 (password guesses are rate-limited everywhere, per account too), and the "Also"
//! items on UIA challenges, weak passwords and trusted proxies.

use std::net::SocketAddr;

use axum::{body::Body, extract::ConnectInfo};
use http::{Method, Request, StatusCode};
use ruma::UserId;
use serde_json::{json, Value};

use super::assert_err;
use crate::testkit::{body_bytes, kit, kit_with};

fn password_auth(password: &str) -> Value {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
           "password": password})
}

#[tokio::test]
async fn password_guesses_through_uia_are_limited_per_account() {
    let k = kit_with(|c| c.auth_attempts_per_minute = 3);
    let alice = UserId::parse("@alice:example.org").expect("id");
    k.gw.users
        .create(&alice, Some("right-password"))
        .await
        .expect("create");
    let (_, token) =
        k.gw.users
            .create_device(&alice, None, None, None)
            .await
            .expect("device");
    let change = |password: &str| json!({"new_password": "another-password", "auth": password_auth(password)});
    for _ in 0..3 {
        let (status, body) = k
            .call(
                Method::POST,
                "/_matrix/client/v3/account/password",
                Some(&token),
                Some(change("guess")),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    // The fourth guess is refused before the password is checked, on every endpoint that
    // checks one, even with the right password.
    for (path, body) in [
        (
            "/_matrix/client/v3/account/password",
            change("right-password"),
        ),
        (
            "/_matrix/client/v3/delete_devices",
            json!({"devices": [], "auth": password_auth("right-password")}),
        ),
        (
            "/_matrix/client/v3/account/deactivate",
            json!({"auth": password_auth("right-password")}),
        ),
    ] {
        assert_err(
            k.call(Method::POST, path, Some(&token), Some(body)).await,
            StatusCode::TOO_MANY_REQUESTS,
            "M_LIMIT_EXCEEDED",
        );
    }
    let login = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "right-password"});
    assert_err(
        k.call(Method::POST, "/_matrix/client/v3/login", None, Some(login))
            .await,
        StatusCode::TOO_MANY_REQUESTS,
        "M_LIMIT_EXCEEDED",
    );
}

#[tokio::test]
async fn uia_challenge_has_no_error_until_a_stage_fails() {
    let k = kit();
    let alice = UserId::parse("@alice:example.org").expect("id");
    k.gw.users
        .create(&alice, Some("right-password"))
        .await
        .expect("create");
    let (_, token) =
        k.gw.users
            .create_device(&alice, None, None, None)
            .await
            .expect("device");
    let (status, body) = k
        .call(
            Method::POST,
            "/_matrix/client/v3/delete_devices",
            Some(&token),
            Some(json!({"devices": []})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body.get("errcode").is_none() && body.get("error").is_none(),
        "{body}"
    );
    assert!(
        body["flows"].is_array() && body["session"].is_string(),
        "{body}"
    );
    let session = body["session"].clone();
    let mut auth = password_auth("wrong");
    auth["session"] = session;
    let (status, body) = k
        .call(
            Method::POST,
            "/_matrix/client/v3/delete_devices",
            Some(&token),
            Some(json!({"devices": [], "auth": auth})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errcode"], "M_FORBIDDEN", "{body}");
    assert!(body["flows"].is_array(), "{body}");
}

#[tokio::test]
async fn weak_passwords_are_refused() {
    let k = kit_with(|c| c.min_password_length = 8);
    for password in [json!(""), json!("x"), json!("1234567"), Value::Null] {
        let mut body = json!({"username": "weak", "auth": {"type": "m.login.dummy"}});
        if !password.is_null() {
            body["password"] = password;
        }
        assert_err(
            k.call(
                Method::POST,
                "/_matrix/client/v3/register",
                None,
                Some(body),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "M_WEAK_PASSWORD",
        );
    }
    let body = json!({"username": "strong", "password": "12345678",
                      "auth": {"type": "m.login.dummy"}});
    let (status, res) = k
        .call(
            Method::POST,
            "/_matrix/client/v3/register",
            None,
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{res}");
    let token = res["access_token"].as_str().expect("token");
    let change = json!({"new_password": "short", "auth": {"type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "strong"}, "password": "12345678"}});
    assert_err(
        k.call(
            Method::POST,
            "/_matrix/client/v3/account/password",
            Some(token),
            Some(change),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "M_WEAK_PASSWORD",
    );
}

/// A login attempt from `peer` carrying `X-Forwarded-For: forwarded` (for a fresh account
/// name each time, so only the per-address limit applies).
async fn login_from(k: &crate::testkit::Kit, peer: &str, forwarded: &str) -> StatusCode {
    let user = crate::service::users::random_string(12).to_lowercase();
    let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user",
                      "user": user}, "password": "wrong-password"});
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/_matrix/client/v3/login")
        .header("content-type", "application/json")
        .header("x-forwarded-for", forwarded)
        .body(Body::from(body.to_string()))
        .expect("request");
    let addr: SocketAddr = format!("{peer}:4000").parse().expect("addr");
    req.extensions_mut().insert(ConnectInfo(addr));
    let res = k.send(req).await;
    let status = res.status();
    body_bytes(res).await;
    status
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let k = kit_with(|c| {
        c.auth_attempts_per_minute = 1;
        c.trusted_proxies = vec!["10.0.0.0/8".into()];
    });
    // Through the proxy, each client has its own bucket.
    assert_eq!(
        login_from(&k, "10.1.1.1", "198.51.100.1").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        login_from(&k, "10.1.1.1", "198.51.100.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login_from(&k, "10.1.1.1", "198.51.100.2").await,
        StatusCode::FORBIDDEN
    );
    // Anyone else's header is ignored: a client cannot pick a fresh bucket.
    assert_eq!(
        login_from(&k, "203.0.113.5", "192.0.2.1").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        login_from(&k, "203.0.113.5", "192.0.2.2").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}
