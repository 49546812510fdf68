//! Who is acting: the authenticated user and device behind a request.

use ruma::{OwnedDeviceId, OwnedUserId};

/// The authenticated caller (resolved from an access token by the API layer).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user.
    pub user_id: OwnedUserId,
    /// The device the token belongs to (a placeholder for an application service).
    pub device_id: OwnedDeviceId,
    /// The application service whose `as_token` made the request, if one did.
    pub appservice: Option<String>,
}

impl Caller {
    /// Whether the request acts on a real device: always for access tokens; for an
    /// application service only when it named one (`device_id` masquerading).
    pub fn has_device(&self) -> bool {
        self.appservice.is_none() || self.device_id != crate::service::appservice::APPSERVICE_DEVICE
    }
}
