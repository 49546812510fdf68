//! Who is acting: the authenticated user and device behind a request.

use ruma::{OwnedDeviceId, OwnedUserId};

/// The authenticated caller (resolved from an access token by the API layer).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user.
    pub user_id: OwnedUserId,
    /// The device the token belongs to.
    pub device_id: OwnedDeviceId,
}
