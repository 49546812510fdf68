//! Identifier limits of room events, shared by every path that builds or accepts an event
//! (client sends here, remote PDUs in peering ingest).
//!
//! The spec (Client-Server API, "Size limits" of room events) caps `type` and `state_key` at
//! 255 bytes each; an event type must not be empty; neither may contain a NUL byte, which
//! other servers' storage refuses. Accepting what other servers reject would let room state
//! diverge once events travel between gateways.

use crate::error::{ApiError, ApiResult};

/// Most bytes in an event `type` or `state_key`.
pub const MAX_IDENTIFIER_BYTES: usize = 255;

/// Checks an event's `type` and optional `state_key`: 400 `M_INVALID_PARAM` for an empty type or
/// a NUL byte, 413 `M_TOO_LARGE` for more than [`MAX_IDENTIFIER_BYTES`].
pub fn check_event_identifiers(kind: &str, state_key: Option<&str>) -> ApiResult<()> {
    if kind.is_empty() {
        return Err(ApiError::invalid_param("The event type must not be empty"));
    }
    for (what, value) in [("type", Some(kind)), ("state_key", state_key)] {
        let Some(value) = value else { continue };
        if value.len() > MAX_IDENTIFIER_BYTES {
            return Err(ApiError::too_large(format!(
                "The event {what} is longer than {MAX_IDENTIFIER_BYTES} bytes"
            )));
        }
        if value.contains('\0') {
            return Err(ApiError::invalid_param(format!(
                "The event {what} must not contain NUL"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert!(check_event_identifiers("m.room.message", None).is_ok());
        assert!(check_event_identifiers("m.room.topic", Some("")).is_ok());
        let long = "x".repeat(256);
        assert!(check_event_identifiers(&"x".repeat(255), Some(&"y".repeat(255))).is_ok());
        assert_eq!(
            check_event_identifiers(&long, None).map_err(|e| e.errcode),
            Err("M_TOO_LARGE")
        );
        assert_eq!(
            check_event_identifiers("a", Some(&long)).map_err(|e| e.errcode),
            Err("M_TOO_LARGE")
        );
        assert_eq!(
            check_event_identifiers("", None).map_err(|e| e.errcode),
            Err("M_INVALID_PARAM")
        );
        assert_eq!(
            check_event_identifiers("a\0b", None).map_err(|e| e.errcode),
            Err("M_INVALID_PARAM")
        );
        assert_eq!(
            check_event_identifiers("a", Some("\0")).map_err(|e| e.errcode),
            Err("M_INVALID_PARAM")
        );
    }
}
