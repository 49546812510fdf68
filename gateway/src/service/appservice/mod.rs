//! Application services (bridges, bot frameworks): registrations, `as_token` callers with
//! `?user_id=` masquerading, exclusive namespaces, and transactions pushed to the service.
//!
//! Registrations come from `mixgate gateway --appservice FILE` (repeatable) and
//! `appservices = [...]` in `gateway.toml` ([`registration`]). Each service's own user
//! (`sender_localpart`) is created when the gateway opens. A request with a service's
//! `as_token` acts as that user, or as `?user_id=` when that user is in the service's user
//! namespace and registered (403 `M_FORBIDDEN` otherwise). Transactions: see [`txn`].

#[cfg(test)]
mod device_tests;
pub mod ephemeral;
#[cfg(test)]
mod ephemeral_tests;
pub mod query;
#[cfg(test)]
mod query_tests;
pub mod registration;
#[cfg(test)]
mod tests;
pub mod txn;

use std::{path::PathBuf, sync::Arc};

use ruma::{OwnedUserId, RoomAliasId, ServerName, UserId};

pub use registration::{Namespace, Registration};

use crate::{
    config::ConfigError,
    error::{ApiError, ApiResult},
    service::{caller::Caller, rooms::Pdu, Gateway},
};

/// One registered application service.
#[derive(Debug)]
pub struct AppService {
    /// Its registration.
    pub reg: Registration,
    /// Its own user (`@sender_localpart:server`).
    pub sender: OwnedUserId,
}

impl AppService {
    /// The service id.
    pub fn id(&self) -> &str {
        &self.reg.raw.id
    }

    /// Whether `user` is the service's own user or in its user namespace.
    pub fn owns_user(&self, user: &UserId) -> bool {
        *user == *self.sender || self.reg.users.iter().any(|n| n.matches(user.as_str()))
    }

    /// Whether `alias` is in the service's alias namespace.
    pub fn owns_alias(&self, alias: &RoomAliasId) -> bool {
        self.reg.aliases.iter().any(|n| n.matches(alias.as_str()))
    }

    /// Whether the service wants `pdu`: its room is in the room namespace, its sender or
    /// (membership) state key is one of the service's users, a member of its room is, or an
    /// alias of its room is in the alias namespace.
    pub fn interested(&self, gw: &Gateway, pdu: &Pdu) -> ApiResult<bool> {
        if self
            .reg
            .rooms
            .iter()
            .any(|n| n.matches(pdu.room_id.as_str()))
        {
            return Ok(true);
        }
        if self.owns_user(&pdu.sender) {
            return Ok(true);
        }
        if let Some(sk) = &pdu.state_key {
            if UserId::parse(sk.as_str()).is_ok_and(|u| self.owns_user(&u)) {
                return Ok(true);
            }
        }
        if gw
            .rooms
            .members(&pdu.room_id)?
            .iter()
            .any(|(u, m)| m.membership == "join" && self.owns_user(u))
        {
            return Ok(true);
        }
        if !self.reg.aliases.is_empty()
            && gw
                .rooms
                .aliases_of(&pdu.room_id)?
                .iter()
                .any(|a| self.owns_alias(a))
        {
            return Ok(true);
        }
        Ok(false)
    }
}

/// Every registered application service.
#[derive(Debug, Default)]
pub struct AppServices {
    list: Vec<Arc<AppService>>,
}

/// The placeholder device of requests made with an `as_token` without `device_id`.
pub const APPSERVICE_DEVICE: &str = "APPSERVICE";

/// What an `as_token` request asks to act as (from its query string).
#[derive(Debug, Clone, Default)]
pub struct Masquerade {
    /// `user_id`: the user of the service's namespace to act as.
    pub user_id: Option<String>,
    /// `device_id` (or MSC3202's `org.matrix.msc3202.device_id`): one of that user's devices.
    pub device_id: Option<String>,
    /// Whether the request is `/register` (the user may not exist yet).
    pub registering: bool,
}

impl Masquerade {
    /// Reads `user_id` and `device_id` from a query string.
    pub fn from_query(query: Option<&str>, registering: bool) -> Self {
        let mut m = Self {
            registering,
            ..Self::default()
        };
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*k {
                "user_id" => m.user_id = Some(v.into_owned()),
                "device_id" | "org.matrix.msc3202.device_id" => m.device_id = Some(v.into_owned()),
                _ => {}
            }
        }
        m
    }
}

impl AppServices {
    /// Loads and checks the registration files.
    pub fn load(files: &[PathBuf], server: &ServerName) -> Result<Self, ConfigError> {
        let regs = files
            .iter()
            .map(|f| Registration::load(f))
            .collect::<Result<Vec<_>, _>>()?;
        registration::check_all(&regs)?;
        let mut list = Vec::new();
        for reg in regs {
            let sender =
                UserId::parse(format!("@{}:{server}", reg.raw.sender_localpart)).map_err(|e| {
                    ConfigError::Invalid {
                        file: reg.file.clone(),
                        key: "sender_localpart",
                        expected: "a valid user localpart",
                        found: format!("{:?}: {e}", reg.raw.sender_localpart),
                    }
                })?;
            list.push(Arc::new(AppService { reg, sender }));
        }
        Ok(Self { list })
    }

    /// Every service.
    pub fn all(&self) -> &[Arc<AppService>] {
        &self.list
    }

    /// The service with this id.
    pub fn by_id(&self, id: &str) -> Option<&Arc<AppService>> {
        self.list.iter().find(|s| s.id() == id)
    }

    /// The service whose `as_token` this is.
    pub fn by_token(&self, token: &str) -> Option<&Arc<AppService>> {
        self.list.iter().find(|s| s.reg.raw.as_token == token)
    }

    /// A service other than `except` that holds `user` in an exclusive namespace.
    pub fn exclusive_owner(&self, user: &UserId, except: Option<&str>) -> Option<&Arc<AppService>> {
        self.list.iter().find(|s| {
            Some(s.id()) != except
                && s.reg
                    .users
                    .iter()
                    .any(|n| n.exclusive && n.matches(user.as_str()))
        })
    }

    /// A service other than `except` that holds `alias` in an exclusive namespace.
    pub fn exclusive_alias_owner(
        &self,
        alias: &RoomAliasId,
        except: Option<&str>,
    ) -> Option<&Arc<AppService>> {
        self.list.iter().find(|s| {
            Some(s.id()) != except
                && s.reg
                    .aliases
                    .iter()
                    .any(|n| n.exclusive && n.matches(alias.as_str()))
        })
    }

    /// 400 `M_EXCLUSIVE` when a service other than `caller_service` (the caller's own, if it
    /// is one) holds `alias` in an exclusive namespace: nobody else may create it.
    pub fn check_alias(&self, alias: &RoomAliasId, caller_service: Option<&str>) -> ApiResult<()> {
        if let Some(owner) = self.exclusive_alias_owner(alias, caller_service) {
            return Err(ApiError::exclusive(format!(
                "This room alias is reserved by the application service {}",
                owner.id()
            )));
        }
        Ok(())
    }

    /// The caller of a request carrying `token`, if it is a service's `as_token`: the service's
    /// user, or `query.user_id` (`?user_id=`) when the service may act as that user, on the
    /// device `query.device_id` when given (it must be one of that user's devices), otherwise
    /// on the placeholder device [`APPSERVICE_DEVICE`].
    pub fn caller(
        &self,
        gw: &Gateway,
        token: &str,
        query: &Masquerade,
    ) -> ApiResult<Option<Caller>> {
        let Some(service) = self.by_token(token) else {
            return Ok(None);
        };
        let appservice = Some(service.id().to_owned());
        if query.registering {
            // `/register` names the new user in its body; clients such as mautrix also put
            // it in `?user_id=` before it exists. The service acts as itself.
            return Ok(Some(Caller {
                user_id: service.sender.clone(),
                device_id: APPSERVICE_DEVICE.into(),
                appservice,
            }));
        }
        let user = match &query.user_id {
            None => service.sender.clone(),
            Some(u) => UserId::parse(u.as_str())
                .map_err(|e| ApiError::invalid_param(format!("Invalid user_id: {e}")))?,
        };
        if !service.owns_user(&user) || user.server_name() != gw.server_name() {
            return Err(ApiError::forbidden(
                "Application service cannot masquerade as this user",
            ));
        }
        if user != service.sender && !gw.users.exists(&user)? {
            return Err(ApiError::forbidden(
                "Application service has not registered this user",
            ));
        }
        let device_id = match &query.device_id {
            None => APPSERVICE_DEVICE.into(),
            Some(d) => {
                if gw.users.device(&user, d)?.is_none() {
                    return Err(ApiError::new(
                        http::StatusCode::BAD_REQUEST,
                        "M_UNKNOWN_DEVICE",
                        format!("{user} has no device {d:?}"),
                    ));
                }
                d.as_str().into()
            }
        };
        Ok(Some(Caller {
            user_id: user,
            device_id,
            appservice,
        }))
    }

    /// Creates each service's own user if it does not exist yet.
    pub async fn ensure_senders(&self, gw: &Gateway) -> ApiResult<()> {
        for s in &self.list {
            if !gw.users.exists(&s.sender)? {
                gw.users.create(&s.sender, None).await?;
                tracing::info!(appservice = s.id(), user = %s.sender, "application service user created");
            }
        }
        Ok(())
    }
}
