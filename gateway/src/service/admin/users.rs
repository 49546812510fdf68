//! Accounts as Synapse's admin API shows them (`/_synapse/admin/v2/users…`).

use ruma::{OwnedRoomId, UserId};
use serde::Serialize;

use crate::{
    error::{ApiError, ApiResult},
    service::{users::UserRecord, Gateway},
};

/// One account in Synapse's shape (the v2 list and details entries).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AdminUser {
    /// Full user id.
    pub name: String,
    /// Display name.
    pub displayname: Option<String>,
    /// Avatar `mxc://` URI.
    pub avatar_url: Option<String>,
    /// Server admin.
    pub admin: bool,
    /// Deactivated.
    pub deactivated: bool,
    /// Always false: mixgate has no guest accounts.
    pub is_guest: bool,
    /// Always false here.
    pub shadow_banned: bool,
    /// Always false here.
    pub locked: bool,
    /// Always false here.
    pub erased: bool,
    /// Account type (always none).
    pub user_type: Option<String>,
    /// Creation time, milliseconds since the epoch.
    pub creation_ts: u64,
    /// Third-party ids (none: mixgate has no 3PIDs).
    pub threepids: Vec<serde_json::Value>,
    /// External ids (none).
    pub external_ids: Vec<serde_json::Value>,
    /// The application service that registered it (none).
    pub appservice_id: Option<String>,
}

impl AdminUser {
    fn of(user: &UserId, r: &UserRecord) -> Self {
        Self {
            name: user.to_string(),
            displayname: r.displayname.clone(),
            avatar_url: r.avatar_url.clone(),
            admin: r.admin,
            deactivated: r.deactivated,
            is_guest: false,
            shadow_banned: false,
            locked: false,
            erased: false,
            user_type: None,
            creation_ts: r.created_ts,
            threepids: vec![],
            external_ids: vec![],
            appservice_id: None,
        }
    }
}

/// Filters and paging of the user list (Synapse's query parameters).
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Substring of the full user id.
    pub user_id: Option<String>,
    /// Substring of the user id or the display name.
    pub name: Option<String>,
    /// Include deactivated accounts.
    pub deactivated: bool,
    /// Only admins (`Some(true)`) or only non-admins.
    pub admins: Option<bool>,
    /// Offset.
    pub from: usize,
    /// Page size.
    pub limit: usize,
}

/// A page of accounts.
#[derive(Debug, Clone, Serialize)]
pub struct UserPage {
    /// The accounts, by user id.
    pub users: Vec<AdminUser>,
    /// Matching accounts in all pages.
    pub total: usize,
    /// Offset of the next page, if there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Lists accounts (sorted by user id).
pub fn list(gw: &Gateway, q: &UserQuery) -> ApiResult<UserPage> {
    let mut all: Vec<AdminUser> = gw
        .users
        .all()?
        .iter()
        .map(|(id, r)| AdminUser::of(id, r))
        .filter(|u| q.deactivated || !u.deactivated)
        .filter(|u| q.admins.is_none_or(|a| u.admin == a))
        .filter(|u| {
            q.user_id
                .as_ref()
                .is_none_or(|s| u.name.contains(s.as_str()))
        })
        .filter(|u| {
            q.name.as_ref().is_none_or(|s| {
                u.name.contains(s.as_str())
                    || u.displayname
                        .as_ref()
                        .is_some_and(|d| d.contains(s.as_str()))
            })
        })
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let total = all.len();
    let users: Vec<AdminUser> = all.into_iter().skip(q.from).take(q.limit).collect();
    let end = q.from + users.len();
    Ok(UserPage {
        users,
        total,
        next_token: (end < total).then(|| end.to_string()),
    })
}

/// One account; 404 `M_NOT_FOUND` if there is none.
pub fn details(gw: &Gateway, user: &UserId) -> ApiResult<AdminUser> {
    let r = gw
        .users
        .get(user)?
        .ok_or_else(|| ApiError::not_found("User not found"))?;
    Ok(AdminUser::of(user, &r))
}

/// What `PUT /_synapse/admin/v2/users/{userId}` may change (absent: unchanged).
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    /// New password.
    pub password: Option<String>,
    /// Sign out every device when the password changes (Synapse's default: true).
    pub logout_devices: bool,
    /// New display name.
    pub displayname: Option<String>,
    /// New avatar.
    pub avatar_url: Option<String>,
    /// Server-admin flag.
    pub admin: Option<bool>,
    /// Deactivate (true) or reactivate (false).
    pub deactivated: Option<bool>,
}

/// Creates the account if it does not exist, then applies `change`; returns the account and
/// whether it was created.
pub async fn upsert(
    gw: &Gateway,
    user: &UserId,
    change: UserChange,
) -> ApiResult<(AdminUser, bool)> {
    let created = !gw.users.exists(user)?;
    if created {
        if let Some(p) = &change.password {
            check_password(gw, p)?;
        }
        gw.users.create(user, change.password.as_deref()).await?;
    } else if let Some(p) = &change.password {
        reset_password(gw, user, p, change.logout_devices).await?;
    }
    if change.deactivated == Some(true) {
        super::deactivate::deactivate(gw, user).await?;
    }
    let mut r = gw
        .users
        .get(user)?
        .ok_or_else(|| ApiError::not_found("User not found"))?;
    if let Some(d) = change.displayname {
        r.displayname = Some(d);
    }
    if let Some(a) = change.avatar_url {
        r.avatar_url = Some(a);
    }
    if let Some(a) = change.admin {
        r.admin = a;
    }
    if change.deactivated == Some(false) {
        r.deactivated = false;
    }
    gw.users.save(user, &r).await?;
    Ok((AdminUser::of(user, &r), created))
}

fn check_password(gw: &Gateway, password: &str) -> ApiResult<()> {
    if password.chars().count() < gw.config.min_password_length {
        return Err(ApiError::weak_password(format!(
            "Password must be at least {} characters",
            gw.config.min_password_length
        )));
    }
    Ok(())
}

/// Sets a new password; with `logout_devices`, signs out every device of the user.
pub async fn reset_password(
    gw: &Gateway,
    user: &UserId,
    password: &str,
    logout_devices: bool,
) -> ApiResult<()> {
    if !gw.users.exists(user)? {
        return Err(ApiError::not_found("User not found"));
    }
    check_password(gw, password)?;
    gw.users.set_password(user, password).await?;
    if logout_devices {
        for (device_id, _) in gw.users.devices(user)? {
            crate::service::keys::remove_device(gw, user, device_id.as_str()).await?;
        }
    }
    Ok(())
}

/// Rooms the user is joined to; 404 for an unknown user.
pub fn joined_rooms(gw: &Gateway, user: &UserId) -> ApiResult<Vec<OwnedRoomId>> {
    if !gw.users.exists(user)? {
        return Err(ApiError::not_found("User not found"));
    }
    gw.rooms.joined_rooms(user)
}

/// One device session as `whois` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    /// Last address seen.
    pub ip: Option<String>,
    /// Last seen, ms since the epoch.
    pub last_seen: u64,
    /// Not recorded by mixgate.
    pub user_agent: Option<String>,
}

/// The devices of a user with their last connection; 404 for an unknown user.
pub fn whois(gw: &Gateway, user: &UserId) -> ApiResult<Vec<(String, Connection)>> {
    if !gw.users.exists(user)? {
        return Err(ApiError::not_found("User not found"));
    }
    Ok(gw
        .users
        .devices(user)?
        .into_iter()
        .map(|(id, d)| {
            (
                id.to_string(),
                Connection {
                    ip: d.last_seen_ip,
                    last_seen: d.last_seen_ts,
                    user_agent: None,
                },
            )
        })
        .collect())
}
