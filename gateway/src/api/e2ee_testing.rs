//! Test helpers for the E2EE endpoint tests: a memory gateway, users with tokens, and JSON
//! calls through the whole router.

use std::sync::Arc;

use axum::{body::Body, Router};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::{config::GatewayConfig, service::Gateway};

/// The password every test user gets.
pub(crate) const PASSWORD: &str = "correct horse";

/// A memory-only gateway called `test.local` and its router.
pub(crate) fn gateway() -> (Arc<Gateway>, Router) {
    let config = GatewayConfig {
        memory_only: true,
        server_name: Some("test.local".to_owned()),
        ..GatewayConfig::default()
    };
    let gw = Gateway::open(config).expect("gateway");
    let app = super::router(gw.clone());
    (gw, app)
}

/// Creates `@name:test.local` (password [`PASSWORD`]) with a device `device`; returns its
/// access token.
pub(crate) async fn user(gw: &Gateway, name: &str, device: &str) -> String {
    let id = ruma::UserId::parse(format!("@{name}:test.local")).expect("user id");
    if !gw.users.exists(&id).expect("exists") {
        gw.users.create(&id, Some(PASSWORD)).await.expect("create");
    }
    let (_, token) = gw
        .users
        .create_device(
            &id,
            Some(device.into()),
            Some(format!("{name}'s {device}")),
            None,
        )
        .await
        .expect("device");
    token
}

/// Sends a request with an optional JSON body and returns the status and JSON answer.
pub(crate) async fn call(
    app: &Router,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(match body {
            Some(b) => Body::from(b.to_string()),
            None => Body::empty(),
        })
        .expect("request");
    let res = app.clone().oneshot(req).await.expect("response");
    let status = res.status();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (status, json)
}
