//! Media endpoints: upload, authenticated download and thumbnail, config, and the legacy
//! `/_matrix/media/v3/*` paths.
//!
//! Uploads are raw bodies, not JSON, so these handlers read the body themselves (limited to
//! `max_upload_bytes`, answering 413 `M_TOO_LARGE` beyond it) and authenticate with
//! [`authenticate`].
//!
//! Choices (see `gateway/README.md`):
//! - Legacy `/_matrix/media/{v3,r0}/download|thumbnail` serve media only to requests that carry
//!   a valid access token; without one they answer 404 `M_NOT_FOUND`, as the spec (v1.11)
//!   allows for media uploaded after the authenticated-media freeze. No mixgate media is ever
//!   readable without an account on the gateway.
//! - Thumbnails come in the spec's standard sizes (see [`crate::service::thumbnail`]); when
//!   none applies the original image is served. Media that is not an image has no thumbnail
//!   (404 `M_NOT_FOUND`).
//! - Media of other servers is not fetched (404 `M_NOT_FOUND`).
//! - Content types outside the spec's list of safe inline types are served as
//!   `attachment`, with a sandboxing `Content-Security-Policy`.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Path, Request, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Json, Router,
};
use http::request::Parts;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use ruma::{api::client::media::create_mxc_uri::v1 as create_mxc, OwnedMxcUri, UInt};
use serde_json::json;

use super::{add, authenticate, Caller, Ruma, RumaResponse, RumaResult};
use crate::{
    error::{ApiError, ApiResult},
    service::{
        media::{MediaMeta, MediaState, Upload},
        remote_media,
        thumbnail::{self, Method},
        Gateway,
    },
};

/// Content types a browser may render inline (Matrix spec v1.12, "Serving inline content").
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// Sandboxes anything a browser opens directly from the media repository.
const MEDIA_CSP: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

const OCTET_STREAM: &str = "application/octet-stream";

/// The MIME type without parameters, lowercased.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// RFC 5987 `attr-char`s are kept, everything else is percent-encoded.
fn rfc5987(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `Content-Disposition` for a file of `content_type` named `filename`.
pub fn content_disposition(content_type: &str, filename: Option<&str>) -> String {
    let kind = if INLINE_TYPES.contains(&essence(content_type).as_str()) {
        "inline"
    } else {
        "attachment"
    };
    match filename.filter(|f| !f.is_empty()) {
        None => kind.to_owned(),
        Some(name)
            if name
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ') =>
        {
            format!("{kind}; filename=\"{name}\"")
        }
        Some(name) => format!("{kind}; filename*=utf-8''{}", rfc5987(name)),
    }
}

/// The `?filename=` of an upload (read leniently: a malformed query is no filename).
fn filename_param(parts: &Parts) -> Option<String> {
    let query = parts.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "filename")
        .map(|(_, v)| v.into_owned())
}

/// Reads an upload body: the caller, its content type and bytes, 413 beyond the limit.
async fn read_upload(gw: &Gateway, req: Request) -> ApiResult<(Caller, Upload)> {
    let (parts, body) = req.into_parts();
    let filename = filename_param(&parts);
    let caller = authenticate(gw, &parts, true)?
        .ok_or_else(|| ApiError::missing_token("Missing access token"))?;
    let limit = gw.config.max_upload_bytes;
    let too_large = || ApiError::too_large(format!("Uploads are limited to {limit} bytes"));
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let data = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                too_large()
            } else {
                ApiError::bad_request(format!("Cannot read upload: {e}"))
            }
        })?
        .to_bytes();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(ToOwned::to_owned);
    Ok((
        caller,
        Upload {
            content_type,
            filename: filename.filter(|f| !f.is_empty()),
            data,
        },
    ))
}

/// `POST /_matrix/media/v3/upload`.
async fn upload(
    State(gw): State<Arc<Gateway>>,
    req: Request,
) -> ApiResult<Json<serde_json::Value>> {
    let (caller, upload) = read_upload(&gw, req).await?;
    let id = gw.media.create(&caller.user_id, upload).await?;
    Ok(Json(
        json!({ "content_uri": format!("mxc://{}/{id}", gw.server_name()) }),
    ))
}

/// `POST /_matrix/media/v1/create`: reserves an mxc URI for a later upload.
async fn create_mxc_uri(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<create_mxc::Request>,
) -> RumaResult<create_mxc::Response> {
    let caller = req.caller()?;
    let (id, expires) = gw.media.reserve(&caller.user_id).await?;
    let uri = OwnedMxcUri::from(format!("mxc://{}/{id}", gw.server_name()));
    let mut res = create_mxc::Response::new(uri);
    res.unused_expires_at = UInt::new(expires).map(ruma::MilliSecondsSinceUnixEpoch);
    Ok(RumaResponse(res))
}

/// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`.
async fn upload_reserved(
    State(gw): State<Arc<Gateway>>,
    Path((server, media_id)): Path<(String, String)>,
    req: Request,
) -> ApiResult<Json<serde_json::Value>> {
    let (caller, upload) = read_upload(&gw, req).await?;
    if server != gw.server_name().as_str() {
        return Err(ApiError::not_found("Unknown media id"));
    }
    gw.media
        .upload_reserved(&caller.user_id, &media_id, upload)
        .await?;
    Ok(Json(json!({})))
}

/// Whether the request must carry a token (authenticated endpoints) or merely may (legacy).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Authenticated,
    Legacy,
}

/// Loads a file: this gateway's from its store (504 `M_NOT_YET_UPLOADED` for reserved ids
/// without content), another gateway's from the cache or over the mixnet
/// ([`crate::service::remote_media`]); 404 for unknown ids. Also returns the key its
/// thumbnails are cached under.
async fn load(
    gw: &Gateway,
    server: &str,
    media_id: &str,
) -> ApiResult<(MediaMeta, Vec<u8>, String)> {
    if server != gw.server_name().as_str() {
        let server =
            ruma::ServerName::parse(server).map_err(|_| ApiError::not_found("Unknown media"))?;
        if !crate::service::media::id_is_valid(media_id) {
            return Err(ApiError::not_found("Unknown media"));
        }
        let (meta, data) = remote_media::load(gw, &server, media_id).await?;
        return Ok((meta, data, remote_media::thumbnail_key(&server, media_id)));
    }
    if gw.media.state(media_id)? == MediaState::Pending {
        return Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "M_NOT_YET_UPLOADED",
            "The media has not been uploaded yet",
        ));
    }
    let (meta, data) = gw
        .media
        .get(media_id)?
        .ok_or_else(|| ApiError::not_found("Unknown media"))?;
    Ok((meta, data, media_id.to_owned()))
}

/// The stored content type, or `application/octet-stream` if none (or unusable).
fn content_type_of(meta: &MediaMeta) -> String {
    meta.content_type
        .clone()
        .filter(|ct| HeaderValue::from_str(ct).is_ok())
        .unwrap_or_else(|| OCTET_STREAM.to_owned())
}

/// A media response with the safety headers.
fn respond(content_type: &str, filename: Option<&str>, data: Vec<u8>) -> Response {
    let disposition = content_disposition(content_type, filename);
    let mut res = Response::new(Body::from(data));
    let headers = res.headers_mut();
    let value = |s: &str| {
        HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
    };
    headers.insert(header::CONTENT_TYPE, value(content_type));
    headers.insert(header::CONTENT_DISPOSITION, value(&disposition));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(MEDIA_CSP),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400"),
    );
    res
}

/// Serves a stored file, named `filename` if given (else its upload name).
async fn serve(
    gw: &Gateway,
    server: &str,
    media_id: &str,
    filename: Option<&str>,
) -> ApiResult<Response> {
    let (meta, data, _) = load(gw, server, media_id).await?;
    let content_type = content_type_of(&meta);
    Ok(respond(
        &content_type,
        filename.or(meta.filename.as_deref()),
        data,
    ))
}

/// `width`, `height` and `method` of a thumbnail request.
fn thumbnail_params(parts: &Parts) -> ApiResult<(u32, u32, Method)> {
    let query = parts.uri.query().unwrap_or("");
    let mut width = None;
    let mut height = None;
    let mut method = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "width" => width = Some(v.into_owned()),
            "height" => height = Some(v.into_owned()),
            "method" => method = Some(v.into_owned()),
            _ => {}
        }
    }
    let dim = |v: Option<String>, name: &str| -> ApiResult<u32> {
        let v = v.ok_or_else(|| ApiError::missing_param(format!("Missing `{name}`")))?;
        v.parse::<u32>()
            .map_err(|_| ApiError::invalid_param(format!("`{name}` must be a whole number")))
    };
    Ok((
        dim(width, "width")?,
        dim(height, "height")?,
        Method::parse(method.as_deref()),
    ))
}

/// Serves a thumbnail: a cached or new standard-size one, or the original image when no
/// thumbnail applies (see [`crate::service::thumbnail`]). Non-images have none (404).
async fn serve_thumbnail(
    gw: &Gateway,
    server: &str,
    media_id: &str,
    parts: &Parts,
) -> ApiResult<Response> {
    let (width, height, method) = thumbnail_params(parts)?;
    let (meta, data, thumb_key) = load(gw, server, media_id).await?;
    let media_id = thumb_key.as_str();
    let content_type = content_type_of(&meta);
    if !essence(&content_type).starts_with("image/") {
        return Err(ApiError::not_found("No thumbnail for this media"));
    }
    let Some(size) = thumbnail::choose(width, height, method) else {
        return Ok(respond(&content_type, meta.filename.as_deref(), data));
    };
    if let Some(t) = gw.media.cached_thumbnail(media_id, &size)? {
        return Ok(respond(&t.content_type, None, t.data));
    }
    let _permit = gw.media.thumbnail_permit().await?;
    // Another request may have made it while this one waited.
    if let Some(t) = gw.media.cached_thumbnail(media_id, &size)? {
        return Ok(respond(&t.content_type, None, t.data));
    }
    let made = tokio::task::spawn_blocking(move || (thumbnail::make(&data, size), data))
        .await
        .map_err(|e| ApiError::internal(format!("thumbnail task failed: {e}")))?;
    match made {
        (Some(t), _) => {
            gw.media.store_thumbnail(media_id, &size, &t)?;
            Ok(respond(&t.content_type, None, t.data))
        }
        (None, data) => Ok(respond(&content_type, meta.filename.as_deref(), data)),
    }
}

/// Authentication of a media read; legacy requests without a token see nothing.
fn check_access(gw: &Gateway, parts: &Parts, access: Access) -> ApiResult<()> {
    match access {
        Access::Authenticated => {
            authenticate(gw, parts, true)?;
        }
        Access::Legacy => {
            if authenticate(gw, parts, false)?.is_none() {
                return Err(ApiError::not_found(
                    "Unauthenticated media access is disabled; use /_matrix/client/v1/media",
                ));
            }
        }
    }
    Ok(())
}

macro_rules! download_handlers {
    ($access:expr, $plain:ident, $named:ident, $thumb:ident) => {
        async fn $plain(
            State(gw): State<Arc<Gateway>>,
            Path((server, media_id)): Path<(String, String)>,
            parts: Parts,
        ) -> ApiResult<Response> {
            check_access(&gw, &parts, $access)?;
            serve(&gw, &server, &media_id, None).await
        }

        async fn $named(
            State(gw): State<Arc<Gateway>>,
            Path((server, media_id, filename)): Path<(String, String, String)>,
            parts: Parts,
        ) -> ApiResult<Response> {
            check_access(&gw, &parts, $access)?;
            serve(&gw, &server, &media_id, Some(&filename)).await
        }

        async fn $thumb(
            State(gw): State<Arc<Gateway>>,
            Path((server, media_id)): Path<(String, String)>,
            parts: Parts,
        ) -> ApiResult<Response> {
            check_access(&gw, &parts, $access)?;
            serve_thumbnail(&gw, &server, &media_id, &parts).await
        }
    };
}

download_handlers!(Access::Authenticated, download, download_named, thumbnail);
download_handlers!(
    Access::Legacy,
    legacy_download,
    legacy_download_named,
    legacy_thumbnail
);

/// `GET /_matrix/client/v1/media/config` (and the legacy path): authenticated.
async fn config(State(gw): State<Arc<Gateway>>, parts: Parts) -> ApiResult<impl IntoResponse> {
    authenticate(&gw, &parts, true)?;
    Ok(Json(config_body(&gw)))
}

/// The body of the media config endpoints.
pub fn config_body(gw: &Gateway) -> serde_json::Value {
    json!({ "m.upload.size": gw.config.max_upload_bytes })
}

pub(super) fn routes(r: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    let mut r = add::<create_mxc::Request, _, _>(r, create_mxc_uri)
        .route("/_matrix/client/v1/media/create", post(create_mxc_uri))
        .route("/_matrix/client/v1/media/config", get(config))
        .route(
            "/_matrix/client/v1/media/download/{server}/{media_id}",
            get(download),
        )
        .route(
            "/_matrix/client/v1/media/download/{server}/{media_id}/{filename}",
            get(download_named),
        )
        .route(
            "/_matrix/client/v1/media/thumbnail/{server}/{media_id}",
            get(thumbnail),
        );
    for v in ["v3", "r0"] {
        r = r
            .route(&format!("/_matrix/media/{v}/upload"), post(upload))
            .route(
                &format!("/_matrix/media/{v}/upload/{{server}}/{{media_id}}"),
                put(upload_reserved),
            )
            .route(&format!("/_matrix/media/{v}/config"), get(config))
            .route(
                &format!("/_matrix/media/{v}/download/{{server}}/{{media_id}}"),
                get(legacy_download),
            )
            .route(
                &format!("/_matrix/media/{v}/download/{{server}}/{{media_id}}/{{filename}}"),
                get(legacy_download_named),
            )
            .route(
                &format!("/_matrix/media/{v}/thumbnail/{{server}}/{{media_id}}"),
                get(legacy_thumbnail),
            );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{body_bytes, kit, kit_with};
    use http::Method;

    fn upload_req(token: &str, ct: &str, data: Vec<u8>, filename: &str) -> http::Request<Body> {
        http::Request::builder()
            .method(Method::POST)
            .uri(format!("/_matrix/media/v3/upload?filename={filename}"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", ct)
            .body(Body::from(data))
            .expect("request")
    }

    fn get_req(uri: &str, token: Option<&str>) -> http::Request<Body> {
        let mut b = http::Request::builder().uri(uri);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Body::empty()).expect("request")
    }

    async fn json_of(res: http::Response<Body>) -> serde_json::Value {
        serde_json::from_slice(&body_bytes(res).await).expect("json")
    }

    #[tokio::test]
    async fn upload_then_download_with_headers() {
        let k = kit();
        let (_, token) = k.user("alice").await;
        let res = k
            .send(upload_req(&token, "image/png", vec![1, 2, 3], "cat.png"))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let body = json_of(res).await;
        let uri = body["content_uri"].as_str().expect("uri");
        let path = uri.strip_prefix("mxc://").expect("mxc");
        assert!(path.starts_with("example.org/"));

        let res = k
            .send(get_req(
                &format!("/_matrix/client/v1/media/download/{path}"),
                Some(&token),
            ))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let h = res.headers().clone();
        assert_eq!(h[header::CONTENT_TYPE], "image/png");
        assert_eq!(
            h[header::CONTENT_DISPOSITION],
            "inline; filename=\"cat.png\""
        );
        assert_eq!(h["cross-origin-resource-policy"], "cross-origin");
        assert_eq!(body_bytes(res).await, vec![1, 2, 3]);

        // The file name in the path wins; thumbnails serve the original image.
        let res = k
            .send(get_req(
                &format!("/_matrix/client/v1/media/download/{path}/other.png"),
                Some(&token),
            ))
            .await;
        assert_eq!(
            res.headers()[header::CONTENT_DISPOSITION],
            "inline; filename=\"other.png\""
        );
        let res = k
            .send(get_req(
                &format!("/_matrix/client/v1/media/thumbnail/{path}?width=32&height=32"),
                Some(&token),
            ))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(body_bytes(res).await, vec![1, 2, 3]);

        // Authenticated endpoints need a token; legacy ones hide media without one.
        let res = k
            .send(get_req(
                &format!("/_matrix/client/v1/media/download/{path}"),
                None,
            ))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let res = k
            .send(get_req(&format!("/_matrix/media/v3/download/{path}"), None))
            .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert_eq!(json_of(res).await["errcode"], "M_NOT_FOUND");
        let res = k
            .send(get_req(
                &format!("/_matrix/media/v3/download/{path}?access_token={token}"),
                None,
            ))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn unsafe_types_are_attachments_and_names_are_encoded() {
        let k = kit();
        let (_, token) = k.user("alice").await;
        let res = k
            .send(upload_req(
                &token,
                "text/html",
                b"<script>".to_vec(),
                "x%C3%A9.html",
            ))
            .await;
        let uri = json_of(res).await["content_uri"]
            .as_str()
            .expect("uri")
            .to_owned();
        let path = uri.trim_start_matches("mxc://");
        let res = k
            .send(get_req(
                &format!("/_matrix/client/v1/media/download/{path}"),
                Some(&token),
            ))
            .await;
        let h = res.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/html");
        assert_eq!(
            h[header::CONTENT_DISPOSITION],
            "attachment; filename*=utf-8''x%C3%A9.html"
        );
        assert!(h[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("csp")
            .starts_with("sandbox"));
        // Not an image: no thumbnail.
        let res = k
            .send(get_req(
                &format!("/_matrix/client/v1/media/thumbnail/{path}?width=32&height=32"),
                Some(&token),
            ))
            .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn too_large_and_unknown() {
        let k = kit_with(|c| c.max_upload_bytes = 10);
        let (_, token) = k.user("alice").await;
        let res = k
            .send(upload_req(&token, "application/pdf", vec![0; 11], "a.pdf"))
            .await;
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json_of(res).await["errcode"], "M_TOO_LARGE");
        // Without Content-Length (streamed body), the limit still holds.
        let stream = futures::stream::iter(vec![
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0u8; 6])),
            Ok(bytes::Bytes::from(vec![0u8; 6])),
        ]);
        let req = http::Request::builder()
            .method(Method::POST)
            .uri("/_matrix/media/v3/upload")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from_stream(stream))
            .expect("request");
        let res = k.send(req).await;
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let res = k
            .send(upload_req(&token, "application/pdf", vec![0; 10], "a.pdf"))
            .await;
        assert_eq!(res.status(), StatusCode::OK);

        let res = k
            .send(get_req(
                "/_matrix/client/v1/media/download/example.org/nosuchmedia",
                Some(&token),
            ))
            .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert_eq!(json_of(res).await["errcode"], "M_NOT_FOUND");
        let res = k
            .send(get_req(
                "/_matrix/client/v1/media/download/other.org/abc",
                Some(&token),
            ))
            .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        // Upload without a token.
        let req = http::Request::builder()
            .method(Method::POST)
            .uri("/_matrix/media/v3/upload")
            .body(Body::from(vec![1]))
            .expect("request");
        let res = k.send(req).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(json_of(res).await["errcode"], "M_MISSING_TOKEN");
    }

    #[tokio::test]
    async fn config_body_snapshot() {
        let k = kit_with(|c| c.max_upload_bytes = 1234);
        let (_, token) = k.user("alice").await;
        let (status, body) = k
            .call(
                Method::GET,
                "/_matrix/client/v1/media/config",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        insta::assert_json_snapshot!("media_config", body);
        let (status, legacy) = k
            .call(Method::GET, "/_matrix/media/v3/config", Some(&token), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(legacy, body);
        let (status, _) = k
            .call(Method::GET, "/_matrix/client/v1/media/config", None, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn async_upload_flow() {
        let k = kit();
        let (_, token) = k.user("alice").await;
        let (_, bob_token) = k.user("bob").await;
        let (status, body) = k
            .call(Method::POST, "/_matrix/media/v1/create", Some(&token), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["unused_expires_at"].as_u64().is_some());
        let path = body["content_uri"]
            .as_str()
            .expect("uri")
            .trim_start_matches("mxc://")
            .to_owned();
        let (status, body) = k
            .call(
                Method::GET,
                &format!("/_matrix/client/v1/media/download/{path}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(body["errcode"], "M_NOT_YET_UPLOADED");

        let put = |t: &str| {
            http::Request::builder()
                .method(Method::PUT)
                .uri(format!("/_matrix/media/v3/upload/{path}?filename=n.txt"))
                .header("authorization", format!("Bearer {t}"))
                .header("content-type", "text/plain")
                .body(Body::from("hello"))
                .expect("request")
        };
        assert_eq!(
            k.send(put(&bob_token)).await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(k.send(put(&token)).await.status(), StatusCode::OK);
        assert_eq!(k.send(put(&token)).await.status(), StatusCode::CONFLICT);
        let res = k
            .send(get_req(
                &format!("/_matrix/client/v1/media/download/{path}"),
                Some(&bob_token),
            ))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()[header::CONTENT_DISPOSITION],
            "inline; filename=\"n.txt\""
        );
        assert_eq!(body_bytes(res).await, b"hello".to_vec());
    }

    #[tokio::test]
    async fn real_thumbnails_are_made_cached_and_bounded() {
        let k = kit();
        let (_, token) = k.user("alice").await;
        let img = image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            1000,
            500,
            image::Rgba([10, 20, 30, 255]),
        ));
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encode");
        let res = k
            .send(upload_req(&token, "image/png", png.clone(), "big.png"))
            .await;
        let uri = json_of(res).await["content_uri"]
            .as_str()
            .expect("uri")
            .to_owned();
        let path = uri.trim_start_matches("mxc://");
        let thumb = |q: &str| {
            get_req(
                &format!("/_matrix/client/v1/media/thumbnail/{path}?{q}"),
                Some(&token),
            )
        };

        let res = k.send(thumb("width=90&height=90&method=crop")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "image/png");
        let first = body_bytes(res).await;
        let decoded = image::load_from_memory(&first).expect("png");
        assert_eq!((decoded.width(), decoded.height()), (96, 96));
        // Served from the cache the second time, identical.
        let again = body_bytes(k.send(thumb("width=96&height=96&method=crop")).await).await;
        assert_eq!(again, first);

        let scaled = body_bytes(k.send(thumb("width=320&height=240&method=scale")).await).await;
        let decoded = image::load_from_memory(&scaled).expect("png");
        assert_eq!((decoded.width(), decoded.height()), (320, 160));

        // Bigger than every standard size: the original.
        let res = k.send(thumb("width=2000&height=2000")).await;
        assert_eq!(body_bytes(res).await, png);

        let (status, body) = k
            .call(
                Method::GET,
                &format!("/_matrix/client/v1/media/thumbnail/{path}?height=3"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["errcode"], "M_MISSING_PARAM");
    }

    #[tokio::test]
    async fn query_token_upload_like_nio() {
        let k = kit();
        let (_, token) = k.user("alice").await;
        let req = http::Request::builder()
            .method(Method::POST)
            .uri(format!(
                "/_matrix/media/r0/upload?access_token={token}&filename=notes%20v2.txt"
            ))
            .header("content-type", "text/plain; charset=utf-8")
            .body(Body::from("hi"))
            .expect("request");
        let res = k.send(req).await;
        assert_eq!(res.status(), StatusCode::OK);
        let uri = json_of(res).await["content_uri"]
            .as_str()
            .expect("uri")
            .to_owned();
        let path = uri.trim_start_matches("mxc://");
        let res = k
            .send(get_req(
                &format!("/_matrix/client/v1/media/download/{path}?access_token={token}"),
                None,
            ))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            res.headers()[header::CONTENT_DISPOSITION],
            "inline; filename=\"notes v2.txt\""
        );
    }

    #[test]
    fn dispositions() {
        assert_eq!(content_disposition("image/PNG; x=y", None), "inline");
        assert_eq!(
            content_disposition("image/svg+xml", Some("a b.svg")),
            "attachment; filename=\"a b.svg\""
        );
        assert_eq!(
            content_disposition("text/plain", Some("q\"uote")),
            "inline; filename*=utf-8''q%22uote"
        );
    }
}
