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
use std::net::IpAddr;

/// A 401 challenge offering the given single-stage flows.
pub fn challenge(stages: &[&str], session: Option<&str>, error: Option<&str>) -> ApiError {
    let flows: Vec<Value> = stages.iter().map(|s| json!({ "stages": [s] })).collect();
    let session = session
        .map(str::to_owned)
        .unwrap_or_else(|| random_string(16));
    let body = json!({ "flows": flows, "params": {}, "session": session });
    match error {
        Some(message) => ApiError::uia_failed(body, "M_FORBIDDEN", message),
        None => ApiError::uia(body),
    }
}

/// The `auth` object of a request body, if any.
pub fn auth_of(body: Option<&Value>) -> Option<&Value> {
    body.and_then(|b| b.get("auth")).filter(|a| a.is_object())
}

/// 400 `M_WEAK_PASSWORD` for a new password shorter than `min_password_length` characters.
pub fn check_new_password(gw: &Gateway, password: &str) -> ApiResult<()> {
    let min = gw.config.min_password_length;
    if password.chars().count() < min {
        return Err(ApiError::weak_password(format!(
            "Passwords must be at least {min} characters long"
        )));
    }
    Ok(())
}

/// Checks `user`'s password, counting the attempt against the per-account limit and, when
/// `ip` is given, the per-address one (429 `M_LIMIT_EXCEEDED` beyond either). Every password
/// check goes through here, so a stolen access token cannot be turned into the password by
/// guessing through UIA faster than through `/login`.
pub async fn verify_password(
    gw: &Gateway,
    user: &UserId,
    password: &str,
    ip: Option<IpAddr>,
) -> ApiResult<bool> {
    gw.auth_limiter.check(ip)?;
    gw.password_limiter.check(Some(user.to_owned()))?;
    gw.users.check_password(user, password).await
}

/// Requires `m.login.password` UIA for `user` in `body`; `ip` is the client's address.
pub async fn require_password(
    gw: &Gateway,
    user: &UserId,
    ip: Option<IpAddr>,
    body: Option<&Value>,
) -> ApiResult<()> {
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
    if verify_password(gw, user, password, ip).await? {
        Ok(())
    } else {
        Err(challenge(
            &["m.login.password"],
            session,
            Some("Invalid password"),
        ))
    }
}
