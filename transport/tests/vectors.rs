//! Checks the committed packet test vectors (fixed keys → exact bytes).
//!
//! Regenerate with `MIXGATE_WRITE_VECTORS=1 cargo test -p transport --test vectors` (only when
//! the format version changes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use data_encoding::HEXLOWER as HEX;
use serde_json::{json, Value};
use transport::packet::*;

fn key(i: u8) -> [u8; 32] {
    *blake3::hash(&[b'k', i]).as_bytes()
}

fn route(n: usize) -> (Vec<SecretKey>, Vec<RouteHop>) {
    let keys: Vec<SecretKey> = (0..n)
        .map(|i| SecretKey::from_bytes(key(i as u8)))
        .collect();
    let route = keys
        .iter()
        .enumerate()
        .map(|(i, k)| RouteHop {
            id: [0x10 + i as u8; 16],
            public: k.public(),
            delay_us: 1000 + 111 * i as u32,
        })
        .collect();
    (keys, route)
}

fn hops_json(keys: &[SecretKey], route: &[RouteHop]) -> Value {
    keys.iter()
        .zip(route)
        .map(|(k, r)| {
            json!({"secret": HEX.encode(&k.to_bytes()), "public": HEX.encode(&r.public),
                   "id": HEX.encode(&r.id), "delay_us": r.delay_us})
        })
        .collect()
}

/// Runs every hop, recording the replay tag and the output of each.
fn trace(keys: &[SecretKey], packet: &[u8]) -> (Value, Delivered) {
    let mut out = vec![];
    let mut bytes = packet.to_vec();
    for k in keys {
        let mut tag = [0u8; TAG_LEN];
        match process(k, &bytes, &mut |t| {
            tag = *t;
            true
        })
        .unwrap()
        {
            Processed::Relay {
                next,
                delay_us,
                packet,
            } => {
                out.push(json!({"tag": HEX.encode(&tag), "next": HEX.encode(&next),
                    "delay_us": delay_us, "packet": HEX.encode(packet.as_bytes())}));
                bytes = packet.as_bytes().to_vec();
            }
            Processed::Deliver { mailbox, delivered } => {
                out.push(
                    json!({"tag": HEX.encode(&tag), "mailbox": HEX.encode(&mailbox),
                    "delivered": HEX.encode(&delivered.to_bytes())}),
                );
                return (Value::Array(out), delivered);
            }
        }
    }
    panic!("no delivery");
}

fn forward_vector() -> Value {
    let (keys, route) = route(5);
    let eph: Vec<SecretKey> = (0..5).map(|i| SecretKey::from_bytes(key(50 + i))).collect();
    let (ack, _) = create_surb_with(&route, &[0xaa; 16], &eph, [0xa1; 16], key(60)).unwrap();
    let recipient = SecretKey::from_bytes(key(70));
    let secrets = ForwardSecrets {
        hops: (0..5).map(|i| SecretKey::from_bytes(key(80 + i))).collect(),
        surb_id: [0xb2; 16],
    };
    let body = b"mixgate test vector v1: forward packet, five hops, with SURB-ACK".to_vec();
    let p = create_forward_with(
        &route,
        &[0xbb; 16],
        &recipient.public(),
        Some(&ack),
        &body,
        &secrets,
    )
    .unwrap();
    let (hops_out, delivered) = trace(&keys, p.as_bytes());
    let opened = delivered.open_forward(&recipient).unwrap();
    json!({
        "description": "forward packet over 5 hops to mailbox bb.., end-to-end to recipient, carrying an ack SURB",
        "format_version": VERSION,
        "hops": hops_json(&keys, &route),
        "mailbox": HEX.encode(&[0xbb; 16]),
        "ephemerals": secrets.hops.iter().map(|k| HEX.encode(&k.to_bytes())).collect::<Vec<_>>(),
        "recipient_secret": HEX.encode(&recipient.to_bytes()),
        "surb_id": HEX.encode(&secrets.surb_id),
        "ack_surb": HEX.encode(&ack.to_bytes()),
        "body": HEX.encode(&body),
        "packet": HEX.encode(p.as_bytes()),
        "hop_outputs": hops_out,
        "opened_body": HEX.encode(&opened[..]),
    })
}

fn reply_vector() -> Value {
    let (keys, route) = route(4);
    let eph: Vec<SecretKey> = (0..4)
        .map(|i| SecretKey::from_bytes(key(100 + i)))
        .collect();
    let (surb, secret) = create_surb_with(&route, &[0xcc; 16], &eph, [0xc1; 16], key(110)).unwrap();
    let body = b"mixgate test vector v1: reply on a SURB".to_vec();
    let surb_bytes = surb.to_bytes();
    let (_, p) = surb.into_packet(&body).unwrap();
    let (hops_out, delivered) = trace(&keys, p.as_bytes());
    let opened = secret.open(&delivered.payload).unwrap();
    json!({
        "description": "SURB over 4 hops to mailbox cc..; reply packet and its unwrapping",
        "format_version": VERSION,
        "hops": hops_json(&keys, &route),
        "mailbox": HEX.encode(&[0xcc; 16]),
        "ephemerals": eph.iter().map(|k| HEX.encode(&k.to_bytes())).collect::<Vec<_>>(),
        "surb_id": HEX.encode(&[0xc1; 16]),
        "payload_seed": HEX.encode(&key(110)),
        "surb": HEX.encode(&surb_bytes),
        "body": HEX.encode(&body),
        "packet": HEX.encode(p.as_bytes()),
        "hop_outputs": hops_out,
        "opened_body": HEX.encode(&opened[..]),
    })
}

fn check(name: &str, v: Value) {
    let path = format!("{}/tests/vectors/{name}.json", env!("CARGO_MANIFEST_DIR"));
    if std::env::var("MIXGATE_WRITE_VECTORS").is_ok() {
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap() + "\n").unwrap();
    }
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(committed, v, "vector {name} differs from {path}");
}

#[test]
fn forward_packet_vector() {
    check("forward_5hop", forward_vector());
}

#[test]
fn surb_reply_vector() {
    check("surb_reply_4hop", reply_vector());
}
