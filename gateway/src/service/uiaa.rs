//! User-interactive authentication (UIA) for sensitive endpoints.
//!
//! The gateway offers single-stage flows: `m.login.password` for account actions,
//! `m.login.dummy` or `m.login.registration_token` for registration. A stage is checked in the
//! request that carries it; the `session` value is echoed so clients can follow the protocol.

use serde_json::{json, Value};

use crate::{
    error::{ApiError, ApiResult},
    service::{users::random_string, Gateway},
};
use ruma::UserId;

/// A 401 challenge offering the given single-stage flows.
pub fn challenge(stages: &[&str], session: Option<&str>, error: Option<&str>) -> ApiError {
    let flows: Vec<Value> = stages.iter().map(|s| json!({ "stages": [s] })).collect();
    let session = session
        .map(str::to_owned)
        .unwrap_or_else(|| random_string(16));
    let mut err = ApiError::uia(json!({ "flows": flows, "params": {}, "session": session }));
    if let Some(message) = error {
        err.message = message.to_owned();
    }
    err
}

/// The `auth` object of a request body, if any.
pub fn auth_of(body: Option<&Value>) -> Option<&Value> {
    body.and_then(|b| b.get("auth")).filter(|a| a.is_object())
}

/// Requires `m.login.password` UIA for `user` in `body`.
pub async fn require_password(gw: &Gateway, user: &UserId, body: Option<&Value>) -> ApiResult<()> {
    let Some(auth) = auth_of(body) else {
        return Err(challenge(&["m.login.password"], None, None));
    };
    let session = auth.get("session").and_then(Value::as_str);
    if auth.get("type").and_then(Value::as_str) != Some("m.login.password") {
        return Err(challenge(
            &["m.login.password"],
            session,
            Some("Unsupported auth type"),
        ));
    }
    let named = auth
        .get("identifier")
        .and_then(|i| i.get("user"))
        .or_else(|| auth.get("user"))
        .and_then(Value::as_str);
    if let Some(named) = named {
        let same = named == user.as_str() || named == user.localpart();
        if !same {
            return Err(ApiError::forbidden("Authentication is for another user"));
        }
    }
    let password = auth
        .get("password")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if gw.users.check_password(user, password).await? {
        Ok(())
    } else {
        Err(challenge(
            &["m.login.password"],
            session,
            Some("Invalid password"),
        ))
    }
}
