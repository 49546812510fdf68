//! Registration tokens as Synapse's admin API shows them
//! (`/_synapse/admin/v1/registration_tokens…`).

use serde::Serialize;

use crate::{
    error::{ApiError, ApiResult},
    service::{
        users::{now_ms, random_string, RegistrationToken},
        Gateway,
    },
};

/// A token in Synapse's shape.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AdminToken {
    /// The token.
    pub token: String,
    /// Registrations it allows (`null`: unlimited).
    pub uses_allowed: Option<u32>,
    /// Registrations in progress (always 0: mixgate completes a registration in one request).
    pub pending: u32,
    /// Registrations completed with it.
    pub completed: u32,
    /// Expiry, ms since the epoch (`null`: never).
    pub expiry_time: Option<u64>,
}

fn shape(token: String, r: &RegistrationToken) -> AdminToken {
    AdminToken {
        token,
        uses_allowed: r.uses_allowed,
        pending: 0,
        completed: r.completed,
        expiry_time: r.expiry_ts,
    }
}

fn usable(r: &RegistrationToken) -> bool {
    r.uses_allowed.is_none_or(|n| r.completed < n) && r.expiry_ts.is_none_or(|e| e > now_ms())
}

/// Every token; `valid` keeps only usable (`Some(true)`) or only spent/expired ones.
pub fn list(gw: &Gateway, valid: Option<bool>) -> ApiResult<Vec<AdminToken>> {
    Ok(gw
        .users
        .registration_tokens()?
        .into_iter()
        .filter(|(_, r)| valid.is_none_or(|v| usable(r) == v))
        .map(|(t, r)| shape(t, &r))
        .collect())
}

/// One token; 404 `M_NOT_FOUND` if unknown.
pub fn get(gw: &Gateway, token: &str) -> ApiResult<AdminToken> {
    let r = gw
        .users
        .registration_token(token)?
        .ok_or_else(|| ApiError::not_found("No such registration token"))?;
    Ok(shape(token.to_owned(), &r))
}

/// Characters Synapse allows in a token.
fn token_is_valid(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// A new token: `token` as given (or `length` random characters, default 16).
pub async fn create(
    gw: &Gateway,
    token: Option<String>,
    length: Option<u32>,
    uses_allowed: Option<u32>,
    expiry_time: Option<u64>,
) -> ApiResult<AdminToken> {
    let token = match token {
        Some(t) if !token_is_valid(&t) => {
            return Err(ApiError::invalid_param(
                "token must be 1 to 64 characters of [A-Za-z0-9._~-]",
            ))
        }
        Some(t) => t,
        None => {
            let len = length.unwrap_or(16);
            if !(1..=64).contains(&len) {
                return Err(ApiError::invalid_param("length must be between 1 and 64"));
            }
            random_string(len as usize)
        }
    };
    if expiry_time.is_some_and(|e| e <= now_ms()) {
        return Err(ApiError::invalid_param("expiry_time must be in the future"));
    }
    if gw.users.registration_token(&token)?.is_some() {
        return Err(ApiError::invalid_param(format!(
            "Token already exists: {token}"
        )));
    }
    let record = RegistrationToken {
        uses_allowed,
        completed: 0,
        expiry_ts: expiry_time,
    };
    gw.users.put_registration_token(&token, &record).await?;
    Ok(shape(token, &record))
}

/// A change to a token: `Some(None)` clears a limit, `None` leaves it.
#[derive(Debug, Clone, Default)]
pub struct TokenChange {
    /// New use limit.
    pub uses_allowed: Option<Option<u32>>,
    /// New expiry.
    pub expiry_time: Option<Option<u64>>,
}

/// Changes a token; 404 if unknown.
pub async fn update(gw: &Gateway, token: &str, change: TokenChange) -> ApiResult<AdminToken> {
    let mut r = gw
        .users
        .registration_token(token)?
        .ok_or_else(|| ApiError::not_found("No such registration token"))?;
    if let Some(u) = change.uses_allowed {
        r.uses_allowed = u;
    }
    if let Some(e) = change.expiry_time {
        if e.is_some_and(|e| e <= now_ms()) {
            return Err(ApiError::invalid_param("expiry_time must be in the future"));
        }
        r.expiry_ts = e;
    }
    gw.users.put_registration_token(token, &r).await?;
    Ok(shape(token.to_owned(), &r))
}

/// Deletes a token; 404 if unknown.
pub async fn delete(gw: &Gateway, token: &str) -> ApiResult<()> {
    if gw.users.delete_registration_token(token).await? {
        Ok(())
    } else {
        Err(ApiError::not_found("No such registration token"))
    }
}
