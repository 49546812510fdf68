//! matrix-sdk end to end, encrypted: a room created with `m.room.encryption` in its initial
//! state; each user's client decrypts the other's messages. This exercises keys upload, query
//! and claim, to-device delivery and device lists in /sync.

mod common;

use common::{register, sync_once, wait_room, Inbox};
use matrix_sdk::{
    ruma::{
        api::client::room::create_room::v3 as create_room,
        events::{
            room::{encryption::RoomEncryptionEventContent, message::RoomMessageEventContent},
            InitialStateEvent,
        },
    },
    Client,
};
use mixgate_tests::{http::enc, within, TestGateway};
use serde_json::json;

/// Raw views of what the gateway holds for E2EE, printed when decryption fails.
async fn diagnose(gw: &TestGateway, alice: &Client, bob: &Client, room: &str) -> String {
    let a = gw.http().with_token(alice.access_token().unwrap());
    let b = gw.http().with_token(bob.access_token().unwrap());
    let bob_id = bob.user_id().unwrap().to_string();
    let mut out = String::new();
    let query = a
        .post(
            "/_matrix/client/v3/keys/query",
            &json!({ "device_keys": { &bob_id: [] } }),
        )
        .await
        .map(|r| format!("{} {}", r.status, r.body));
    out.push_str(&format!("alice POST /keys/query bob: {query:?}\n"));
    let members = a
        .get(&format!("/_matrix/client/v3/rooms/{}/members", enc(room)))
        .await
        .map(|r| format!("{} {}", r.status, r.body));
    out.push_str(&format!("alice GET /members: {members:?}\n"));
    let sync = b.sync(None, 0, None).await.map(|r| {
        json!({
            "status": r.status,
            "to_device": r.body["to_device"],
            "device_lists": r.body["device_lists"],
            "device_one_time_keys_count": r.body["device_one_time_keys_count"],
            "device_unused_fallback_key_types": r.body["device_unused_fallback_key_types"],
            "timeline": r.body["rooms"]["join"][room]["timeline"]["events"],
        })
    });
    out.push_str(&format!("bob GET /sync (initial): {sync:?}\n"));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_room_both_ways() {
    let gw = TestGateway::start().await;
    let url = gw.url();
    let alice = register(&url, "alice", "alice-password").await;
    let bob = register(&url, "bob", "bob-password").await;
    // First syncs upload device keys and one-time keys.
    sync_once(&alice, 0).await;
    sync_once(&bob, 0).await;

    let mut request = create_room::Request::new();
    request.preset = Some(create_room::RoomPreset::PrivateChat);
    request.invite = vec![bob.user_id().unwrap().to_owned()];
    request.initial_state = vec![InitialStateEvent::with_empty_state_key(
        RoomEncryptionEventContent::with_recommended_defaults(),
    )
    .to_raw_any()];
    let alice_room = within(20, "createRoom", alice.create_room(request))
        .await
        .expect("createRoom");
    let invited = wait_room(&bob, alice_room.room_id(), 20).await;
    within(20, "join", invited.join()).await.expect("join");
    sync_once(&bob, 0).await;
    sync_once(&alice, 0).await;
    let bob_room = bob.get_room(alice_room.room_id()).expect("bob's room");
    assert!(
        alice_room
            .latest_encryption_state()
            .await
            .expect("encryption state")
            .is_encrypted(),
        "the room should be encrypted from its initial state"
    );

    let mut alice_inbox = Inbox::new(&alice);
    let mut bob_inbox = Inbox::new(&bob);

    let sent = within(
        60,
        "encrypted send",
        alice_room.send(RoomMessageEventContent::text_plain("secret from alice")),
    )
    .await
    .expect("send encrypted");
    let Some(seen) = bob_inbox
        .try_wait_for(30, |s| s.body == "secret from alice")
        .await
    else {
        let report = diagnose(&gw, &alice, &bob, alice_room.room_id().as_str()).await;
        panic!("Bob never decrypted Alice's message. What the gateway says:\n{report}");
    };
    assert_eq!(seen.event_id, sent.response.event_id);

    within(
        60,
        "encrypted reply",
        bob_room.send(RoomMessageEventContent::text_plain("secret from bob")),
    )
    .await
    .expect("send encrypted reply");
    alice_inbox
        .wait_for(30, "bob's decrypted reply", |s| s.body == "secret from bob")
        .await;

    // On the wire (and on the gateway) the events are m.room.encrypted, never plaintext.
    let token = bob.access_token().expect("token");
    let http = gw.http().with_token(token);
    let page = http
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=20",
            enc(alice_room.room_id().as_str())
        ))
        .await
        .unwrap()
        .ok();
    let text = page.to_string();
    assert!(
        !text.contains("secret from"),
        "plaintext on the server: {text}"
    );
    let encrypted = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.encrypted")
        .count();
    assert!(
        encrypted >= 2,
        "expected two m.room.encrypted events: {page}"
    );
}
