//! `mixgate admin --url URL --token-file FILE …`: the operator tasks of `mixgate admin`
//! against a *running* gateway, through its Synapse-style admin API with an admin's token
//! (the offline form opens the data folder, which a running gateway holds locked).

use serde_json::{json, Value};

/// A failed admin call.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    /// The gateway could not be reached.
    #[error("cannot reach {url}: {source}")]
    Http {
        /// The URL called.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The gateway answered with a Matrix error.
    #[error("{url}: {status} {errcode}: {error}")]
    Matrix {
        /// The URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// Matrix error code.
        errcode: String,
        /// Message.
        error: String,
    },
}

/// A client of one gateway's admin API.
pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for the gateway at `base` (e.g. `http://127.0.0.1:8008`) with an admin's
    /// access token.
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AdminClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let http = |source| AdminClientError::Http {
            url: url.clone(),
            source,
        };
        let res = req.send().await.map_err(http)?;
        let status = res.status();
        let value: Value = res.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(AdminClientError::Matrix {
                url,
                status: status.as_u16(),
                errcode: value["errcode"].as_str().unwrap_or("?").to_owned(),
                error: value["error"].as_str().unwrap_or("").to_owned(),
            });
        }
        Ok(value)
    }

    /// The server name, from the admin's own user id (`/account/whoami`).
    async fn server_name(&self) -> Result<String, AdminClientError> {
        let me = self
            .call(
                reqwest::Method::GET,
                "/_matrix/client/v3/account/whoami",
                None,
            )
            .await?;
        Ok(me["user_id"]
            .as_str()
            .and_then(|u| u.split_once(':'))
            .map(|(_, s)| s.to_owned())
            .unwrap_or_default())
    }

    /// A full user id for `name` (a localpart or a full id).
    async fn user_id(&self, name: &str) -> Result<String, AdminClientError> {
        if name.starts_with('@') {
            return Ok(name.to_owned());
        }
        Ok(format!("@{name}:{}", self.server_name().await?))
    }

    /// Creates an account (fails with `M_USER_IN_USE` if it exists); returns its id.
    pub async fn create_user(
        &self,
        name: &str,
        password: &str,
        admin: bool,
    ) -> Result<String, AdminClientError> {
        let user = self.user_id(name).await?;
        let path = format!("/_synapse/admin/v2/users/{}", encode(&user));
        let exists = self.call(reqwest::Method::GET, &path, None).await;
        if exists.is_ok() {
            return Err(AdminClientError::Matrix {
                url: format!("{}{path}", self.base),
                status: 400,
                errcode: "M_USER_IN_USE".into(),
                error: format!("{user} already exists"),
            });
        }
        self.call(
            reqwest::Method::PUT,
            &path,
            Some(json!({ "password": password, "admin": admin })),
        )
        .await?;
        Ok(user)
    }

    /// Sets a new password (and signs the user's devices out, as Synapse does).
    pub async fn reset_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<String, AdminClientError> {
        let user = self.user_id(name).await?;
        self.call(
            reqwest::Method::POST,
            &format!("/_synapse/admin/v1/reset_password/{}", encode(&user)),
            Some(json!({ "new_password": password })),
        )
        .await?;
        Ok(user)
    }

    /// Creates a registration token allowing `uses` registrations; returns it.
    pub async fn create_registration_token(&self, uses: u32) -> Result<String, AdminClientError> {
        let made = self
            .call(
                reqwest::Method::POST,
                "/_synapse/admin/v1/registration_tokens/new",
                Some(json!({ "uses_allowed": uses })),
            )
            .await?;
        Ok(made["token"].as_str().unwrap_or_default().to_owned())
    }
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
