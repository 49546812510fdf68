//! The `Ruma<T>` extractor: authentication, body limits and parsing into ruma request types.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Bytes,
    extract::{ConnectInfo, FromRequest, FromRequestParts, RawPathParams, Request},
    http::request::Parts,
    response::{IntoResponse, Response},
};
use ruma::api::{
    auth_scheme::{
        AccessToken, AccessTokenOptional, AppserviceToken, AppserviceTokenOptional, NoAccessToken,
        NoAuthentication,
    },
    error::{DeserializationError, FromHttpRequestError},
    IncomingRequest, Metadata, OutgoingResponse,
};
use serde_json::Value;

use crate::{client_addr::AddrRange, error::ApiError, service::Gateway};

/// Whether an endpoint's authentication scheme needs an access token.
pub trait AuthRequirement {
    /// `Some(true)`: required; `Some(false)`: optional; `None`: not used.
    const TOKEN: Option<bool>;
}

impl AuthRequirement for AccessToken {
    const TOKEN: Option<bool> = Some(true);
}
impl AuthRequirement for AppserviceToken {
    const TOKEN: Option<bool> = Some(true);
}
impl AuthRequirement for AccessTokenOptional {
    const TOKEN: Option<bool> = Some(false);
}
impl AuthRequirement for AppserviceTokenOptional {
    const TOKEN: Option<bool> = Some(false);
}
impl AuthRequirement for NoAuthentication {
    const TOKEN: Option<bool> = None;
}
impl AuthRequirement for NoAccessToken {
    const TOKEN: Option<bool> = None;
}

/// The access token of a request: `Authorization: Bearer …` or `?access_token=…`.
pub fn access_token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(http::header::AUTHORIZATION) {
        if let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
            return Some(token.trim().to_owned());
        }
    }
    let query = parts.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
}

use crate::service::appservice::Masquerade;
pub use crate::service::caller::Caller;

/// Resolves the caller from the request's token; `required` decides whether a missing token
/// is an error.
pub fn authenticate(
    gw: &Gateway,
    parts: &Parts,
    required: bool,
) -> Result<Option<Caller>, ApiError> {
    match access_token(parts) {
        Some(token) => match gw.users.resolve_token(&token)? {
            Some(rec) => Ok(Some(Caller {
                user_id: rec.user_id,
                device_id: rec.device_id,
                appservice: None,
            })),
            None => {
                let path = parts.uri.path();
                let registering =
                    path.ends_with("/client/v3/register") || path.ends_with("/client/r0/register");
                let query = Masquerade::from_query(parts.uri.query(), registering);
                gw.appservices
                    .caller(gw, &token, &query)?
                    .map(Some)
                    .ok_or_else(|| ApiError::unknown_token("Unknown access token"))
            }
        },
        None if required => Err(ApiError::missing_token("Missing access token")),
        None => Ok(None),
    }
}

/// The client's address, if the server recorded it (through a trusted proxy, the address the
/// proxy reports; see [`crate::client_addr`]).
fn client_ip(gw: &Gateway, parts: &Parts) -> Option<std::net::IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let trusted: Vec<AddrRange> = gw
        .config
        .trusted_proxies
        .iter()
        .filter_map(|p| AddrRange::parse(p))
        .collect();
    crate::client_addr::client_ip(peer, &parts.headers, &trusted)
}

/// A parsed ruma request with its caller.
pub struct Ruma<T> {
    /// The parsed request.
    pub body: T,
    /// The caller, when authenticated.
    pub caller: Option<Caller>,
    /// The body as JSON (user-interactive auth reads fields ruma does not keep).
    pub json: Option<Value>,
    /// The client's address.
    pub ip: Option<std::net::IpAddr>,
}

impl<T> Ruma<T> {
    /// The caller of an endpoint that requires authentication.
    pub fn caller(&self) -> Result<&Caller, ApiError> {
        self.caller
            .as_ref()
            .ok_or_else(|| ApiError::missing_token("Missing access token"))
    }
}

/// Maps ruma's parse errors onto Matrix error codes.
fn parse_error(e: FromHttpRequestError) -> ApiError {
    match e {
        FromHttpRequestError::Deserialization(DeserializationError::Json(j))
            if j.is_syntax() || j.is_eof() =>
        {
            ApiError::not_json(format!("Body is not valid JSON: {j}"))
        }
        FromHttpRequestError::Deserialization(DeserializationError::Ident(e)) => {
            ApiError::invalid_param(format!("Invalid identifier: {e}"))
        }
        FromHttpRequestError::MethodMismatch { .. } => {
            ApiError::method_not_allowed("Method not allowed")
        }
        other => ApiError::bad_json(other.to_string()),
    }
}

impl<T> FromRequest<Arc<Gateway>> for Ruma<T>
where
    T: IncomingRequest + Send,
    <T as Metadata>::Authentication: AuthRequirement,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, gw: &Arc<Gateway>) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let params = RawPathParams::from_request_parts(&mut parts, gw)
            .await
            .map_err(|e| ApiError::invalid_param(e.body_text()))?;
        let mut path_args: Vec<String> = params.iter().map(|(_, v)| v.to_owned()).collect();
        if path_args.len() + 1 == T::_path_parameters().len() {
            // `/state/{type}/` with an empty state key.
            path_args.push(String::new());
        }
        let caller = match <T::Authentication as AuthRequirement>::TOKEN {
            Some(required) => authenticate(gw, &parts, required)?,
            None => None,
        };
        let ip = client_ip(gw, &parts);
        // JSON bodies are read only up to their cap (media uploads do not come through here).
        let limit = crate::service::limits::MAX_JSON_BODY_BYTES.min(gw.config.max_request_bytes);
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
            match e
                .into_inner()
                .downcast::<http_body_util::LengthLimitError>()
            {
                Ok(_) => ApiError::too_large("Request body too large"),
                Err(other) => ApiError::bad_request(format!("Cannot read the body: {other}")),
            }
        })?;
        let (bytes, json) =
            if parts.method == http::Method::GET || parts.method == http::Method::HEAD {
                (bytes, None)
            } else if bytes.iter().all(u8::is_ascii_whitespace) {
                (
                    Bytes::from_static(b"{}"),
                    Some(Value::Object(Default::default())),
                )
            } else {
                let json: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| ApiError::not_json(format!("Body is not valid JSON: {e}")))?;
                if !json.is_object() {
                    return Err(ApiError::bad_json("Body must be a JSON object"));
                }
                (bytes, Some(json))
            };
        // ruma-client-api 0.24 panics on a login body without a string `type` (which the spec
        // requires); answer it here so such requests do not reach the panic below at all.
        if parts.method == http::Method::POST
            && parts.uri.path().ends_with("/login")
            && json
                .as_ref()
                .is_some_and(|j| !j.get("type").is_some_and(Value::is_string))
        {
            return Err(ApiError::bad_json("Login needs a `type`"));
        }
        let http_req = http::Request::from_parts(parts, bytes);
        // ruma's request parsers index into bodies in places (e.g. a login body without
        // `type` panics in ruma-client-api 0.24); a parser panic is bad input, not a crash.
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            T::try_from_http_request(http_req, &path_args)
        }))
        .map_err(|_| ApiError::bad_json("Request body does not match this endpoint"))?;
        let body = parsed.map_err(parse_error)?;
        Ok(Self {
            body,
            caller,
            json,
            ip,
        })
    }
}

/// A ruma response turned into an HTTP response.
pub struct RumaResponse<R>(pub R);

impl<R: OutgoingResponse> IntoResponse for RumaResponse<R> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<bytes::BytesMut>() {
            Ok(res) => res
                .map(|b| axum::body::Body::from(b.freeze()))
                .into_response(),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialise response");
                ApiError::internal("Cannot serialise response").into_response()
            }
        }
    }
}

/// Handler result type for ruma endpoints.
pub type RumaResult<R> = Result<RumaResponse<R>, ApiError>;
