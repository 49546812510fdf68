//! The packet format: a versioned, KEM-style Sphinx variant (one X25519 per hop), a LIONESS
//! payload, per-hop replay tags and single-use reply blocks. See `transport/README.md`.

mod builder;
mod crypto;
mod error;
mod kem;
mod lioness;
mod replay;
mod routing;
mod sphinx;
mod surb;

pub use builder::{AckRoute, PacketBuilder};
pub use crypto::{SecretKey, KEY_LEN, MAC_LEN, TAG_LEN};
pub use error::PacketError;
pub use kem::{agree_each, is_valid_public_key, KeyTables, DEFAULT_TABLE_CAPACITY};
pub use replay::ReplayFilter;
pub use routing::{MailboxId, NodeId, RoutingCommand, FLAG_ACK, HOP_LEN, ID_LEN};
pub use sphinx::{
    create_forward, create_forward_with, process, Delivered, ForwardSecrets, Packet, Processed,
    RouteHop, BETA_LEN, BODY_SIZE, DELIVERED_SIZE, HEADER_SIZE, MAX_HOPS, PACKET_SIZE,
    PAYLOAD_SIZE, REPLY_BODY_SIZE, VERSION, ZERO_LEN,
};
pub use surb::{create_surb, create_surb_with, Surb, SurbRandomness, SurbSecret, SURB_SIZE};

/// Low-level primitives exposed for benchmarks and second implementations' cross-checks.
pub mod primitives {
    pub use super::crypto::{header_mac, xor_stream, HopKeys};
    pub use super::lioness::{decrypt as lioness_decrypt, encrypt as lioness_encrypt};
}

#[cfg(test)]
mod tests;
