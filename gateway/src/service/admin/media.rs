//! Media as Synapse's admin API shows it (`/_synapse/admin/v1/users/{userId}/media`,
//! `DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}`).

use ruma::UserId;
use serde::Serialize;

use crate::{
    error::{ApiError, ApiResult},
    service::Gateway,
};

/// One file in Synapse's shape.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AdminMedia {
    /// Media id.
    pub media_id: String,
    /// MIME type.
    pub media_type: Option<String>,
    /// Size in bytes.
    pub media_length: u64,
    /// File name.
    pub upload_name: Option<String>,
    /// Upload time, ms since the epoch.
    pub created_ts: u64,
    /// Last access (not tracked: the upload time).
    pub last_access_ts: u64,
    /// Never quarantined here.
    pub quarantined_by: Option<String>,
    /// Never protected here.
    pub safe_from_quarantine: bool,
}

/// A page of a user's media.
#[derive(Debug, Clone, Serialize)]
pub struct MediaPage {
    /// The files, newest first.
    pub media: Vec<AdminMedia>,
    /// All files of the user.
    pub total: usize,
    /// Offset of the next page, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<usize>,
}

/// The files `user` uploaded; 404 for an unknown user.
pub fn of_user(gw: &Gateway, user: &UserId, from: usize, limit: usize) -> ApiResult<MediaPage> {
    if !gw.users.exists(user)? {
        return Err(ApiError::not_found("User not found"));
    }
    let all = gw.media.uploaded_by(user)?;
    let total = all.len();
    let media: Vec<AdminMedia> = all
        .into_iter()
        .skip(from)
        .take(limit)
        .map(|(id, m)| AdminMedia {
            media_id: id,
            media_type: m.content_type,
            media_length: m.size,
            upload_name: m.filename,
            created_ts: m.created_ts,
            last_access_ts: m.created_ts,
            quarantined_by: None,
            safe_from_quarantine: false,
        })
        .collect();
    let end = from + media.len();
    Ok(MediaPage {
        media,
        total,
        next_token: (end < total).then_some(end),
    })
}

/// Deletes a file of this gateway; 404 if there is none (or it belongs to another server).
pub async fn delete(gw: &Gateway, server: &str, id: &str) -> ApiResult<()> {
    if server != gw.server_name().as_str() || !gw.media.delete(id).await? {
        return Err(ApiError::not_found("Media not found"));
    }
    Ok(())
}
