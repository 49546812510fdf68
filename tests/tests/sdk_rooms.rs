//! matrix-sdk end to end: two users register, log in, create a room, invite, join, chat, page
//! back with /messages, edit (m.replace) and redact.

mod common;

use std::time::Duration;

use common::{json_of, register, sync_once, wait_room, Inbox};
use matrix_sdk::{
    room::MessagesOptions,
    ruma::{
        api::client::room::create_room::v3 as create_room,
        events::room::{message::RoomMessageEventContent, redaction::SyncRoomRedactionEvent},
        uint,
    },
    Client, Room, RoomMemberships, RoomState,
};
use mixgate_tests::{within, TestGateway};
use serde_json::json;
use tokio::sync::mpsc;

/// Alice creates a private room and invites Bob, who joins; returns both clients and rooms.
async fn two_users_in_room(gw: &TestGateway) -> (Client, Client, Room, Room) {
    let url = gw.url();
    let alice = register(&url, "alice", "alice-password").await;
    let bob = register(&url, "bob", "bob-password").await;
    let mut request = create_room::Request::new();
    request.name = Some("Tea".to_owned());
    request.preset = Some(create_room::RoomPreset::PrivateChat);
    let alice_room = within(20, "createRoom", alice.create_room(request))
        .await
        .expect("createRoom");
    let bob_id = bob.user_id().expect("bob's id").to_owned();
    within(20, "invite", alice_room.invite_user_by_id(&bob_id))
        .await
        .expect("invite");
    let invited = wait_room(&bob, alice_room.room_id(), 20).await;
    assert_eq!(
        invited.state(),
        RoomState::Invited,
        "bob should see an invite first"
    );
    within(20, "join", invited.join()).await.expect("join");
    let bob_room = bob.get_room(alice_room.room_id()).expect("room after join");
    sync_once(&bob, 0).await;
    assert_eq!(bob_room.state(), RoomState::Joined);
    (alice, bob, alice_room, bob_room)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_between_two_users() {
    let gw = TestGateway::start().await;
    let (alice, bob, alice_room, bob_room) = two_users_in_room(&gw).await;
    let mut alice_inbox = Inbox::new(&alice);
    let mut bob_inbox = Inbox::new(&bob);

    let sent = within(
        20,
        "send",
        alice_room.send(RoomMessageEventContent::text_plain("hello bob")),
    )
    .await
    .expect("send");
    let seen = bob_inbox
        .wait_for(20, "alice's message", |s| s.body == "hello bob")
        .await;
    assert_eq!(seen.event_id, sent.response.event_id);
    assert_eq!(Some(&*seen.sender), alice.user_id());
    assert_eq!(seen.room_id, alice_room.room_id());

    within(
        20,
        "reply",
        bob_room.send(RoomMessageEventContent::text_plain("hi alice")),
    )
    .await
    .expect("send");
    let seen = alice_inbox
        .wait_for(20, "bob's reply", |s| s.body == "hi alice")
        .await;
    assert_eq!(Some(&*seen.sender), bob.user_id());

    // Both are joined members, as seen by either side.
    sync_once(&alice, 0).await;
    let members = within(20, "members", bob_room.members(RoomMemberships::JOIN))
        .await
        .expect("members");
    let mut ids: Vec<String> = members.iter().map(|m| m.user_id().to_string()).collect();
    ids.sort();
    let mut expected = vec![
        alice.user_id().unwrap().to_string(),
        bob.user_id().unwrap().to_string(),
    ];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(bob_room.name().as_deref(), Some("Tea"));

    // A second device of Alice (password login) sees the history too.
    let alice2 = common::login(&gw.url(), "alice", "alice-password").await;
    assert_ne!(alice2.device_id(), alice.device_id());
    sync_once(&alice2, 0).await;
    let room = alice2
        .get_room(alice_room.room_id())
        .expect("room on the second device");
    let page = room
        .messages(MessagesOptions::backward())
        .await
        .expect("messages");
    let bodies: Vec<String> = page
        .chunk
        .iter()
        .map(json_of)
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        bodies[..2],
        ["hi alice", "hello bob"],
        "newest first: {bodies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_back_through_history() {
    let gw = TestGateway::start().await;
    let (_alice, bob, alice_room, bob_room) = two_users_in_room(&gw).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let r = within(
            20,
            "send",
            alice_room.send(RoomMessageEventContent::text_plain(format!("msg {i}"))),
        )
        .await
        .expect("send");
        ids.push(r.response.event_id);
    }
    sync_once(&bob, 0).await;
    // Page back from the newest event with limit 7 until the room's start.
    let mut from: Option<String> = None;
    let mut seen = Vec::new();
    let mut saw_create = false;
    for _ in 0..50 {
        let mut options = MessagesOptions::backward();
        options.limit = uint!(7);
        options.from = from.clone();
        let page = within(20, "messages", bob_room.messages(options))
            .await
            .expect("messages");
        assert!(page.chunk.len() <= 7, "limit ignored: {}", page.chunk.len());
        for ev in &page.chunk {
            let j = json_of(ev);
            if j["type"] == "m.room.create" {
                saw_create = true;
            }
            if j["type"] == "m.room.message" {
                seen.push(ev.event_id().expect("event_id"));
            }
        }
        match page.end {
            Some(end) if !page.chunk.is_empty() => from = Some(end),
            _ => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "every message once, newest first");
    assert!(saw_create, "paging back reaches m.room.create");

    // Forward pagination from the start returns the same messages oldest first.
    let mut options = MessagesOptions::forward();
    options.limit = uint!(100);
    let page = bob_room.messages(options).await.expect("messages forward");
    let forward: Vec<_> = page
        .chunk
        .iter()
        .filter(|e| json_of(e)["type"] == "m.room.message")
        .map(|e| e.event_id().unwrap())
        .collect();
    ids.reverse();
    assert_eq!(forward, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_and_redact() {
    let gw = TestGateway::start().await;
    let (_alice, bob, alice_room, bob_room) = two_users_in_room(&gw).await;
    let mut bob_inbox = Inbox::new(&bob);
    let (redact_tx, mut redact_rx) = mpsc::unbounded_channel();
    bob.add_event_handler(move |ev: SyncRoomRedactionEvent| {
        let tx = redact_tx.clone();
        async move {
            let _ = tx.send(ev);
        }
    });

    let original = alice_room
        .send(RoomMessageEventContent::text_plain("helo wrld"))
        .await
        .expect("send")
        .response
        .event_id;
    let edit = json!({
        "msgtype": "m.text",
        "body": "* hello world",
        "m.new_content": { "msgtype": "m.text", "body": "hello world" },
        "m.relates_to": { "rel_type": "m.replace", "event_id": original },
    });
    let edit_id = alice_room
        .send_raw("m.room.message", edit)
        .await
        .expect("send edit")
        .response
        .event_id;
    let seen = bob_inbox
        .wait_for(20, "the edit", |s| s.event_id == edit_id)
        .await;
    assert_eq!(seen.content["m.relates_to"]["rel_type"], "m.replace");
    assert_eq!(seen.content["m.relates_to"]["event_id"], original.as_str());
    assert_eq!(seen.content["m.new_content"]["body"], "hello world");

    // Redact the original; Bob sees the redaction and the event comes back stripped.
    within(
        20,
        "redact",
        alice_room.redact(&original, Some("typo"), None),
    )
    .await
    .expect("redact");
    let redaction = within(20, "redaction in sync", async {
        loop {
            if let Ok(ev) = redact_rx.try_recv() {
                return ev;
            }
            sync_once(&bob, 1000).await;
        }
    })
    .await;
    let redacts = match &redaction {
        SyncRoomRedactionEvent::Original(ev) => ev.redacts.clone().or(ev.content.redacts.clone()),
        SyncRoomRedactionEvent::Redacted(_) => None,
    };
    assert_eq!(redacts.as_ref(), Some(&original));

    let fetched = within(20, "/event", bob_room.event(&original, None))
        .await
        .expect("fetch redacted event");
    let j = json_of(&fetched);
    assert_eq!(j["content"], json!({}), "redacted content is emptied: {j}");
    assert!(
        j["unsigned"]["redacted_because"].is_object(),
        "redacted_because missing: {j}"
    );
    // The redacted event is still in the history, stripped, and no copy keeps the text.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let page = bob_room
        .messages(MessagesOptions::backward())
        .await
        .expect("messages");
    for ev in &page.chunk {
        let j = json_of(ev);
        if ev.event_id().as_ref() == Some(&original) {
            assert_eq!(j["content"], json!({}), "{j}");
        }
        assert!(
            !j.to_string().contains("helo wrld"),
            "leaked redacted text: {j}"
        );
    }
}
