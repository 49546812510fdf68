//! Errors raised while building or processing packets.

use thiserror::Error;

/// Why a packet, reply block or routing command was refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketError {
    /// The input is not exactly [`super::PACKET_SIZE`] bytes (truncated or oversized).
    #[error("packet has wrong length {0}")]
    WrongLength(usize),
    /// The version byte is not one this implementation speaks.
    #[error("unsupported packet version {0}")]
    WrongVersion(u8),
    /// The header MAC did not verify (corrupted, forged or tagged header, or wrong key).
    #[error("header MAC mismatch")]
    BadMac,
    /// The replay tag was seen before in this key epoch.
    #[error("replayed packet")]
    Replay,
    /// The Diffie-Hellman output was degenerate (a low-order point was supplied).
    #[error("invalid ephemeral key")]
    BadKey,
    /// The routing command inside the header could not be decoded.
    #[error("malformed routing command")]
    BadRouting,
    /// The payload integrity tag did not verify after the last layer (tagging, wrong key).
    #[error("payload integrity check failed")]
    BadPayload,
    /// A route was empty or longer than [`super::MAX_HOPS`].
    #[error("route length {0} out of range")]
    BadRoute(usize),
    /// A message body was longer than [`super::BODY_SIZE`].
    #[error("body too long: {0} bytes")]
    BodyTooLong(usize),
}
