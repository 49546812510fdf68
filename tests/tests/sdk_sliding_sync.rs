//! matrix-sdk's sliding sync (MSC4186, what Element X uses) against the real gateway: Bob's
//! client syncs only through sliding sync with the extensions Element X enables. He sees
//! Alice's invite to an encrypted room, joins, decrypts her message (the room key reaches him
//! through the to-device extension, her device keys through the e2ee extension) and answers;
//! Alice, on `/v3/sync`, decrypts the answer.

mod common;

use std::time::{Duration, Instant};

use common::{register, sync_once, Inbox};
use futures::{pin_mut, StreamExt};
use matrix_sdk::{
    ruma::{
        api::client::room::create_room::v3 as create_room,
        events::{
            room::{
                encryption::RoomEncryptionEventContent,
                message::{OriginalSyncRoomMessageEvent, RoomMessageEventContent},
            },
            InitialStateEvent, StateEventType,
        },
    },
    sliding_sync::{SlidingSyncList, SlidingSyncMode, Version},
    Room,
};
use mixgate_tests::{within, TestGateway};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_sync_client_joins_and_decrypts() {
    let gw = TestGateway::start().await;
    let url = gw.url();
    let alice = register(&url, "alice", "alice-password").await;
    let bob = register(&url, "bob", "bob-password").await;
    sync_once(&alice, 0).await;

    // Bob: sliding sync only, configured like Element X's room list plus its encryption sync.
    let list = SlidingSyncList::builder("all_rooms")
        .sync_mode(SlidingSyncMode::new_growing(20))
        .timeline_limit(10)
        .required_state(vec![
            (StateEventType::RoomEncryption, String::new()),
            (StateEventType::RoomName, String::new()),
            (StateEventType::RoomCreate, String::new()),
            (StateEventType::RoomPowerLevels, String::new()),
            (StateEventType::RoomMember, "$LAZY".to_owned()),
            (StateEventType::RoomMember, "$ME".to_owned()),
        ]);
    let sliding = bob
        .sliding_sync("main")
        .expect("sliding sync builder")
        .version(Version::Native)
        .with_all_extensions()
        .poll_timeout(Duration::from_secs(2))
        .add_list(list)
        .build()
        .await
        .expect("sliding sync");
    let (tx, mut bob_seen) = mpsc::unbounded_channel::<(String, String)>();
    bob.add_event_handler(move |ev: OriginalSyncRoomMessageEvent, room: Room| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((room.room_id().to_string(), ev.content.body().to_owned()));
        }
    });
    let driver = {
        let sliding = sliding.clone();
        tokio::spawn(async move {
            let stream = sliding.sync();
            pin_mut!(stream);
            while let Some(update) = stream.next().await {
                if let Err(e) = update {
                    panic!("sliding sync failed: {e:?}");
                }
            }
        })
    };

    let mut request = create_room::Request::new();
    request.preset = Some(create_room::RoomPreset::PrivateChat);
    request.name = Some("over sliding sync".to_owned());
    request.invite = vec![bob.user_id().unwrap().to_owned()];
    request.initial_state = vec![InitialStateEvent::with_empty_state_key(
        RoomEncryptionEventContent::with_recommended_defaults(),
    )
    .to_raw_any()];
    let alice_room = within(20, "createRoom", alice.create_room(request))
        .await
        .expect("createRoom");
    let room_id = alice_room.room_id().to_owned();

    // The invite arrives through the list.
    let deadline = Instant::now() + Duration::from_secs(30);
    let invited = loop {
        if let Some(r) = bob.get_room(&room_id) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the invite never arrived over sliding sync"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    within(20, "join", invited.join()).await.expect("join");
    // The joined room comes back with its name and encryption state.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = bob.get_room(&room_id).expect("room");
        let named = r.name().as_deref() == Some("over sliding sync");
        let encrypted = r
            .latest_encryption_state()
            .await
            .is_ok_and(|s| s.is_encrypted());
        if named && encrypted && r.state() == matrix_sdk::RoomState::Joined {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "joined room never complete: name {:?}, state {:?}",
            r.name(),
            r.state()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Alice learns of Bob's join and device, then sends an encrypted message.
    sync_once(&alice, 0).await;
    within(
        60,
        "encrypted send",
        alice_room.send(RoomMessageEventContent::text_plain(
            "secret over sliding sync",
        )),
    )
    .await
    .expect("send");
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(500), bob_seen.recv()).await {
            Ok(Some(m)) => {
                if m.1 == "secret over sliding sync" {
                    assert_eq!(m.0, room_id.as_str());
                    break;
                }
                seen.push(m);
            }
            Ok(None) => panic!("event handler dropped"),
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "Bob never decrypted Alice's message over sliding sync; saw {seen:?}"
        );
    }

    // Bob answers; Alice (on /v3/sync) decrypts it.
    let mut alice_inbox = Inbox::new(&alice);
    let bob_room = bob.get_room(&room_id).expect("bob's room");
    within(
        60,
        "encrypted reply",
        bob_room.send(RoomMessageEventContent::text_plain("answer from bob")),
    )
    .await
    .expect("reply");
    alice_inbox
        .wait_for(30, "Bob's decrypted answer", |s| {
            s.body == "answer from bob"
        })
        .await;
    driver.abort();
}
