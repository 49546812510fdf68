//! Golden vectors of the wire format (committed insta snapshots of whole signed messages under
//! a fixed key) and a property test of the decoder over outside bytes.

use std::collections::BTreeMap;

use proptest::prelude::*;
use ruma::{OwnedServerName, RoomVersionId};
use serde_json::{json, value::to_raw_value};

use super::{decode, encode, encode_v1, Body, Edu, Envelope, WireError};
use crate::identity::Identity;

/// A fixed identity: PKCS#8 v1 DER of the Ed25519 seed 01 02 … 20.
fn fixed_identity() -> (tempfile::TempDir, Identity) {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend(1u8..=32);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("identity.key"), der).expect("write key");
    let identity = Identity::load_or_create(dir.path(), None).expect("identity");
    (dir, identity)
}

fn destination() -> OwnedServerName {
    crate::identity::server_name_for_key(&[7u8; 32])
}

fn cases(origin: &OwnedServerName) -> Vec<(&'static str, Envelope)> {
    let pdu = to_raw_value(&json!({
        "room_id": "!r:example", "sender": "@a:example", "type": "m.room.message",
        "content": {"body": "hi"}, "depth": 3, "prev_events": ["$p"], "auth_events": ["$a"],
        "origin_server_ts": 1_700_000_000_000u64, "hashes": {"sha256": "h"}, "signatures": {}
    }))
    .expect("raw");
    let room: ruma::OwnedRoomId = "!r:example".try_into().expect("room");
    let user: ruma::OwnedUserId = "@a:example".try_into().expect("user");
    let mut messages = BTreeMap::new();
    messages.insert(
        user.clone(),
        BTreeMap::from([("*".to_owned(), json!({"k": 1}))]),
    );
    let bodies = vec![
        (
            "txn",
            Body::Txn {
                id: "t1".into(),
                pdus: vec![pdu.clone()],
                edus: vec![
                    Edu::Typing {
                        room_id: room.clone(),
                        user_id: user.clone(),
                        typing: true,
                    },
                    Edu::Receipt {
                        room_id: room.clone(),
                        user_id: user.clone(),
                        event_id: "$e".try_into().expect("event"),
                        thread_id: None,
                        ts: 5,
                    },
                    Edu::ToDevice {
                        sender: user.clone(),
                        kind: "m.room_key".into(),
                        message_id: "m1".into(),
                        messages,
                    },
                    Edu::DeviceListUpdate {
                        user_id: user.clone(),
                    },
                ],
            },
        ),
        (
            "invite",
            Body::Invite {
                room_version: RoomVersionId::V11,
                event: pdu.clone(),
                invite_state: vec![
                    json!({"type": "m.room.name", "state_key": "", "content": {"name": "n"}, "sender": "@a:example"}),
                ],
            },
        ),
        (
            "make_membership",
            Body::MakeMembership {
                room_id: room.clone(),
                user_id: user.clone(),
                membership: "join".into(),
            },
        ),
        (
            "joined_state",
            Body::JoinedState {
                state: vec![pdu.clone()],
                auth_chain: vec![pdu.clone()],
                event: None,
            },
        ),
        (
            "missing_events",
            Body::MissingEvents {
                room_id: room.clone(),
                earliest: vec!["$a".try_into().expect("event")],
                latest: vec!["$b".try_into().expect("event")],
                limit: 10,
            },
        ),
        (
            "room_heads",
            Body::RoomHeads {
                room_id: room.clone(),
            },
        ),
        (
            "heads",
            Body::Heads {
                pdus: vec![pdu.clone()],
            },
        ),
        (
            "query_media",
            Body::QueryMedia {
                media_id: "abcDEF123".into(),
            },
        ),
        (
            "media_chunk",
            Body::MediaChunk {
                index: 2,
                data: "aGVsbG8".into(),
            },
        ),
        (
            "backfill",
            Body::Backfill {
                room_id: room.clone(),
                from: vec!["$b".try_into().expect("event")],
                limit: 50,
            },
        ),
        (
            "history",
            Body::History {
                pdus: vec![pdu.clone()],
                auth: vec![pdu],
                users: vec![user.clone()],
                readers: vec![vec![0]],
            },
        ),
        (
            "sealed",
            Body::Sealed {
                session_id: "u8GQ9kXJzq0Yc3n7l6pY0hZ2m1vX5bTQwE4rS3aD2fI".into(),
                ciphertext: "AwgAEiDhq1wZ7mD5Kx2J3P0o9nFqVv8YcT3sL6uR1bWg4eH9kP".into(),
            },
        ),
        (
            "olm",
            Body::Olm {
                message: super::OlmCiphertext {
                    identity_key: "3vXl0wU1B2gY9h8iJ7kL6mN5oP4qR3sT2uV1wX0yZ9a".into(),
                    kind: 0,
                    body: "AwogWk5h0bQ1c2D3e4F5g6H7i8J9k0L1m2N3o4P5q6R7".into(),
                },
            },
        ),
        ("olm_reset", Body::OlmReset {}),
        ("claim_olm_key", Body::ClaimOlmKey {}),
        (
            "olm_key",
            Body::OlmKey {
                identity_key: "3vXl0wU1B2gY9h8iJ7kL6mN5oP4qR3sT2uV1wX0yZ9a".into(),
                one_time_key: "q6R7s8T9u0V1w2X3y4Z5a6B7c8D9e0F1g2H3i4J5k6L".into(),
            },
        ),
        (
            "key_request",
            Body::KeyRequest {
                session_id: "u8GQ9kXJzq0Yc3n7l6pY0hZ2m1vX5bTQwE4rS3aD2fI".into(),
            },
        ),
        (
            "room_key",
            Body::RoomKey {
                share: super::RoomKeyShare {
                    room_id: room.clone(),
                    session_id: "u8GQ9kXJzq0Yc3n7l6pY0hZ2m1vX5bTQwE4rS3aD2fI".into(),
                    session_key: "AQAAAABhYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5eg".into(),
                },
                membership: None,
            },
        ),
        (
            "asking",
            Body::Asking {
                reply_key: "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5".into(),
                request: Box::new(Body::RoomHeads {
                    room_id: room.clone(),
                }),
            },
        ),
        (
            "answer",
            Body::Answer {
                ciphertext: "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5|c2VjcmV0".into(),
            },
        ),
        (
            "error",
            Body::Error {
                errcode: "M_FORBIDDEN".into(),
                error: "no".into(),
            },
        ),
    ];
    bodies
        .into_iter()
        .map(|(name, body)| {
            (
                name,
                Envelope {
                    origin: origin.clone(),
                    destination: destination(),
                    ts: 1_700_000_000_123,
                    body,
                },
            )
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(32)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn golden_vectors_encode_and_decode() {
    let (_dir, identity) = fixed_identity();
    let origin = identity.server_name().to_owned();
    for (name, envelope) in cases(&origin) {
        // Version 1 is still read; its vectors stay as they were.
        let v1 = encode_v1(&identity, &envelope);
        insta::assert_snapshot!(format!("wire_v1_{name}"), hex(&v1));
        let back = decode(&destination(), &v1).expect("v1 decodes");
        assert_eq!(
            serde_json::to_value(&back.body).expect("json"),
            serde_json::to_value(&envelope.body).expect("json"),
            "{name}"
        );
        let bytes = encode(&identity, &envelope);
        insta::assert_snapshot!(format!("wire_v2_{name}"), hex(&bytes));
        let back = decode(&destination(), &bytes).expect("decodes");
        assert_eq!(
            serde_json::to_value(&back.body).expect("json"),
            serde_json::to_value(&envelope.body).expect("json"),
            "{name}"
        );
        assert_eq!(back.origin, origin);
        assert_eq!(
            decode(&origin, &bytes).expect_err("not for the origin"),
            WireError::WrongDestination(destination())
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any bytes: an error or an envelope, never a panic.
    #[test]
    fn decoding_outside_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&destination(), &bytes);
    }

    /// A valid message with any byte changed no longer verifies (or no longer parses).
    #[test]
    fn any_changed_byte_is_refused(index in 0usize..4096, flip in 1u8..=255) {
        let (_dir, identity) = fixed_identity();
        let origin = identity.server_name().to_owned();
        let (_, envelope) = cases(&origin).swap_remove(2);
        let mut bytes = encode(&identity, &envelope);
        let i = index % bytes.len();
        bytes[i] ^= flip;
        prop_assert!(decode(&destination(), &bytes).is_err());
    }
}
