//! Size limits on everything a user can store on the gateway or make others receive.
//!
//! One place for every cap, each applied by the service that stores the object (so no API
//! path can bypass it). Events are capped by the spec at 65,536 bytes (checked when they are
//! signed) and their identifiers by [`super::rooms::limits`]; the objects below have caps of
//! the same order. Sizes are of the object's compact JSON.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Largest JSON request body of a client-server endpoint (media uploads have their own
/// `max_upload_bytes`). Room-key sharing in a large room sends a few hundred to-device
/// messages in one request, well below this.
pub const MAX_JSON_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Largest content of one to-device message.
pub const MAX_TO_DEVICE_CONTENT_BYTES: usize = 64 * 1024;

/// Most to-device messages waiting for one device; messages beyond it are dropped for that
/// device (as for an unknown device) until it syncs.
pub const MAX_TO_DEVICE_QUEUE: usize = 1000;

/// Most bytes of to-device messages one `/sync` response carries (at least one message); the
/// rest follow in the next responses.
pub const MAX_TO_DEVICE_SYNC_BYTES: usize = 1024 * 1024;

/// Largest key object: device keys, one one-time or fallback key, a cross-signing key, a
/// signature upload for one key.
pub const MAX_KEY_OBJECT_BYTES: usize = 16 * 1024;

/// Most one-time keys stored for one device (clients keep about 50).
pub const MAX_ONE_TIME_KEYS_PER_DEVICE: usize = 1000;

/// Longest device display name, in bytes.
pub const MAX_DEVICE_NAME_BYTES: usize = 256;

/// Largest account-data object (global or per room, tags and push rules included).
pub const MAX_ACCOUNT_DATA_BYTES: usize = 128 * 1024;

/// Largest stored filter.
pub const MAX_FILTER_BYTES: usize = 64 * 1024;

/// Largest pusher (its `data` included).
pub const MAX_PUSHER_BYTES: usize = 16 * 1024;

/// Largest key-backup object: the backup version's `auth_data`, one session's key data.
pub const MAX_BACKUP_OBJECT_BYTES: usize = 64 * 1024;

/// Compact JSON size of `value`.
pub fn json_size(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// 413 `M_TOO_LARGE` if `value` is over `max` bytes; `what` names it in the message.
pub fn check_size(what: &str, value: &Value, max: usize) -> ApiResult<()> {
    if json_size(value) > max {
        return Err(ApiError::too_large(format!(
            "{what} is larger than {max} bytes"
        )));
    }
    Ok(())
}

/// 400 `M_INVALID_PARAM` if a device display name is longer than
/// [`MAX_DEVICE_NAME_BYTES`].
pub fn check_device_name(name: Option<&str>) -> ApiResult<()> {
    if name.is_some_and(|n| n.len() > MAX_DEVICE_NAME_BYTES) {
        return Err(ApiError::invalid_param(format!(
            "Device display names are limited to {MAX_DEVICE_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes() {
        assert!(check_size("x", &json!({"a": "b"}), 9).is_ok());
        assert_eq!(
            check_size("x", &json!({"a": "bc"}), 9).map_err(|e| e.errcode),
            Err("M_TOO_LARGE")
        );
        assert!(check_device_name(Some(&"n".repeat(256))).is_ok());
        assert!(check_device_name(Some(&"n".repeat(257))).is_err());
    }
}
