//! Server administration (the logic behind Synapse's admin API in `api/admin/`): accounts,
//! rooms (and their deletion) and registration tokens, as a server admin sees them.

pub mod deactivate;
pub mod deletions;
pub mod media;
pub mod rooms;
pub mod shutdown;
pub mod tokens;
pub mod users;

use ruma::{OwnedUserId, UserId};

use super::Gateway;
use crate::error::{ApiError, ApiResult};

/// Whether `user` holds the server-admin flag.
pub fn is_admin(gw: &Gateway, user: &UserId) -> ApiResult<bool> {
    Ok(gw
        .users
        .get(user)?
        .is_some_and(|r| r.admin && !r.deactivated))
}

/// Parses a user id of this gateway: 404 `M_NOT_FOUND` for one that does not parse, 400
/// `M_INVALID_PARAM` for another server's user (only local users can be administered).
pub fn local_user(gw: &Gateway, user_id: &str) -> ApiResult<OwnedUserId> {
    let user = UserId::parse(user_id).map_err(|_| ApiError::not_found("Unknown user"))?;
    if user.server_name() != gw.server_name() {
        return Err(ApiError::invalid_param(
            "Only local users can be administered by this server",
        ));
    }
    Ok(user)
}
