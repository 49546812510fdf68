//! Client-server API errors: every failure becomes a Matrix error body with the spec's status.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

/// A Matrix error as returned to clients: `{"errcode": ..., "error": ...}` with an HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Matrix error code (`M_FORBIDDEN`, ...).
    pub errcode: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Extra fields merged into the body (`retry_after_ms`, UIA flows, ...).
    pub extra: Option<Value>,
}

/// Result type of API handlers and services.
pub type ApiResult<T> = Result<T, ApiError>;

macro_rules! constructor {
    ($(#[$doc:meta])* $name:ident, $status:ident, $code:literal) => {
        $(#[$doc])*
        pub fn $name(message: impl Into<String>) -> Self {
            Self::new(StatusCode::$status, $code, message)
        }
    };
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, errcode: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            errcode,
            message: message.into(),
            extra: None,
        }
    }

    constructor!(/// 400 M_NOT_JSON: the body is not JSON.
        not_json, BAD_REQUEST, "M_NOT_JSON");
    constructor!(/// 400 M_BAD_JSON: JSON of the wrong shape.
        bad_json, BAD_REQUEST, "M_BAD_JSON");
    constructor!(/// 401 M_MISSING_TOKEN: no access token.
        missing_token, UNAUTHORIZED, "M_MISSING_TOKEN");
    constructor!(/// 401 M_UNKNOWN_TOKEN: the access token is not valid.
        unknown_token, UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    constructor!(/// 403 M_FORBIDDEN.
        forbidden, FORBIDDEN, "M_FORBIDDEN");
    constructor!(/// 400 M_EXCLUSIVE: an application service holds this id exclusively.
        exclusive, BAD_REQUEST, "M_EXCLUSIVE");
    constructor!(/// 404 M_NOT_FOUND.
        not_found, NOT_FOUND, "M_NOT_FOUND");
    constructor!(/// 404 M_UNRECOGNIZED: unknown endpoint.
        unrecognized, NOT_FOUND, "M_UNRECOGNIZED");
    constructor!(/// 405 M_UNRECOGNIZED: known path, wrong method.
        method_not_allowed, METHOD_NOT_ALLOWED, "M_UNRECOGNIZED");
    constructor!(/// 413 M_TOO_LARGE.
        too_large, PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    constructor!(/// 400 M_USER_IN_USE.
        user_in_use, BAD_REQUEST, "M_USER_IN_USE");
    constructor!(/// 400 M_INVALID_USERNAME.
        invalid_username, BAD_REQUEST, "M_INVALID_USERNAME");
    constructor!(/// 400 M_WEAK_PASSWORD.
        weak_password, BAD_REQUEST, "M_WEAK_PASSWORD");
    constructor!(/// 400 M_INVALID_PARAM.
        invalid_param, BAD_REQUEST, "M_INVALID_PARAM");
    constructor!(/// 400 M_MISSING_PARAM.
        missing_param, BAD_REQUEST, "M_MISSING_PARAM");
    constructor!(/// 400 M_UNSUPPORTED_ROOM_VERSION.
        unsupported_room_version, BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION");
    constructor!(/// 400 M_ROOM_IN_USE (alias taken).
        room_in_use, BAD_REQUEST, "M_ROOM_IN_USE");
    constructor!(/// 403 M_USER_DEACTIVATED.
        user_deactivated, FORBIDDEN, "M_USER_DEACTIVATED");
    constructor!(/// 500 M_UNKNOWN: a server fault; details are logged, not shown.
        internal, INTERNAL_SERVER_ERROR, "M_UNKNOWN");
    constructor!(/// 400 M_UNKNOWN: a bad request without a more precise code.
        bad_request, BAD_REQUEST, "M_UNKNOWN");

    /// 429 M_LIMIT_EXCEEDED with `retry_after_ms`.
    pub fn limit_exceeded(retry_after_ms: u64) -> Self {
        Self {
            extra: Some(json!({ "retry_after_ms": retry_after_ms })),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "M_LIMIT_EXCEEDED",
                "Too many requests",
            )
        }
    }

    /// 401 user-interactive authentication challenge; `body` carries flows, params, session.
    /// As the spec says, it has no `errcode` or `error` until a stage has failed (see
    /// [`ApiError::uia_failed`]): clients show those as the stage's error.
    pub fn uia(body: Value) -> Self {
        Self {
            extra: Some(body),
            ..Self::new(StatusCode::UNAUTHORIZED, "", "")
        }
    }

    /// 401 challenge after a failed stage: `errcode` and `error` say why.
    pub fn uia_failed(body: Value, errcode: &'static str, message: impl Into<String>) -> Self {
        Self {
            extra: Some(body),
            ..Self::new(StatusCode::UNAUTHORIZED, errcode, message)
        }
    }

    /// The JSON body sent to the client (an error without `errcode` is a plain UIA challenge).
    pub fn body(&self) -> Value {
        let mut body = if self.errcode.is_empty() {
            json!({})
        } else {
            json!({ "errcode": self.errcode, "error": self.message })
        };
        if let (Some(Value::Object(extra)), Value::Object(map)) = (&self.extra, &mut body) {
            for (k, v) in extra {
                map.insert(k.clone(), v.clone());
            }
        }
        body
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.errcode,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<storage::Error> for ApiError {
    fn from(e: storage::Error) -> Self {
        tracing::error!(error = %e, "storage failure");
        Self::internal("Internal storage error")
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        Self::bad_json(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        insta::assert_json_snapshot!("limit_exceeded", ApiError::limit_exceeded(1500).body());
        insta::assert_json_snapshot!(
            "forbidden",
            ApiError::forbidden("You are not in this room").body()
        );
    }
}
