//! The gateway-to-gateway wire format, versions 2 (sent) and 1 (still read).
//!
//! ```text
//! v2        = 0x02 ‖ origin key (32) ‖ signature (64) ‖ zstd(envelope, dictionary v1)
//! signature = Ed25519 by the origin's identity key over "mixgate-peering-v2" ‖ origin key
//!             ‖ compressed envelope
//! v1        = 0x01 ‖ signature (64) ‖ envelope
//! signature = Ed25519 over "mixgate-peering-v1" ‖ envelope
//! envelope  = { "origin", "destination", "ts", "body": { "<kind>": { ... } } } (UTF-8 JSON)
//! ```
//!
//! Version 2 compresses the envelope with zstd and a dictionary trained on peering traffic
//! ([`super::compress`]); it names the origin's key before the compressed bytes, so the
//! signature is checked before anything is decompressed, and the envelope's `origin` must be
//! the server name of that key.
//!
//! The origin's key is its server name (server name = key), so a message is authenticated
//! without a key server; `destination` binds it to one recipient, so a message cannot be
//! replayed to another gateway. PDUs inside are signed on their own (Matrix signatures) and
//! verified again on ingest. Messages carry at most [`crate::peering::net::MAX_MESSAGE`] bytes:
//! the sender splits transactions to fit. Golden vectors: `peering/tests/vectors/`.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, VerifyingKey};
use ruma::{
    signatures::KeyPair, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedServerName, OwnedUserId,
    RoomVersionId, ServerName,
};
use serde::{Deserialize, Serialize};
use serde_json::{value::RawValue, Value};

use crate::identity::{key_for_server_name, Identity};

/// The wire format version this build sends.
pub const VERSION: u8 = 2;

const CONTEXT_V1: &[u8] = b"mixgate-peering-v1";
const CONTEXT_V2: &[u8] = b"mixgate-peering-v2";

/// A decoded, authenticated message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// The sending gateway.
    pub origin: OwnedServerName,
    /// The gateway it is for.
    pub destination: OwnedServerName,
    /// When the origin made it (ms since the epoch).
    pub ts: u64,
    /// What it carries.
    pub body: Body,
}

/// A PDU in federation format (signed JSON).
pub type RawPdu = Box<RawValue>;

/// What a message carries. Durable messages (`Txn`, `Invite`) go with `PeerNet::send`;
/// the others are requests and responses over reply blocks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// PDUs and EDUs for the destination (durable).
    Txn {
        /// Transaction id, unique per origin.
        id: String,
        /// PDUs, each with its `room_id`.
        #[serde(default)]
        pdus: Vec<RawPdu>,
        /// Ephemeral data units.
        #[serde(default)]
        edus: Vec<Edu>,
    },
    /// An invite of one of the destination's users into a room it is not in (durable).
    Invite {
        /// The room's version.
        room_version: RoomVersionId,
        /// The invite PDU.
        event: RawPdu,
        /// Stripped state the invitee's client shows (name, avatar, join rules, ...).
        invite_state: Vec<Value>,
    },
    /// Request: a template for a membership event of `user_id` in `room_id`.
    MakeMembership {
        /// The room.
        room_id: OwnedRoomId,
        /// The user (of the requesting gateway).
        user_id: OwnedUserId,
        /// `join` or `leave`.
        membership: String,
    },
    /// Response to `MakeMembership`.
    MembershipTemplate {
        /// The room's version.
        room_version: RoomVersionId,
        /// The event to sign (no hashes, signatures or id yet).
        event: Value,
    },
    /// Request: a signed membership event to add to the room.
    SendMembership {
        /// The room.
        room_id: OwnedRoomId,
        /// The signed event.
        event: RawPdu,
    },
    /// Response to `SendMembership` for a join: the state before the join and its auth chain.
    JoinedState {
        /// The state events before the join.
        state: Vec<RawPdu>,
        /// The auth chain of the state and of the join.
        auth_chain: Vec<RawPdu>,
        /// The join as the answering gateway co-signed it (a join into a restricted room that
        /// one of its users authorised); absent otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<RawPdu>,
    },
    /// Request: events between what the asker has and what it saw referenced.
    MissingEvents {
        /// The room.
        room_id: OwnedRoomId,
        /// Events the asker already has (the walk stops there).
        earliest: Vec<OwnedEventId>,
        /// Events whose ancestors are wanted.
        latest: Vec<OwnedEventId>,
        /// At most this many events.
        limit: u32,
    },
    /// Response: events, oldest first.
    Events {
        /// The PDUs.
        pdus: Vec<RawPdu>,
    },
    /// Request: the destination's forward extremities of a room (what a gateway that may
    /// have missed messages compares with its own).
    RoomHeads {
        /// The room.
        room_id: OwnedRoomId,
    },
    /// Response to `RoomHeads`: the extremity events themselves.
    Heads {
        /// The PDUs (redacted where the asker may not read them).
        pdus: Vec<RawPdu>,
    },
    /// Request: history of a room older than what the asker holds.
    Backfill {
        /// The room.
        room_id: OwnedRoomId,
        /// Events the asker lacks whose ancestors it lacks too (the walk starts there).
        from: Vec<OwnedEventId>,
        /// At most this many events.
        limit: u32,
    },
    /// Response to `Backfill`.
    History {
        /// The events, newest first (redacted where no user of the asker may read them).
        pdus: Vec<RawPdu>,
        /// Events that authorise them (their auth chain, without them).
        auth: Vec<RawPdu>,
        /// The asker's users known to the answering gateway.
        users: Vec<OwnedUserId>,
        /// Per event, indexes into `users` of those who may read it.
        readers: Vec<Vec<u16>>,
    },
    /// Request: what the destination announces about one of its files.
    QueryMedia {
        /// The media id (of an `mxc://<destination>/<id>` URI).
        media_id: String,
    },
    /// Response to `QueryMedia`.
    MediaInfo {
        /// Size, SHA-256, content type and file name.
        announced: crate::service::remote_media::Announced,
        /// Who uploaded it.
        uploader: OwnedUserId,
        /// Bytes per chunk (the last may be shorter).
        chunk_size: u32,
    },
    /// Request: one chunk of a file.
    FetchMedia {
        /// The media id.
        media_id: String,
        /// Which chunk.
        index: u32,
    },
    /// Response to `FetchMedia`.
    MediaChunk {
        /// Which chunk.
        index: u32,
        /// Its bytes, base64 (standard, unpadded); the wire compression takes back most of
        /// base64's overhead.
        data: String,
    },
    /// Request: which room an alias of the destination names.
    QueryAlias {
        /// The alias.
        alias: OwnedRoomAliasId,
    },
    /// Response to `QueryAlias`.
    Alias {
        /// The room.
        room_id: OwnedRoomId,
        /// Gateways in the room that can be joined through.
        servers: Vec<OwnedServerName>,
    },
    /// Request: a user's profile (only answered when the asker shares a room with the user).
    QueryProfile {
        /// The user.
        user_id: OwnedUserId,
    },
    /// Response to `QueryProfile`.
    Profile {
        /// Display name.
        displayname: Option<String>,
        /// Avatar.
        avatar_url: Option<String>,
    },
    /// Request: device keys of users of the destination.
    QueryKeys {
        /// User → devices (empty: all).
        device_keys: BTreeMap<OwnedUserId, Vec<String>>,
    },
    /// Response to `QueryKeys`, in the CS API's `/keys/query` shape.
    Keys {
        /// The answer body.
        body: Value,
    },
    /// Request: claim one-time keys of users of the destination.
    ClaimKeys {
        /// User → device → algorithm.
        one_time_keys: BTreeMap<OwnedUserId, BTreeMap<String, String>>,
    },
    /// Response to `ClaimKeys`, in the CS API's `/keys/claim` shape.
    Claimed {
        /// The answer body.
        body: Value,
    },
    /// PDUs and EDUs of one room, encrypted under the origin's current epoch for the room
    /// (durable). The plaintext is a compressed `Txn` whose PDUs and EDUs are all of the room
    /// the session belongs to.
    Sealed {
        /// The Megolm session (the epoch).
        session_id: String,
        /// The Megolm message (base64).
        ciphertext: String,
    },
    /// A message for the destination alone, under the pairwise Olm session (durable). The
    /// plaintext is a compressed `RoomKey`, `Txn` (EDUs that are not of a room) or `Invite`.
    Olm {
        /// The Olm message.
        message: OlmCiphertext,
    },
    /// The origin could not decrypt an Olm message of the destination (its session is lost):
    /// the destination forgets its sessions with the origin and starts a new one (durable).
    OlmReset {},
    /// Request: one Olm one-time key of the destination.
    ClaimOlmKey {},
    /// Response to `ClaimOlmKey`.
    OlmKey {
        /// The destination's Olm identity key (Curve25519, base64).
        identity_key: String,
        /// A one-time key made for this claim (base64).
        one_time_key: String,
    },
    /// Request: the key of an epoch of the destination (a message under it arrived first).
    KeyRequest {
        /// The Megolm session.
        session_id: String,
    },
    /// A room key (the plaintext of an `Olm` message, or the answer to `KeyRequest`).
    RoomKey {
        /// The key.
        share: RoomKeyShare,
        /// A membership event of one of the origin's joined users, for a destination that may
        /// not know yet that the origin is in the room (it travels beside the key, not under
        /// the epoch it opens).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        membership: Option<RawPdu>,
    },
    /// A request, with the ephemeral key its answer is to be encrypted to.
    Asking {
        /// Curve25519 public key (base64), used once.
        reply_key: String,
        /// The request.
        request: Box<Body>,
    },
    /// An answer, encrypted to the request's reply key (vodozemac ECIES: an ephemeral key of
    /// the answering gateway, X25519, HKDF-SHA256, ChaCha20-Poly1305). The plaintext is the
    /// compressed answer body.
    Answer {
        /// The ECIES message (`key|ciphertext`, base64).
        ciphertext: String,
    },
    /// A request was refused.
    Error {
        /// Matrix-like error code (`M_FORBIDDEN`, `M_NOT_FOUND`, ...).
        errcode: String,
        /// Why.
        error: String,
    },
}

pub use super::groupkeys::{megolm::RoomKeyShare, olm::OlmCiphertext};
pub use crate::service::edus::Edu;

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Too short, an unknown version, or not the envelope's JSON shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The origin is not a key-derived server name or the signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The message is for another gateway.
    #[error("message for {0}")]
    WrongDestination(OwnedServerName),
}

impl WireError {
    /// A short label for counters.
    pub fn label(&self) -> &'static str {
        match self {
            WireError::Malformed(_) => "malformed",
            WireError::BadSignature => "signature",
            WireError::WrongDestination(_) => "destination",
        }
    }
}

/// Encodes, compresses and signs an envelope with this gateway's identity (version 2).
pub fn encode(identity: &Identity, envelope: &Envelope) -> Vec<u8> {
    // Serialising our own plain data types cannot fail.
    let json = serde_json::to_vec(envelope).unwrap_or_default();
    let packed = super::compress::compress(&json);
    let key = identity.keypair().public_key();
    let mut signed = Vec::with_capacity(CONTEXT_V2.len() + key.len() + packed.len());
    signed.extend_from_slice(CONTEXT_V2);
    signed.extend_from_slice(&key);
    signed.extend_from_slice(&packed);
    let signature = identity.keypair().sign(&signed);
    let mut out = Vec::with_capacity(1 + 32 + 64 + packed.len());
    out.push(VERSION);
    out.extend_from_slice(&key);
    out.extend_from_slice(signature.as_bytes());
    out.extend_from_slice(&packed);
    out
}

/// Encodes and signs an envelope in version 1 (uncompressed), as older gateways sent it.
pub fn encode_v1(identity: &Identity, envelope: &Envelope) -> Vec<u8> {
    let json = serde_json::to_vec(envelope).unwrap_or_default();
    let mut signed = Vec::with_capacity(CONTEXT_V1.len() + json.len());
    signed.extend_from_slice(CONTEXT_V1);
    signed.extend_from_slice(&json);
    let signature = identity.keypair().sign(&signed);
    let mut out = Vec::with_capacity(1 + 64 + json.len());
    out.push(1);
    out.extend_from_slice(signature.as_bytes());
    out.extend_from_slice(&json);
    out
}

fn verify(key: &[u8; 32], context: &[&[u8]], signature: &[u8]) -> Result<(), WireError> {
    let key = VerifyingKey::from_bytes(key).map_err(|_| WireError::BadSignature)?;
    let signature: [u8; 64] = signature.try_into().map_err(|_| WireError::BadSignature)?;
    let signed: Vec<u8> = context.concat();
    key.verify_strict(&signed, &Signature::from_bytes(&signature))
        .map_err(|_| WireError::BadSignature)
}

fn parse(json: &[u8]) -> Result<Envelope, WireError> {
    serde_json::from_slice(json).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Decodes a message for `me`, checking the version, the origin's signature and the
/// destination.
pub fn decode(me: &ServerName, bytes: &[u8]) -> Result<Envelope, WireError> {
    let malformed = |m: &str| WireError::Malformed(m.to_owned());
    let envelope = match bytes.first() {
        Some(2) => {
            if bytes.len() < 1 + 32 + 64 {
                return Err(malformed("too short"));
            }
            let key: [u8; 32] = bytes[1..33].try_into().map_err(|_| malformed("key"))?;
            let packed = &bytes[97..];
            verify(&key, &[CONTEXT_V2, &key, packed], &bytes[33..97])?;
            let json = super::compress::decompress(packed)
                .map_err(|e| WireError::Malformed(format!("compression: {e}")))?;
            let envelope = parse(&json)?;
            if key_for_server_name(&envelope.origin) != Some(key) {
                return Err(WireError::BadSignature);
            }
            envelope
        }
        Some(1) => {
            if bytes.len() < 1 + 64 {
                return Err(malformed("too short"));
            }
            let json = &bytes[65..];
            let envelope = parse(json)?;
            let key = key_for_server_name(&envelope.origin).ok_or(WireError::BadSignature)?;
            verify(&key, &[CONTEXT_V1, json], &bytes[1..65])?;
            envelope
        }
        Some(v) => return Err(WireError::Malformed(format!("unknown version {v}"))),
        None => return Err(malformed("too short")),
    };
    if envelope.destination != me {
        return Err(WireError::WrongDestination(envelope.destination));
    }
    Ok(envelope)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
