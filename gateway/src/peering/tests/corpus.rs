//! Realistic peering traffic, for training the compression dictionary and measuring it.
//!
//! Three gateways on a recording hub hold a scripted, seeded conversation in a few rooms:
//! messages of about 100 characters, replies, edits, reactions, typing and read receipts,
//! a topic change, and a late joiner paging back through the history (backfill answers).
//! Every message, request and answer that crosses the hub is decoded back to its envelope's
//! JSON: the samples a dictionary is trained on, and what its gain is measured against.
//!
//! - `cargo test -p gateway --lib train_peering_dictionary -- --ignored` writes
//!   `src/peering/dict/peering-v1.zdict` (seed 1);
//! - `compression_on_fresh_traffic` measures the committed dictionary on other traffic
//!   (seed 2) and prints the figures `gateway/README.md` quotes.

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::*;
use crate::{identity::Identity, peering::reply_seal};

const WORDS: &[&str] = &[
    "the", "a", "to", "and", "of", "I", "you", "it", "is", "that", "in", "we", "for", "on", "this",
    "with", "be", "have", "just", "so", "but", "not", "are", "can", "was", "do", "if", "at",
    "what", "me", "my", "will", "think", "about", "all", "there", "get", "like", "know", "would",
    "they", "one", "up", "out", "time", "now", "when", "see", "good", "yes", "no", "today",
    "tomorrow", "meeting", "later", "thanks", "sure", "maybe", "sounds", "great", "let's", "could",
    "should", "people", "work", "need", "going", "back", "how", "more", "some", "right", "here",
    "also", "only", "new", "message", "room", "call", "read", "again", "still", "already",
    "please", "send", "file", "link", "document", "review", "morning", "evening", "week", "friday",
    "monday", "weekend", "plan", "idea", "question", "answer", "problem", "fixed", "update",
    "version", "release", "server", "phone", "late", "early", "coffee", "lunch", "train", "home",
    "office", "news", "story", "photo", "map", "safe", "careful", "trust", "group", "team",
    "friends", "family", "help", "check", "noticed", "happened", "before", "after", "because",
    "really", "probably", "everyone",
];

/// A sentence of about `len` characters from the word list.
fn sentence(rng: &mut StdRng, len: usize) -> String {
    let mut s = String::new();
    while s.len() < len {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
    }
    let mut chars = s.chars();
    let first = chars.next().map(|c| c.to_uppercase().collect::<String>());
    format!(
        "{}{}{}",
        first.unwrap_or_default(),
        chars.as_str(),
        [".", "?", "!", ""][rng.gen_range(0..4)]
    )
}

/// Runs the scripted conversation (`rooms` rooms, `messages` messages in all) and returns the
/// JSON of every envelope that crossed the hub, and the network (for further measurement).
pub(super) async fn traffic(seed: u64, rooms: usize, messages: usize) -> (Vec<Vec<u8>>, Net) {
    let mut rng = StdRng::seed_from_u64(seed);
    let net = Net::new(3);
    for node in &net.nodes {
        *node.peer.tap.lock().expect("tap") = Some(Vec::new());
    }
    let users = [
        net.user(0, "alice").await,
        net.user(1, "bob").await,
        net.user(2, "carol").await,
    ];
    let mut room_ids = Vec::new();
    for r in 0..rooms {
        let room = create_room(
            &net,
            0,
            &users[0].1,
            json!({"preset": "public_chat", "name": format!("Room {r} {}", sentence(&mut rng, 12))}),
        )
        .await;
        // Carol joins the first room late, to page back through its history.
        for (i, (user, token)) in users.iter().enumerate().skip(1) {
            if i == 2 && r == 0 {
                continue;
            }
            net.ok(
                i,
                Method::POST,
                &format!("/_matrix/client/v3/join/{}", enc(room.as_str())),
                token,
                Some(json!({})),
            )
            .await;
            until("joined", || {
                net.membership(0, &room, user).as_deref() == Some("join")
            })
            .await;
        }
        room_ids.push(room);
    }
    let mut sent: Vec<(usize, OwnedRoomId, String)> = Vec::new();
    for n in 0..messages {
        let r = rng.gen_range(0..rooms);
        let room = room_ids[r].clone();
        let mut i = rng.gen_range(0..3);
        if r == 0 && i == 2 {
            i = 0;
        }
        let token = &users[i].1;
        let len = rng.gen_range(40..160);
        let body = sentence(&mut rng, len);
        let roll = rng.gen_range(0..100);
        let last = sent.iter().rev().find(|(_, rm, _)| *rm == room).cloned();
        let content = match (roll, &last) {
            (0..=9, Some((_, _, target))) => json!({
                "msgtype": "m.text", "body": body,
                "m.relates_to": {"m.in_reply_to": {"event_id": target}}
            }),
            (10..=14, Some((who, _, target))) if *who == i => json!({
                "msgtype": "m.text", "body": format!("* {body}"),
                "m.new_content": {"msgtype": "m.text", "body": body},
                "m.relates_to": {"rel_type": "m.replace", "event_id": target}
            }),
            _ => json!({"msgtype": "m.text", "body": body}),
        };
        let kind = if (15..=19).contains(&roll) && last.is_some() {
            "m.reaction"
        } else {
            "m.room.message"
        };
        let content = if kind == "m.reaction" {
            let target = last.as_ref().map(|l| l.2.clone()).unwrap_or_default();
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": "👍"}})
        } else {
            content
        };
        let res = net
            .ok(
                i,
                Method::PUT,
                &room_path(&room, &format!("send/{kind}/t{seed}-{n}")),
                token,
                Some(content),
            )
            .await;
        let id = res["event_id"].as_str().unwrap_or_default().to_owned();
        if roll >= 90 {
            net.ok(
                i,
                Method::PUT,
                &room_path(&room, &format!("typing/{}", enc(users[i].0.as_str()))),
                token,
                Some(json!({"typing": true, "timeout": 30000})),
            )
            .await;
        }
        if roll % 3 == 0 {
            let reader = (i + 1) % 3;
            if !(r == 0 && reader == 2) {
                // The event may not have reached the reader's gateway yet: then no receipt.
                net.call(
                    reader,
                    Method::POST,
                    &room_path(&room, &format!("receipt/m.read/{}", enc(&id))),
                    &users[reader].1,
                    Some(json!({})),
                )
                .await;
            }
        }
        sent.push((i, room, id));
    }
    net.ok(
        0,
        Method::PUT,
        &room_path(&room_ids[0], "state/m.room.topic/"),
        &users[0].1,
        Some(json!({"topic": sentence(&mut rng, 60)})),
    )
    .await;
    // Carol joins the first room and pages back through all of it.
    net.ok(
        2,
        Method::POST,
        &format!("/_matrix/client/v3/join/{}", enc(room_ids[0].as_str())),
        &users[2].1,
        Some(json!({})),
    )
    .await;
    let mut from: Option<String> = None;
    for _ in 0..200 {
        let mut uri = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
            enc(room_ids[0].as_str())
        );
        if let Some(f) = &from {
            uri.push_str(&format!("&from={f}"));
        }
        let page = net.ok(2, Method::GET, &uri, &users[2].1, None).await;
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    // Let what is in flight arrive.
    until("quiet", || {
        (0..3).all(|i| net.hub.pending(net.name(i)) == 0)
    })
    .await;
    // The plaintext of every envelope, as each gateway encrypted it.
    let samples = net
        .nodes
        .iter()
        .flat_map(|n| n.peer.tap.lock().expect("tap").clone().unwrap_or_default())
        .collect();
    (samples, net)
}

#[tokio::test]
#[ignore = "writes the committed dictionary; run by hand when the wire format changes"]
async fn train_peering_dictionary() {
    let (samples, _net) = traffic(1, 6, 1500).await;
    let dict = zstd::dict::from_samples(&samples, 32 * 1024).expect("trained");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/peering/dict/peering-v1.zdict"
    );
    std::fs::write(path, &dict).expect("write");
    eprintln!(
        "dictionary: {} bytes from {} samples",
        dict.len(),
        samples.len()
    );
}

/// Bytes of `json` as a v2 message without group keys: header, signature and the
/// compressed envelope.
fn v2_size(json: &[u8]) -> usize {
    1 + 32 + 64 + crate::peering::compress::compress(json).len()
}

/// Bytes of the plaintext envelope `json` as it really crosses the wire: its body encrypted
/// (an answer to its request's key; anything else under a Megolm epoch), in a signed v2
/// message.
fn sealed_size(json: &[u8]) -> usize {
    let mut envelope: Envelope = serde_json::from_slice(json).expect("envelope");
    let inner = envelope.body.clone();
    envelope.body = match inner {
        Body::Txn { .. } => {
            let mut epoch = vodozemac::megolm::GroupSession::new(Default::default());
            let message = epoch.encrypt(reply_seal::encode_payload(&inner));
            Body::Sealed {
                session_id: epoch.session_id(),
                ciphertext: base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD_NO_PAD,
                    message.to_bytes(),
                ),
            }
        }
        _ => {
            let asker = reply_seal::Asker::new();
            let Body::Asking { reply_key, .. } = asker.wrap(Body::ClaimOlmKey {}) else {
                unreachable!("wrap makes an Asking body")
            };
            reply_seal::seal_answer(&reply_key, &inner).expect("seal")
        }
    };
    wire::encode(&Identity::generate(None).expect("identity"), &envelope).len()
}

#[tokio::test]
async fn compression_on_fresh_traffic() {
    let (samples, _net) = traffic(2, 2, 200).await;
    let (mut json_total, mut v2_total, mut plain_zstd) = (0usize, 0usize, 0usize);
    let mut history: Vec<(usize, usize, usize)> = Vec::new();
    let mut txn_one_event: Vec<(usize, usize)> = Vec::new();
    for s in &samples {
        json_total += s.len() + 65;
        v2_total += v2_size(s);
        plain_zstd += 97 + zstd::bulk::compress(s, 12).expect("zstd").len();
        let v: Value = serde_json::from_slice(s).expect("json");
        if let Some(h) = v["body"]["history"].as_object() {
            let events = h["pdus"].as_array().map_or(0, Vec::len);
            history.push((events, s.len(), sealed_size(s)));
        }
        if let Some(t) = v["body"]["txn"].as_object() {
            if t["pdus"].as_array().map_or(0, Vec::len) == 1
                && t["edus"].as_array().map_or(0, Vec::len) == 0
            {
                txn_one_event.push((s.len() + 65, sealed_size(s)));
            }
        }
    }
    assert!(!history.is_empty(), "the late joiner paged back");
    let (events, json_h, v2_h) = history
        .iter()
        .fold((0, 0, 0), |a, h| (a.0 + h.0, a.1 + h.1, a.2 + h.2));
    let per_packet = 2048.0 * events as f64 / v2_h as f64;
    let one = txn_one_event.len().max(1);
    let (one_json, one_v2) = txn_one_event
        .iter()
        .fold((0, 0), |a, t| (a.0 + t.0, a.1 + t.1));
    eprintln!(
        "messages: {}; JSON {} B, zstd without dictionary {} B, v2 {} B (ratio {:.2})\n\
         backfill: {} answers, {} events, {:.0} B/event JSON, {:.0} B/event sealed, {:.1} events per 2 KiB\n\
         one-event txn: {:.0} B JSON, {:.0} B sealed",
        samples.len(),
        json_total,
        plain_zstd,
        v2_total,
        json_total as f64 / v2_total as f64,
        history.len(),
        events,
        json_h as f64 / events as f64,
        v2_h as f64 / events as f64,
        per_packet,
        one_json as f64 / one as f64,
        one_v2 as f64 / one as f64,
    );
    assert!(
        v2_total < plain_zstd && plain_zstd < json_total,
        "the dictionary helps"
    );
    // Issue goal: at least 8 typical chat events per 2 KiB packet payload in backfill.
    assert!(per_packet >= 8.0, "{per_packet:.1} events per 2 KiB");
}
