//! User and room-alias queries to application services.
//!
//! When a client looks up a user of this gateway that does not exist (profile, invite) or
//! resolves an alias of this gateway that points nowhere, and the id is in a service's
//! namespace, the gateway asks that service (`GET {url}/_matrix/app/v1/users/{userId}` or
//! `/rooms/{alias}` with `Authorization: Bearer <hs_token>`). A 200 means the service has
//! now created the user or room, and the caller looks again. Services holding the id in an
//! exclusive namespace are asked first; each query is bounded by [`QUERY_TIMEOUT`], so a
//! service that is down, slow or answers garbage only makes the lookup fail as it would
//! have without it.

use std::time::Duration;

use ruma::{OwnedRoomId, RoomAliasId, UserId};

use super::{AppService, AppServices};
use crate::{error::ApiResult, service::Gateway};

/// Longest wait for one service's answer to a query.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// What is asked about.
#[derive(Debug, Clone, Copy)]
enum Subject<'a> {
    User(&'a UserId),
    Alias(&'a RoomAliasId),
}

impl Subject<'_> {
    fn path(self) -> String {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        match self {
            Self::User(u) => format!("/_matrix/app/v1/users/{}", enc(u.as_str())),
            Self::Alias(a) => format!("/_matrix/app/v1/rooms/{}", enc(a.as_str())),
        }
    }

    fn owned_by(self, service: &AppService) -> Option<bool> {
        let (namespaces, id) = match self {
            Self::User(u) => (&service.reg.users, u.as_str()),
            Self::Alias(a) => (&service.reg.aliases, a.as_str()),
        };
        let hits: Vec<_> = namespaces.iter().filter(|n| n.matches(id)).collect();
        (!hits.is_empty()).then(|| hits.iter().any(|n| n.exclusive))
    }
}

impl AppServices {
    /// Asks the services whose user namespace holds `user` whether it exists; `true` when one
    /// answered 200 (it has created the user: look again).
    pub async fn query_user(&self, user: &UserId) -> bool {
        self.query(Subject::User(user)).await
    }

    /// Asks the services whose alias namespace holds `alias` whether it exists; `true` when
    /// one answered 200 (it has created the room and alias: look again).
    pub async fn query_alias(&self, alias: &RoomAliasId) -> bool {
        self.query(Subject::Alias(alias)).await
    }

    async fn query(&self, subject: Subject<'_>) -> bool {
        let mut asked: Vec<(bool, &AppService)> = self
            .all()
            .iter()
            .filter(|s| s.reg.raw.url.is_some())
            .filter_map(|s| subject.owned_by(s).map(|exclusive| (exclusive, &**s)))
            .collect();
        if asked.is_empty() {
            return false;
        }
        asked.sort_by_key(|(exclusive, _)| !*exclusive);
        let client = match reqwest::Client::builder()
            .timeout(QUERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build an HTTP client for a service query");
                return false;
            }
        };
        for (_, service) in asked {
            let Some(url) = &service.reg.raw.url else {
                continue;
            };
            let target = format!("{}{}", url.trim_end_matches('/'), subject.path());
            match client
                .get(&target)
                .bearer_auth(&service.reg.raw.hs_token)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    tracing::debug!(
                        appservice = service.id(),
                        ?subject,
                        "service query answered"
                    );
                    return true;
                }
                Ok(r) => {
                    tracing::debug!(appservice = service.id(), ?subject, status = %r.status(), "service query refused")
                }
                Err(e) => {
                    tracing::warn!(appservice = service.id(), ?subject, error = %e, "service query failed")
                }
            }
        }
        false
    }
}

/// The room `alias` (of this gateway) points at; when it points nowhere, the services of its
/// namespace are asked first, then the alias is looked up again.
pub async fn resolve_alias(gw: &Gateway, alias: &RoomAliasId) -> ApiResult<Option<OwnedRoomId>> {
    if let Some(room) = gw.rooms.resolve_alias(alias)? {
        return Ok(Some(room));
    }
    if gw.appservices.query_alias(alias).await {
        return gw.rooms.resolve_alias(alias);
    }
    Ok(None)
}

/// Whether `user` (of this gateway) exists; when it does not, the services of its namespace
/// are asked first, then the user is looked up again.
pub async fn user_exists(gw: &Gateway, user: &UserId) -> ApiResult<bool> {
    if gw.users.exists(user)? {
        return Ok(true);
    }
    if gw.appservices.query_user(user).await {
        return gw.users.exists(user);
    }
    Ok(false)
}
