//! Test helpers: an in-memory gateway, users with tokens, and requests through the router.
//! It sits at the crate root, beside `api/` and `service/`, so tests of either can use it
//! without `service/` depending on `api/`.

use std::sync::Arc;

use axum::{body::Body, Router};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{
    config::{GatewayConfig, RegistrationMode},
    service::Gateway,
};

/// An in-memory gateway and its router.
pub struct Kit {
    /// The services.
    pub gw: Arc<Gateway>,
    app: Router,
}

/// A gateway named `example.org` keeping everything in memory, with `max_upload_bytes` set.
pub fn kit_with(config: impl FnOnce(&mut GatewayConfig)) -> Kit {
    let mut c = GatewayConfig {
        memory_only: true,
        server_name: Some("example.org".into()),
        registration: RegistrationMode::Open,
        ..GatewayConfig::default()
    };
    config(&mut c);
    let gw = Gateway::open(c).expect("open gateway");
    Kit {
        app: crate::api::router(gw.clone()),
        gw,
    }
}

/// A default test gateway.
pub fn kit() -> Kit {
    kit_with(|_| {})
}

impl Kit {
    /// Creates `@name:example.org` with a device; returns the user and an access token.
    pub async fn user(&self, name: &str) -> (OwnedUserId, String) {
        let user = UserId::parse(format!("@{name}:example.org")).expect("user id");
        self.gw
            .users
            .create(&user, None)
            .await
            .expect("create user");
        let (_, token) = self
            .gw
            .users
            .create_device(&user, None, None, None)
            .await
            .expect("device");
        (user, token)
    }

    /// Creates a room with `creator` joined (public join rule).
    pub async fn room(&self, creator: &UserId) -> OwnedRoomId {
        let room = RoomId::parse(format!(
            "!{}:example.org",
            crate::service::users::random_string(12)
        ))
        .expect("room id");
        let c = creator.to_owned();
        self.gw
            .rooms
            .write(&room, Some(RoomVersionId::V11), |txn| {
                txn.append(
                    &c,
                    "m.room.create",
                    Some(""),
                    json!({"room_version": "11"}),
                    None,
                )?;
                txn.append(
                    &c,
                    "m.room.member",
                    Some(c.as_str()),
                    json!({"membership": "join", "displayname": c.localpart()}),
                    None,
                )?;
                txn.append(
                    &c,
                    "m.room.join_rules",
                    Some(""),
                    json!({"join_rule": "public"}),
                    None,
                )
            })
            .await
            .expect("create room");
        room
    }

    /// Joins `user` to `room`.
    pub async fn join(&self, room: &RoomId, user: &UserId) {
        let u = user.to_owned();
        self.gw
            .rooms
            .write(room, None, |txn| {
                txn.append(
                    &u,
                    "m.room.member",
                    Some(u.as_str()),
                    json!({"membership": "join", "displayname": u.localpart()}),
                    None,
                )
            })
            .await
            .expect("join");
    }

    /// Sends a raw request.
    pub async fn send(&self, req: Request<Body>) -> http::Response<Body> {
        self.app.clone().oneshot(req).await.expect("infallible")
    }

    /// Sends a JSON request (no body for `None`) and returns status and JSON body (`Null` if
    /// the body is not JSON).
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let res = self.send(req.body(body).expect("request")).await;
        let status = res.status();
        let bytes = body_bytes(res).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// The whole body of a response.
pub async fn body_bytes(res: http::Response<Body>) -> Vec<u8> {
    res.into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec()
}

/// Percent-encodes a path segment (user and room ids contain `@`, `:`, `!`).
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
