//! matrix-sdk end to end, encrypted: a room created with `m.room.encryption` in its initial
//! state; each user's client decrypts the other's messages. This exercises keys upload, query
//! and claim, to-device delivery and device lists in /sync.

mod common;

use common::{register, sync_once, wait_room, Inbox};
use matrix_sdk::ruma::{
    api::client::room::create_room::v3 as create_room,
    events::{
        room::{encryption::RoomEncryptionEventContent, message::RoomMessageEventContent},
        InitialStateEvent,
    },
};
use mixgate_tests::{http::enc, within, TestGateway};

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
    let seen = bob_inbox
        .wait_for(30, "alice's decrypted message", |s| {
            s.body == "secret from alice"
        })
        .await;
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
