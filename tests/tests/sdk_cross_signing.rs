//! matrix-sdk: cross-signing bootstrap (first upload without UIA, replacement with password
//! UIA), cross-signed devices seen by another user, and key backup creation.

mod common;

use common::{login, register, sync_once};
use matrix_sdk::ruma::api::client::uiaa::{
    AuthData, MatrixUserIdentifier, Password, UserIdentifier,
};
use mixgate_tests::{within, TestGateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_signing_and_backup() {
    let gw = TestGateway::start().await;
    let url = gw.url();
    let alice = register(&url, "alice", "alice-password").await;
    let bob = register(&url, "bob", "bob-password").await;
    sync_once(&alice, 0).await;
    sync_once(&bob, 0).await;

    // First upload: no UIA needed (MSC3967).
    within(
        20,
        "bootstrap",
        alice.encryption().bootstrap_cross_signing(None),
    )
    .await
    .expect("bootstrap cross-signing without UIA");
    let status = alice
        .encryption()
        .cross_signing_status()
        .await
        .expect("status");
    assert!(
        status.has_master && status.has_self_signing && status.has_user_signing,
        "{status:?}"
    );
    sync_once(&alice, 0).await;

    // Bob sees Alice's identity and her cross-signed device.
    sync_once(&bob, 0).await;
    let alice_id = alice.user_id().unwrap().to_owned();
    let identity = within(
        20,
        "identity",
        bob.encryption().request_user_identity(&alice_id),
    )
    .await
    .expect("request identity")
    .expect("alice has an identity");
    let _ = identity;
    let dev = bob
        .encryption()
        .get_device(&alice_id, alice.device_id().unwrap())
        .await
        .expect("get device")
        .expect("alice's device known");
    assert!(
        dev.is_cross_signed_by_owner(),
        "alice's device should be signed by her SSK"
    );

    // Resetting replaces the keys: UIA required, then the password is accepted.
    let handle = alice
        .encryption()
        .reset_cross_signing()
        .await
        .expect("reset")
        .expect("the server asks for UIA");
    let session = match handle.auth_type() {
        matrix_sdk::encryption::CrossSigningResetAuthType::Uiaa(info) => info.session.clone(),
        other => panic!("expected UIA, got {other:?}"),
    };
    let mut password = Password::new(
        UserIdentifier::Matrix(MatrixUserIdentifier::new("alice".to_owned())),
        "alice-password".to_owned(),
    );
    password.session = session;
    within(
        20,
        "reset auth",
        handle.auth(Some(AuthData::Password(password))),
    )
    .await
    .expect("reset with password");

    // A second device of Alice logs in and sees the identity.
    let alice2 = login(&url, "alice", "alice-password").await;
    sync_once(&alice2, 0).await;
    let own = alice2
        .encryption()
        .request_user_identity(&alice_id)
        .await
        .expect("identity")
        .expect("some");
    let _ = own;

    // Backups.
    assert!(!alice
        .encryption()
        .backups()
        .fetch_exists_on_server()
        .await
        .expect("exists"));
    within(20, "backup create", alice.encryption().backups().create())
        .await
        .expect("create backup");
    assert!(alice
        .encryption()
        .backups()
        .fetch_exists_on_server()
        .await
        .expect("exists"));

    // Room keys of an encrypted room are backed up.
    let mut request = matrix_sdk::ruma::api::client::room::create_room::v3::Request::new();
    request.initial_state = vec![matrix_sdk::ruma::events::InitialStateEvent::with_empty_state_key(
        matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent::with_recommended_defaults(),
    )
    .to_raw_any()];
    let room = within(20, "createRoom", alice.create_room(request))
        .await
        .expect("room");
    sync_once(&alice, 0).await;
    within(
        30,
        "send",
        room.send(
            matrix_sdk::ruma::events::room::message::RoomMessageEventContent::text_plain("hi"),
        ),
    )
    .await
    .expect("send");
    within(
        30,
        "backup steady",
        alice.encryption().backups().wait_for_steady_state(),
    )
    .await
    .expect("backup upload");
    let http = gw.http().with_token(alice.access_token().expect("token"));
    let info = http
        .get("/_matrix/client/v3/room_keys/version")
        .await
        .unwrap()
        .ok();
    assert!(info["count"].as_u64().unwrap_or(0) >= 1, "{info}");
}
