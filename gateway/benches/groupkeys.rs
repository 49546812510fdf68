//! What group keys cost per message and per rotation.
//!
//! `cargo bench -p gateway --bench groupkeys`:
//! - `compress_pdu`: one typical chat PDU (about 100 characters of body) serialised and
//!   compressed with the wire dictionary (done once per message, before any encryption);
//! - `seal_pdu` / `open_pdu`: that compressed payload encrypted under a Megolm epoch (the state
//!   written to the store and flushed), and decrypted and checked on the other side;
//! - `olm_share`: one room key encrypted under Olm and decrypted;
//! - `rotation_50`: a new epoch in a room of 50 member gateways: the Megolm session and 50 key
//!   shares encrypted under 50 Olm sessions.
//!
//! It also prints the bytes each costs on the wire.

use std::{collections::BTreeSet, sync::Arc};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use gateway::{
    peering::{groupkeys::GroupKeys, reply_seal::encode_payload, wire::Body, KeyPolicy},
    service::clock::SystemClock,
};
use ruma::{OwnedRoomId, OwnedServerName};
use storage::Db;

fn keys() -> GroupKeys {
    GroupKeys::new(
        Db::memory().expect("db"),
        Arc::new(SystemClock),
        KeyPolicy {
            rotation_messages: 10_000,
            ..KeyPolicy::default()
        },
    )
}

fn pdu() -> Body {
    let pdu = serde_json::json!({
        "auth_events": ["$Ab3kRbJH0qLxk5CszHLVxKuXkQfv8sJ9g8P2bUvHcE0", "$s0DqtoLYkFhz0Sa6fQKlxyIFHb6zR1aLQ9tBNM2bsdY", "$9fO1yF7mK3zQd0aHcW8lV2pRt5uXeY4nJ6bS1gE3iTo"],
        "content": {"body": "Sounds good to me, let's meet at the office tomorrow morning and go over the release plan.", "msgtype": "m.text"},
        "depth": 1234,
        "hashes": {"sha256": "Gx0pX1mGQ0xV1yN2mYtq1w7c5kq7o6QnJb8S2u0cF1E"},
        "origin_server_ts": 1764547200000u64,
        "prev_events": ["$q1W2e3R4t5Y6u7I8o9P0a1S2d3F4g5H6j7K8l9Z0x1C"],
        "room_id": "!Tz5qPbnYk2bZx8fAqU1m:abcdefghijabcdefghijabcdefghijabcdefghijabcdefghij",
        "sender": "@alice:abcdefghijabcdefghijabcdefghijabcdefghijabcdefghij",
        "signatures": {"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghij": {"ed25519:0": "p8mX0e7V4z1Z4b3VqW2o7m5m9vQy3p0pB5m2o1QnE1bS0u9c7X5k3h1f9d7b5Z3x1v9t7r5p3n1l9j7h5f3d1b9"}},
        "type": "m.room.message",
        "unsigned": {"age_ts": 1764547200000u64}
    });
    Body::Txn {
        id: "0123456789abcdef".into(),
        pdus: vec![serde_json::value::to_raw_value(&pdu).expect("raw")],
        edus: vec![],
    }
}

fn room() -> OwnedRoomId {
    OwnedRoomId::try_from("!Tz5qPbnYk2bZx8fAqU1m:example.org").expect("room")
}

fn readers(n: usize) -> BTreeSet<OwnedServerName> {
    (0..n)
        .map(|i| OwnedServerName::try_from(format!("gw{i}.example")).expect("name"))
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let sender = keys();
    let receiver = keys();
    let origin = OwnedServerName::try_from("sender.example").expect("name");
    let one = readers(1);
    let json = serde_json::to_vec(&pdu()).expect("json");
    let plaintext = encode_payload(&pdu());
    let first = rt
        .block_on(sender.seal(&room(), &one, "shared", 1, &plaintext))
        .expect("seal");
    rt.block_on(receiver.accept_share(&origin, &first.shares[0].1))
        .expect("accept");
    eprintln!(
        "one PDU: {} B JSON, {} B compressed, {} B Megolm message (base64 {} B)",
        json.len(),
        plaintext.len(),
        first.ciphertext.len() * 3 / 4,
        first.ciphertext.len()
    );

    let body = pdu();
    c.bench_function("compress_pdu", |b| b.iter(|| encode_payload(&body)));
    c.bench_function("seal_pdu", |b| {
        b.iter(|| {
            rt.block_on(sender.seal(&room(), &one, "shared", 1, &plaintext))
                .expect("seal")
        })
    });
    // The epoch in use may have been replaced during `seal_pdu` (its message limit) without
    // the receiver hearing of it: start a fresh one, whose key the setup below hands over.
    rt.block_on(sender.end_epoch(&room())).expect("end");
    c.bench_function("open_pdu", |b| {
        b.iter_batched(
            || {
                let sealed = rt
                    .block_on(sender.seal(&room(), &one, "shared", 1, &plaintext))
                    .expect("seal");
                // A new epoch (the message limit): the receiver gets its key first.
                for (_, share) in &sealed.shares {
                    rt.block_on(receiver.accept_share(&origin, share))
                        .expect("accept");
                }
                sealed
            },
            |sealed| {
                let (_, plain) = rt
                    .block_on(receiver.open(&origin, &sealed.session_id, &sealed.ciphertext))
                    .expect("open");
                gateway::peering::reply_seal::decode_payload(&plain).expect("payload")
            },
            BatchSize::SmallInput,
        )
    });

    // Olm: a key share, both ways.
    let peer = OwnedServerName::try_from("peer.example").expect("name");
    let (identity, otk) = rt.block_on(receiver.hand_out_one_time_key()).expect("otk");
    rt.block_on(sender.create_olm_session(&peer, &identity, &otk))
        .expect("session");
    let share = serde_json::to_vec(&first.shares[0].1).expect("share");
    let pre = rt.block_on(sender.olm_encrypt(&peer, &share)).expect("olm");
    rt.block_on(receiver.olm_decrypt(&origin, &pre))
        .expect("pre-key");
    eprintln!(
        "one key share: {} B plaintext, {} B Olm (base64)",
        share.len(),
        pre.body.len()
    );
    c.bench_function("olm_share", |b| {
        b.iter(|| {
            let m = rt.block_on(sender.olm_encrypt(&peer, &share)).expect("olm");
            rt.block_on(receiver.olm_decrypt(&origin, &m))
                .expect("decrypt")
        })
    });

    // A rotation in a room of 50 member gateways.
    let fifty = readers(50);
    let rotating = keys();
    for r in &fifty {
        let (identity, otk) = rt.block_on(receiver.hand_out_one_time_key()).expect("otk");
        rt.block_on(rotating.create_olm_session(r, &identity, &otk))
            .expect("session");
    }
    // What one rotation sends: one Olm message per member gateway.
    let identity = gateway::identity::Identity::generate(None).expect("identity");
    let sealed = rt
        .block_on(rotating.seal(&room(), &fifty, "shared", 1, &plaintext))
        .expect("seal");
    let mut wire_bytes = 0;
    for (to, share) in &sealed.shares {
        let body = encode_payload(&Body::RoomKey {
            share: share.clone(),
            membership: None,
        });
        let message = rt.block_on(rotating.olm_encrypt(to, &body)).expect("olm");
        wire_bytes += gateway::peering::wire::encode(
            &identity,
            &gateway::peering::wire::Envelope {
                origin: identity.server_name().to_owned(),
                destination: to.clone(),
                ts: 1_764_547_200_000,
                body: Body::Olm { message },
            },
        )
        .len();
    }
    eprintln!(
        "rotation in a room of 50 member gateways: {} Olm messages, {} B on the wire in all ({} B each)",
        sealed.shares.len(),
        wire_bytes,
        wire_bytes / sealed.shares.len().max(1)
    );
    let mut n = 0u64;
    c.bench_function("rotation_50", |b| {
        b.iter(|| {
            n += 1;
            let room = OwnedRoomId::try_from(format!("!r{n}:example.org")).expect("room");
            let sealed = rt
                .block_on(rotating.seal(&room, &fifty, "shared", 1, &plaintext))
                .expect("seal");
            let mut bytes = 0;
            for (to, share) in &sealed.shares {
                let body = encode_payload(&Body::RoomKey {
                    share: share.clone(),
                    membership: None,
                });
                bytes += rt
                    .block_on(rotating.olm_encrypt(to, &body))
                    .expect("olm")
                    .body
                    .len();
            }
            bytes
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
