//! matrix-sdk clients on different gateways of one `mixgate up` network (a real loopback
//! mixnet): invite, join and chat both ways; an encrypted room decrypted across gateways; a
//! third gateway's user joining a public room and leaving; a gateway killed with SIGKILL
//! during sends that, restarted, shows every message once and in order.
//!
//! Each starts its own network (`TestNetwork`, the user's `mixgate up` command as a process)
//! and takes 10–30 s on 2 cores; nextest runs them in the `heavy` group, one at a time.

mod common;

use common::{json_of, login, register, sync_once, wait_room, Inbox};
use matrix_sdk::{
    media::{MediaFormat, MediaRequestParameters},
    room::MessagesOptions,
    ruma::{
        api::client::room::{create_room::v3 as create_room, Visibility},
        events::{
            room::{
                encryption::RoomEncryptionEventContent, member::MembershipState,
                message::RoomMessageEventContent, MediaSource,
            },
            InitialStateEvent,
        },
        EventId, OwnedServerName, RoomOrAliasId, UserId,
    },
    Client, Room, RoomState,
};
use mixgate_tests::{http::enc, network_table, within, Http, Options, TestGateway, TestNetwork};

/// How long one hop between gateways may take before a test gives up (the local network
/// delivers in about a quarter of a second; this only guards against hangs).
const CROSS: u64 = 60;

/// The user ID `name` gets on the gateway whose server name is `server`.
fn user_on(name: &str, server: &str) -> matrix_sdk::ruma::OwnedUserId {
    UserId::parse(format!("@{name}:{server}")).expect("user id")
}

/// Alice (first client) creates a room with `request`, invites `bob`, who sees the invite
/// through his own gateway and joins; returns both views of the room.
async fn invite_and_join(
    alice: &Client,
    bob: &Client,
    mut request: create_room::Request,
) -> (Room, Room) {
    request.invite = vec![bob.user_id().expect("bob's id").to_owned()];
    let alice_room = within(20, "createRoom", alice.create_room(request))
        .await
        .expect("createRoom");
    let invited = wait_room(bob, alice_room.room_id(), CROSS).await;
    assert_eq!(invited.state(), RoomState::Invited, "bob sees an invite");
    within(CROSS, "join across gateways", invited.join())
        .await
        .expect("join");
    sync_once(bob, 0).await;
    let bob_room = bob.get_room(alice_room.room_id()).expect("bob's room");
    assert_eq!(bob_room.state(), RoomState::Joined);
    (alice_room, bob_room)
}

/// Syncs `client` (to-device room keys included) and fetches `event` until it decrypts to a
/// message with `body` (bounded).
async fn wait_decrypted(client: &Client, room: &Room, event: &EventId, body: &str) {
    for _ in 0..CROSS {
        sync_once(client, 1000).await;
        if let Ok(ev) = room.event(event, None).await {
            if json_of(&ev)["content"]["body"] == body {
                return;
            }
        }
    }
    panic!(
        "{event} never decrypted to {body:?} for {:?}",
        client.user_id()
    );
}

/// Syncs `client` until `user` has `membership` in `room` (bounded).
async fn wait_membership(client: &Client, room: &Room, user: &UserId, membership: MembershipState) {
    for _ in 0..CROSS {
        if let Ok(Some(member)) = room.get_member_no_sync(user).await {
            if *member.membership() == membership {
                return;
            }
        }
        sync_once(client, 1000).await;
    }
    panic!("{user} never reached {membership:?} in {}", room.room_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_join_and_chat_across_gateways() {
    let net = TestNetwork::start(2).await;
    let (a, b) = (&net.gateways[0], &net.gateways[1]);
    let alice = register(&a.url, "alice", "alice-password").await;
    let bob = register(&b.url, "bob", "bob-password").await;
    assert_eq!(bob.user_id(), Some(&*user_on("bob", &b.server_name)));

    let mut request = create_room::Request::new();
    request.name = Some("Across".to_owned());
    request.preset = Some(create_room::RoomPreset::PrivateChat);
    let (alice_room, bob_room) = invite_and_join(&alice, &bob, request).await;
    assert_eq!(bob_room.name().as_deref(), Some("Across"));

    let mut alice_inbox = Inbox::new(&alice);
    let mut bob_inbox = Inbox::new(&bob);
    let sent = within(
        20,
        "send",
        alice_room.send(RoomMessageEventContent::text_plain("hello from gateway A")),
    )
    .await
    .expect("send");
    let seen = bob_inbox
        .wait_for(CROSS, "alice's message", |s| {
            s.body == "hello from gateway A"
        })
        .await;
    assert_eq!(
        seen.event_id, sent.response.event_id,
        "one event, both gateways"
    );
    assert_eq!(Some(&*seen.sender), alice.user_id());

    within(
        20,
        "reply",
        bob_room.send(RoomMessageEventContent::text_plain("hello from gateway B")),
    )
    .await
    .expect("reply");
    alice_inbox
        .wait_for(CROSS, "bob's reply", |s| s.body == "hello from gateway B")
        .await;

    // A file Alice uploads on gateway A downloads on gateway B, over the mixnet in chunks.
    let file: Vec<u8> = (0..60_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let uploaded = within(
        20,
        "upload",
        alice
            .media()
            .upload(&mime::APPLICATION_OCTET_STREAM, file.clone(), None),
    )
    .await
    .expect("upload");
    let request = MediaRequestParameters {
        source: MediaSource::Plain(uploaded.content_uri),
        format: MediaFormat::File,
    };
    let fetched = within(
        CROSS,
        "remote download",
        bob.media().get_media_content(&request, false),
    )
    .await
    .expect("remote download");
    assert!(
        fetched == file,
        "the same bytes ({} of {})",
        fetched.len(),
        file.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_room_decrypts_across_gateways() {
    let net = TestNetwork::start(2).await;
    let alice = register(&net.gateways[0].url, "alice", "alice-password").await;
    let bob = register(&net.gateways[1].url, "bob", "bob-password").await;
    // First syncs upload device keys and one-time keys.
    sync_once(&alice, 0).await;
    sync_once(&bob, 0).await;

    let mut request = create_room::Request::new();
    request.preset = Some(create_room::RoomPreset::PrivateChat);
    request.initial_state = vec![InitialStateEvent::with_empty_state_key(
        RoomEncryptionEventContent::with_recommended_defaults(),
    )
    .to_raw_any()];
    let (alice_room, bob_room) = invite_and_join(&alice, &bob, request).await;
    sync_once(&alice, 0).await;

    // Keys query/claim for a remote user and the room key as a to-device message cross the
    // mixnet beside the event, in either order: each side syncs and asks for the event until
    // it decrypts (an event handler would see it only if the key came first).
    let sent = within(
        CROSS,
        "encrypted send",
        alice_room.send(RoomMessageEventContent::text_plain(
            "secret across gateways",
        )),
    )
    .await
    .expect("send encrypted");
    wait_decrypted(
        &bob,
        &bob_room,
        &sent.response.event_id,
        "secret across gateways",
    )
    .await;
    let reply = within(
        CROSS,
        "encrypted reply",
        bob_room.send(RoomMessageEventContent::text_plain("secret reply")),
    )
    .await
    .expect("send encrypted reply");
    wait_decrypted(
        &alice,
        &alice_room,
        &reply.response.event_id,
        "secret reply",
    )
    .await;

    // What Bob's gateway received over the mixnet is m.room.encrypted, never the plaintext.
    let http =
        Http::new(net.gateways[1].url.clone()).with_token(bob.access_token().expect("token"));
    let page = http
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=20",
            enc(bob_room.room_id().as_str())
        ))
        .await
        .expect("raw /messages")
        .ok();
    let text = page.to_string();
    assert!(!text.contains("secret"), "plaintext on the server: {text}");
    let encrypted = page["chunk"].as_array().map_or(0, |c| {
        c.iter().filter(|e| e["type"] == "m.room.encrypted").count()
    });
    assert!(
        encrypted >= 2,
        "expected two m.room.encrypted events: {page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_gateway_user_joins_a_public_room_and_leaves() {
    let net = TestNetwork::start(3).await;
    let (a, c) = (&net.gateways[0], &net.gateways[2]);
    let alice = register(&a.url, "alice", "alice-password").await;
    let carol = register(&c.url, "carol", "carol-password").await;

    let mut request = create_room::Request::new();
    request.name = Some("Town square".to_owned());
    request.preset = Some(create_room::RoomPreset::PublicChat);
    request.visibility = Visibility::Public;
    request.room_alias_name = Some("square".to_owned());
    let alice_room = within(20, "createRoom", alice.create_room(request))
        .await
        .expect("createRoom");
    // History from before any other gateway was in the room.
    let history: Vec<String> = (0..30).map(|i| format!("before carol {i}")).collect();
    for text in &history {
        within(
            20,
            "send",
            alice_room.send(RoomMessageEventContent::text_plain(text)),
        )
        .await
        .expect("send");
    }

    // Carol joins by the alias on Alice's gateway, through her own gateway.
    let alias = RoomOrAliasId::parse(format!("#square:{}", a.server_name)).expect("alias");
    let via: OwnedServerName = a.server_name.as_str().try_into().expect("server name");
    let target: &RoomOrAliasId = &alias;
    let carol_room = within(
        CROSS,
        "join by alias",
        carol.join_room_by_id_or_alias(target, &[via]),
    )
    .await
    .expect("join by alias");
    assert_eq!(carol_room.room_id(), alice_room.room_id());
    let carol_id = carol.user_id().expect("carol's id").to_owned();
    wait_membership(&alice, &alice_room, &carol_id, MembershipState::Join).await;

    // Carol pages back past her join: her gateway fetches the history from Alice's over the
    // mixnet (shared history visibility: all of it).
    let mut from: Option<String> = None;
    let mut seen = Vec::new();
    for _ in 0..40 {
        let mut options = MessagesOptions::backward();
        options.limit = matrix_sdk::ruma::uint!(10);
        options.from = from.clone();
        let page = within(CROSS, "messages", carol_room.messages(options))
            .await
            .expect("messages");
        for ev in &page.chunk {
            let j = json_of(ev);
            if j["type"] == "m.room.message" {
                seen.push(j["content"]["body"].as_str().unwrap_or("?").to_owned());
            }
        }
        match page.end {
            Some(end) if !page.chunk.is_empty() => from = Some(end),
            _ => break,
        }
    }
    seen.reverse();
    assert_eq!(seen, history, "the room's history, once, in order");

    let mut alice_inbox = Inbox::new(&alice);
    within(
        20,
        "send",
        carol_room.send(RoomMessageEventContent::text_plain(
            "hi from the third gateway",
        )),
    )
    .await
    .expect("send");
    alice_inbox
        .wait_for(CROSS, "carol's message", |s| {
            s.body == "hi from the third gateway"
        })
        .await;

    within(CROSS, "leave", carol_room.leave())
        .await
        .expect("leave");
    wait_membership(&alice, &alice_room, &carol_id, MembershipState::Leave).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_during_sends_gets_every_message_once_in_order() {
    // Alice's gateway runs inside `mixgate up`; Bob's is a process of its own, so it can be
    // killed while the network goes on.
    let net = TestNetwork::start(1).await;
    let mut bob_gw = TestGateway::start_with(Options {
        config: format!(
            "auth_attempts_per_minute = 10000\n{}",
            network_table(&net.network_file)
        ),
        ..Options::default()
    })
    .await;
    let alice = register(&net.gateways[0].url, "alice", "alice-password").await;
    let bob = register(&bob_gw.url(), "bob", "bob-password").await;
    let mut request = create_room::Request::new();
    request.preset = Some(create_room::RoomPreset::PrivateChat);
    let (alice_room, _) = invite_and_join(&alice, &bob, request).await;

    const COUNT: usize = 20;
    let mut sent = Vec::with_capacity(COUNT);
    for i in 0..COUNT {
        if i == COUNT / 4 {
            // SIGKILL: no flush, no goodbye; Alice keeps sending.
            bob_gw.kill9();
        }
        let r = within(
            20,
            "send",
            alice_room.send(RoomMessageEventContent::text_plain(format!("m{i}"))),
        )
        .await
        .expect("send");
        sent.push(r.response.event_id);
    }
    bob_gw.restart().await;

    // A fresh login (the old client's base URL may have changed with the port).
    let bob = login(&bob_gw.url(), "bob", "bob-password").await;
    let mut bob_inbox = Inbox::new(&bob);
    let last = format!("m{}", COUNT - 1);
    bob_inbox
        .wait_for(CROSS * 2, "the last message", |s| s.body == last)
        .await;
    let bob_room = bob.get_room(alice_room.room_id()).expect("bob's room");

    // Every message once, in the order Alice sent them.
    let mut ids = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..20 {
        let mut options = MessagesOptions::backward();
        options.from = from.clone();
        let page = within(20, "messages", bob_room.messages(options))
            .await
            .expect("messages");
        for ev in &page.chunk {
            if json_of(ev)["type"] == "m.room.message" {
                ids.push(ev.event_id().expect("event_id"));
            }
        }
        match page.end {
            Some(end) if !page.chunk.is_empty() => from = Some(end),
            _ => break,
        }
    }
    ids.reverse();
    assert_eq!(ids, sent, "each message once, in send order");
}
