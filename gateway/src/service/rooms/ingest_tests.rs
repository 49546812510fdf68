//! Two gateways in one process, no network: one's PDUs are handed to the other's ingest by a
//! plain call. Replication, forks that merge under state resolution, and each kind of bad PDU.

use std::sync::Arc;

use ruma::{
    signatures::hash_and_sign_event, CanonicalJsonObject, OwnedEventId, OwnedRoomId, OwnedUserId,
    RoomId, UserId,
};
use serde_json::{json, value::to_raw_value, Value};

use super::{verify_pdu, Ingested, Rejection};
use crate::{
    config::GatewayConfig,
    service::{
        rooms::{rules_for, CreateRoom, EventStatus, DEFAULT_ROOM_VERSION},
        Gateway,
    },
};

fn gateway() -> Arc<Gateway> {
    Gateway::open(GatewayConfig {
        memory_only: true,
        ..Default::default()
    })
    .expect("open")
}

fn user(gw: &Gateway, name: &str) -> OwnedUserId {
    UserId::parse(format!("@{name}:{}", gw.server_name())).expect("user id")
}

async fn public_room(gw: &Gateway, creator: &UserId) -> OwnedRoomId {
    gw.rooms
        .create(
            creator,
            CreateRoom {
                preset: "public_chat".into(),
                ..Default::default()
            },
        )
        .await
        .expect("room")
}

async fn append(
    gw: &Gateway,
    room: &RoomId,
    sender: &UserId,
    kind: &str,
    sk: Option<&str>,
    content: Value,
) -> OwnedEventId {
    let (id, _) = gw
        .rooms
        .write(room, None, |t| {
            Ok(t.append(sender, kind, sk, content, None)?.event_id)
        })
        .await
        .expect("append");
    id
}

/// The signed JSON of an event of `from`.
fn json_of(from: &Gateway, id: &OwnedEventId) -> Box<serde_json::value::RawValue> {
    from.rooms.get_pdu(id).expect("read").expect("event").1.json
}

/// Hands events of `from` to `to`'s ingest, one batch.
async fn deliver(
    from: &Gateway,
    to: &Gateway,
    room: &RoomId,
    ids: &[OwnedEventId],
) -> Vec<Ingested> {
    let rules = rules_for(&DEFAULT_ROOM_VERSION).expect("rules");
    let pdus = ids
        .iter()
        .map(|id| verify_pdu(&rules, room, &json_of(from, id)).expect("verifies"))
        .collect();
    to.rooms
        .ingest(room, Some(DEFAULT_ROOM_VERSION), pdus, false)
        .await
        .expect("ingest")
        .into_iter()
        .map(|(_, o)| o)
        .collect()
}

/// Every accepted event of a room on `gw`, oldest first.
fn timeline(gw: &Gateway, room: &RoomId) -> Vec<OwnedEventId> {
    gw.rooms
        .timeline(room, 0, false, 10_000)
        .expect("timeline")
        .into_iter()
        .map(|(_, id)| id)
        .collect()
}

fn state(gw: &Gateway, room: &RoomId) -> Vec<((String, String), OwnedEventId)> {
    let mut s: Vec<_> = gw
        .rooms
        .current_state(room)
        .expect("state")
        .into_iter()
        .map(|(k, e)| (k, e.event_id))
        .collect();
    s.sort();
    s
}

/// A PDU signed by `signer` with arbitrary fields (what a hostile or buggy gateway could send).
fn forge(signer: &Gateway, mut event: Value) -> Box<serde_json::value::RawValue> {
    let rules = rules_for(&DEFAULT_ROOM_VERSION).expect("rules");
    event["origin_server_ts"] = json!(1_700_000_000_000u64);
    let mut object: CanonicalJsonObject = serde_json::from_value(event).expect("canonical object");
    hash_and_sign_event(
        signer.server_name().as_str(),
        signer.identity.keypair(),
        &mut object,
        &rules.redaction,
    )
    .expect("sign");
    to_raw_value(&object).expect("json")
}

/// A room on A, replicated to B, with bob of B joined on both.
async fn shared_room() -> (
    Arc<Gateway>,
    Arc<Gateway>,
    OwnedRoomId,
    OwnedUserId,
    OwnedUserId,
) {
    let (a, b) = (gateway(), gateway());
    let alice = user(&a, "alice");
    let bob = user(&b, "bob");
    let room = public_room(&a, &alice).await;
    let history = timeline(&a, &room);
    let outcomes = deliver(&a, &b, &room, &history).await;
    assert!(
        outcomes.iter().all(|o| *o == Ingested::Accepted),
        "{outcomes:?}"
    );
    let join = append(
        &b,
        &room,
        &bob,
        "m.room.member",
        Some(bob.as_str()),
        json!({"membership": "join"}),
    )
    .await;
    assert_eq!(
        deliver(&b, &a, &room, &[join]).await,
        vec![Ingested::Accepted]
    );
    (a, b, room, alice, bob)
}

#[tokio::test]
async fn a_room_replicates_with_the_same_state_and_timeline() {
    let (a, b, room, alice, bob) = shared_room().await;
    let m1 = append(
        &a,
        &room,
        &alice,
        "m.room.message",
        None,
        json!({"body": "hi", "msgtype": "m.text"}),
    )
    .await;
    let m2 = append(
        &b,
        &room,
        &bob,
        "m.room.message",
        None,
        json!({"body": "hello", "msgtype": "m.text"}),
    )
    .await;
    // B's message was sent before B saw A's: the DAG forks, and merges with the next event.
    assert_eq!(
        deliver(&a, &b, &room, std::slice::from_ref(&m1)).await,
        vec![Ingested::Accepted]
    );
    assert_eq!(
        deliver(&b, &a, &room, std::slice::from_ref(&m2)).await,
        vec![Ingested::Accepted]
    );
    assert_eq!(state(&a, &room), state(&b, &room));
    assert_eq!(timeline(&a, &room).len(), timeline(&b, &room).len());
    let merge = append(
        &a,
        &room,
        &alice,
        "m.room.message",
        None,
        json!({"body": "merged", "msgtype": "m.text"}),
    )
    .await;
    let (merged, _) = a.rooms.get_pdu(&merge).expect("read").expect("event");
    assert_eq!(merged.prev_events.len(), 2, "a new event names both forks");
    assert_eq!(
        deliver(&a, &b, &room, &[merge]).await,
        vec![Ingested::Accepted]
    );
    assert_eq!(
        b.rooms.membership(&room, &bob).expect("m").as_deref(),
        Some("join")
    );
    assert_eq!(
        b.rooms.membership(&room, &alice).expect("m").as_deref(),
        Some("join")
    );
}

#[tokio::test]
async fn concurrent_state_changes_converge_by_state_resolution() {
    let (a, b, room, alice, bob) = shared_room().await;
    // Let bob change the topic: power level 50 for m.room.topic in a public room is the
    // default; give him 50 first.
    let pl = a
        .rooms
        .state_content(&room, "m.room.power_levels", "")
        .expect("pl")
        .expect("pl");
    let mut pl2 = pl.clone();
    pl2["users"][bob.as_str()] = json!(50);
    let pl_ev = append(&a, &room, &alice, "m.room.power_levels", Some(""), pl2).await;
    assert_eq!(
        deliver(&a, &b, &room, &[pl_ev]).await,
        vec![Ingested::Accepted]
    );

    // Both change the topic at the same moment (neither has seen the other's).
    let ta = append(
        &a,
        &room,
        &alice,
        "m.room.topic",
        Some(""),
        json!({"topic": "from A"}),
    )
    .await;
    let tb = append(
        &b,
        &room,
        &bob,
        "m.room.topic",
        Some(""),
        json!({"topic": "from B"}),
    )
    .await;
    assert_eq!(
        deliver(&b, &a, &room, &[tb]).await,
        vec![Ingested::Accepted]
    );
    assert_eq!(
        deliver(&a, &b, &room, &[ta]).await,
        vec![Ingested::Accepted]
    );
    let topic_a = a.rooms.state_content(&room, "m.room.topic", "").expect("t");
    let topic_b = b.rooms.state_content(&room, "m.room.topic", "").expect("t");
    assert_eq!(topic_a, topic_b, "both gateways resolve to the same topic");
    assert_eq!(state(&a, &room), state(&b, &room));

    // Alice (power 100) demotes bob while bob, not having seen it, changes the name: on B the
    // name applies; once both see both, resolution orders the demotion first and drops it.
    let mut pl3 = a
        .rooms
        .state_content(&room, "m.room.power_levels", "")
        .expect("pl")
        .expect("pl");
    pl3["users"][bob.as_str()] = json!(0);
    let demote = append(&a, &room, &alice, "m.room.power_levels", Some(""), pl3).await;
    let rename = append(
        &b,
        &room,
        &bob,
        "m.room.name",
        Some(""),
        json!({"name": "bob's"}),
    )
    .await;
    let _ = deliver(&a, &b, &room, &[demote]).await;
    let outcome = deliver(&b, &a, &room, std::slice::from_ref(&rename)).await;
    assert_eq!(outcome.len(), 1);
    assert_eq!(
        state(&a, &room),
        state(&b, &room),
        "same state on both after the race"
    );
    assert!(a
        .rooms
        .state_content(&room, "m.room.name", "")
        .expect("n")
        .is_none());
}

#[tokio::test]
async fn a_tampered_pdu_is_redacted_or_refused() {
    let (a, _b, room, alice, _) = shared_room().await;
    let rules = rules_for(&DEFAULT_ROOM_VERSION).expect("rules");
    let msg = append(
        &a,
        &room,
        &alice,
        "m.room.message",
        None,
        json!({"body": "secret", "msgtype": "m.text"}),
    )
    .await;
    let json: Value = serde_json::from_str(json_of(&a, &msg).get()).expect("json");

    // Content changed after signing: the hash no longer matches, so it arrives redacted.
    let mut changed = json.clone();
    changed["content"]["body"] = json!("forged");
    let incoming =
        verify_pdu(&rules, &room, &to_raw_value(&changed).expect("raw")).expect("signature holds");
    assert!(incoming.redacted_on_arrival);
    assert!(!incoming.json.get().contains("forged"));

    // A field covered by the signature changed: refused.
    let mut resent = json.clone();
    resent["depth"] = json!(999);
    let err = verify_pdu(&rules, &room, &to_raw_value(&resent).expect("raw")).expect_err("refused");
    assert_eq!(err.label(), "signature");

    // Signature stripped, wrong room, malformed.
    let mut unsigned = json.clone();
    unsigned["signatures"] = json!({});
    assert!(verify_pdu(&rules, &room, &to_raw_value(&unsigned).expect("raw")).is_err());
    let other_room = RoomId::parse("!other:example.org").expect("room");
    assert!(matches!(
        verify_pdu(&rules, &other_room, &to_raw_value(&json).expect("raw")),
        Err(Rejection::WrongRoom(_))
    ));
    assert!(matches!(
        verify_pdu(
            &rules,
            &room,
            &to_raw_value(&json!({"type": 1})).expect("raw")
        ),
        Err(Rejection::Malformed(_))
    ));
    let mut long_type = json.clone();
    long_type["type"] = json!("x".repeat(300));
    assert!(matches!(
        verify_pdu(&rules, &room, &to_raw_value(&long_type).expect("raw")),
        Err(Rejection::Malformed(_))
    ));
}

#[tokio::test]
async fn events_the_auth_rules_refuse_are_rejected_and_never_shown() {
    let (a, b, room, alice, _bob) = shared_room().await;
    let mallory = user(&b, "mallory");
    let heads = a
        .rooms
        .write(&room, None, |t| Ok(t.heads().to_vec()))
        .await
        .expect("heads")
        .0;
    let create = a
        .rooms
        .state_entry(&room, "m.room.create", "")
        .expect("c")
        .expect("c")
        .event_id;
    let pl = a
        .rooms
        .state_entry(&room, "m.room.power_levels", "")
        .expect("p")
        .expect("p")
        .event_id;
    let depth = heads
        .iter()
        .map(|h| u64::from(a.rooms.get_pdu(h).expect("r").expect("e").0.depth))
        .max()
        .unwrap_or(0);
    // Mallory never joined, yet B signs a message from her.
    let forged = forge(
        &b,
        json!({
            "room_id": room, "sender": mallory, "type": "m.room.message",
            "content": {"body": "spam", "msgtype": "m.text"},
            "prev_events": heads, "auth_events": [create, pl], "depth": depth + 1,
        }),
    );
    let rules = rules_for(&DEFAULT_ROOM_VERSION).expect("rules");
    let incoming = verify_pdu(&rules, &room, &forged).expect("well signed");
    let id = incoming.event_id.clone();
    let out = a
        .rooms
        .ingest(&room, None, vec![incoming], false)
        .await
        .expect("ingest");
    assert!(
        matches!(out[0].1, Ingested::Rejected(Rejection::Auth(_))),
        "{out:?}"
    );
    assert!(!timeline(&a, &room).contains(&id));
    assert!(a.rooms.get_visible_pdu(&id).expect("read").is_none());
    let (_, stored) = a.rooms.get_pdu(&id).expect("read").expect("kept");
    assert_eq!(stored.status, EventStatus::Rejected);

    // A message from a user of A, signed by B (a server speaking for someone else's user).
    let impostor = forge(
        &b,
        json!({
            "room_id": room, "sender": alice, "type": "m.room.message",
            "content": {"body": "not alice", "msgtype": "m.text"},
            "prev_events": heads, "auth_events": [create, pl], "depth": depth + 1,
        }),
    );
    assert!(
        verify_pdu(&rules, &room, &impostor).is_err(),
        "the sender's server must sign"
    );
}

#[tokio::test]
async fn an_event_the_current_state_forbids_is_soft_failed() {
    let (a, b, room, alice, bob) = shared_room().await;
    // Alice bans bob on A; before B learns of it, bob sends a message on B.
    let ban = append(
        &a,
        &room,
        &alice,
        "m.room.member",
        Some(bob.as_str()),
        json!({"membership": "ban"}),
    )
    .await;
    let msg = append(
        &b,
        &room,
        &bob,
        "m.room.message",
        None,
        json!({"body": "still here", "msgtype": "m.text"}),
    )
    .await;
    assert_eq!(
        deliver(&b, &a, &room, std::slice::from_ref(&msg)).await,
        vec![Ingested::SoftFailed]
    );
    assert!(!timeline(&a, &room).contains(&msg));
    assert!(a.rooms.get_visible_pdu(&msg).expect("read").is_none());
    // The ban reaches B: bob is banned there too.
    assert_eq!(
        deliver(&a, &b, &room, &[ban]).await,
        vec![Ingested::Accepted]
    );
    assert_eq!(
        b.rooms.membership(&room, &bob).expect("m").as_deref(),
        Some("ban")
    );
    assert_eq!(state(&a, &room), state(&b, &room));
}

#[tokio::test]
async fn missing_parents_are_reported_then_accepted_in_order() {
    let (a, b, room, alice, _bob) = shared_room().await;
    let m1 = append(
        &a,
        &room,
        &alice,
        "m.room.message",
        None,
        json!({"body": "1", "msgtype": "m.text"}),
    )
    .await;
    let m2 = append(
        &a,
        &room,
        &alice,
        "m.room.message",
        None,
        json!({"body": "2", "msgtype": "m.text"}),
    )
    .await;
    assert_eq!(
        deliver(&a, &b, &room, std::slice::from_ref(&m2)).await,
        vec![Ingested::Missing(vec![m1.clone()])]
    );
    assert!(!timeline(&b, &room).contains(&m2));
    // Both together, newest first: the batch is ordered by depth.
    assert_eq!(
        deliver(&a, &b, &room, &[m2.clone(), m1.clone()]).await,
        vec![Ingested::Accepted, Ingested::Accepted]
    );
    let tl = timeline(&b, &room);
    let (i1, i2) = (
        tl.iter().position(|x| *x == m1).expect("m1"),
        tl.iter().position(|x| *x == m2).expect("m2"),
    );
    assert!(i1 < i2);
    assert_eq!(
        deliver(&a, &b, &room, &[m1]).await,
        vec![Ingested::Duplicate]
    );
}

mod fuzz {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::super::verify_pdu;
    use crate::service::rooms::{rules_for, DEFAULT_ROOM_VERSION};

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z$!@:._]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("type".to_owned()),
                        Just("content".to_owned()),
                        Just("sender".to_owned()),
                        Just("room_id".to_owned()),
                        Just("state_key".to_owned()),
                        Just("prev_events".to_owned()),
                        Just("auth_events".to_owned()),
                        Just("signatures".to_owned()),
                        Just("hashes".to_owned()),
                        Just("depth".to_owned()),
                        "[a-z]{1,6}",
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        /// Whatever another gateway sends as a PDU: refused or verified, never a panic.
        #[test]
        fn any_json_is_refused_or_verified(mut v in value(), room in any::<bool>()) {
            if room {
                if let Value::Object(m) = &mut v {
                    m.insert("room_id".into(), json!("!r:example.org"));
                }
            }
            let rules = rules_for(&DEFAULT_ROOM_VERSION).expect("rules");
            let room_id = ruma::RoomId::parse("!r:example.org").expect("room");
            let raw = serde_json::value::to_raw_value(&v).expect("raw");
            let _ = verify_pdu(&rules, &room_id, &raw);
        }
    }
}
