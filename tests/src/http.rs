//! A small raw-HTTP Matrix client (reqwest + JSON) for error-case tests and the load tool.
//!
//! It deliberately does not use ruma or matrix-sdk types, so tests see exactly what the gateway
//! sends on the wire.

use std::time::Duration;

use serde_json::{json, Value};

/// A response: status and JSON body (`Value::Null` when the body is empty or not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body parsed as JSON, or `Value::String` with the raw text if it is not JSON.
    pub body: Value,
    /// Response headers (lower-case names).
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// The `errcode` of an error body, or "".
    pub fn errcode(&self) -> &str {
        self.body
            .get("errcode")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// Panics unless the status is 2xx; returns the body.
    pub fn ok(self) -> Value {
        assert!(
            (200..300).contains(&self.status),
            "expected success, got {} {}",
            self.status,
            self.body
        );
        self.body
    }

    /// Panics unless the reply is `status` with `errcode`.
    pub fn expect_error(&self, status: u16, errcode: &str) {
        assert_eq!(
            (self.status, self.errcode()),
            (status, errcode),
            "unexpected reply: {} {}",
            self.status,
            self.body
        );
        assert!(
            self.body
                .get("error")
                .map(Value::is_string)
                .unwrap_or(false),
            "error body without an `error` string: {}",
            self.body
        );
    }
}

/// A transport failure (not an HTTP error status).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(#[from] reqwest::Error);

/// A registered or logged-in account.
#[derive(Debug, Clone)]
pub struct Account {
    /// Full user ID.
    pub user_id: String,
    /// Access token.
    pub access_token: String,
    /// Device ID.
    pub device_id: String,
}

/// A raw HTTP client bound to one gateway and optionally one access token.
#[derive(Clone)]
pub struct Http {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl Http {
    /// A client for the gateway at `base` (e.g. `http://127.0.0.1:8008`).
    pub fn new(base: impl Into<String>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build()
            .expect("reqwest client");
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            client,
            token: None,
        }
    }

    /// The same client, sending `token` as `Authorization: Bearer`.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Self {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// The same client for `account`.
    pub fn as_user(&self, account: &Account) -> Self {
        self.with_token(&account.access_token)
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The underlying reqwest client (for requests the helpers do not cover).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends a request with an optional JSON body; `path` starts with `/`.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, HttpError> {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        Self::read(req.send().await?).await
    }

    /// Sends raw bytes as the body with the given content type.
    pub async fn request_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Reply, HttpError> {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        Self::read(req.send().await?).await
    }

    /// Turns a reqwest response into a [`Reply`].
    pub async fn read(res: reqwest::Response) -> Result<Reply, HttpError> {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Reply {
            status,
            body,
            headers,
        })
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Reply, HttpError> {
        self.request(reqwest::Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Reply, HttpError> {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Result<Reply, HttpError> {
        self.request(reqwest::Method::PUT, path, Some(body)).await
    }

    /// Registers `username` with the UIA dance: a first request without `auth` must answer
    /// 401 with flows and a session; the second completes `m.login.dummy`.
    pub async fn register(&self, username: &str, password: &str) -> Result<Reply, HttpError> {
        let body = json!({ "username": username, "password": password });
        let first = self.post("/_matrix/client/v3/register", &body).await?;
        if first.status != 401 {
            return Ok(first);
        }
        let session = first.body.get("session").cloned().unwrap_or(Value::Null);
        let body = json!({
            "username": username,
            "password": password,
            "auth": { "type": "m.login.dummy", "session": session },
        });
        self.post("/_matrix/client/v3/register", &body).await
    }

    /// Registers `username`, panicking on failure.
    pub async fn register_ok(&self, username: &str, password: &str) -> Account {
        let reply = self.register(username, password).await.expect("transport");
        Self::account(reply.ok())
    }

    /// Logs in with a password.
    pub async fn login(&self, username: &str, password: &str) -> Result<Reply, HttpError> {
        self.post(
            "/_matrix/client/v3/login",
            &json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": username },
                "password": password,
            }),
        )
        .await
    }

    fn account(body: Value) -> Account {
        let s = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("no `{k}` in {body}"))
                .to_owned()
        };
        Account {
            user_id: s("user_id"),
            access_token: s("access_token"),
            device_id: s("device_id"),
        }
    }

    /// Creates a room with `body` as the createRoom request; returns its ID.
    pub async fn create_room(&self, body: &Value) -> Result<String, String> {
        let reply = self
            .post("/_matrix/client/v3/createRoom", body)
            .await
            .map_err(|e| e.to_string())?;
        reply
            .body
            .get("room_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("createRoom: {} {}", reply.status, reply.body))
    }

    /// Joins a room by ID.
    pub async fn join(&self, room_id: &str) -> Result<Reply, HttpError> {
        self.post(
            &format!("/_matrix/client/v3/join/{}", enc(room_id)),
            &json!({}),
        )
        .await
    }

    /// Sends an `m.text` message with transaction ID `txn`.
    pub async fn send_text(
        &self,
        room_id: &str,
        txn: &str,
        text: &str,
    ) -> Result<Reply, HttpError> {
        self.put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
                enc(room_id),
                enc(txn)
            ),
            &json!({ "msgtype": "m.text", "body": text }),
        )
        .await
    }

    /// `GET /sync` with optional `since`, a timeout in ms and an optional inline filter.
    pub async fn sync(
        &self,
        since: Option<&str>,
        timeout_ms: u64,
        filter: Option<&str>,
    ) -> Result<Reply, HttpError> {
        let mut q = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
        if let Some(since) = since {
            q.push_str(&format!("&since={}", enc(since)));
        }
        if let Some(filter) = filter {
            q.push_str(&format!("&filter={}", enc(filter)));
        }
        self.get(&q).await
    }

    /// `GET /rooms/{id}/messages`.
    pub async fn messages(
        &self,
        room_id: &str,
        from: Option<&str>,
        dir: &str,
        limit: u32,
    ) -> Result<Reply, HttpError> {
        let mut q = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir={dir}&limit={limit}",
            enc(room_id)
        );
        if let Some(from) = from {
            q.push_str(&format!("&from={}", enc(from)));
        }
        self.get(&q).await
    }
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    url_encode(s)
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
