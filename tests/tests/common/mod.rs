//! matrix-sdk helpers shared by the end-to-end test files (in-memory stores, loopback).

#![allow(dead_code)]

use std::time::{Duration, Instant};

use matrix_sdk::{
    config::{RequestConfig, SyncSettings},
    ruma::{
        api::client::{
            account::register::v3 as register,
            uiaa::{AuthData, Dummy},
        },
        events::room::message::OriginalSyncRoomMessageEvent,
        OwnedEventId, OwnedRoomId, OwnedUserId,
    },
    Client, Room,
};
use serde_json::Value;
use tokio::sync::mpsc;

/// A client for `url` with in-memory stores and short retries (a test should fail fast).
pub async fn client(url: &str) -> Client {
    Client::builder()
        .homeserver_url(url)
        .request_config(RequestConfig::short_retry().timeout(Duration::from_secs(30)))
        .build()
        .await
        .expect("build client")
}

/// Registers `name` through matrix-sdk, doing the UIA dance with `m.login.dummy`, and returns a
/// logged-in client.
pub async fn register(url: &str, name: &str, password: &str) -> Client {
    let client = client(url).await;
    let mut request = register::Request::new();
    request.username = Some(name.to_owned());
    request.password = Some(password.to_owned());
    request.initial_device_display_name = Some(format!("{name}'s test device"));
    match client.matrix_auth().register(request.clone()).await {
        Ok(_) => panic!("registration without UIA succeeded: the spec requires a 401 first"),
        Err(e) => {
            let info = e
                .as_uiaa_response()
                .unwrap_or_else(|| panic!("expected a UIA challenge, got {e:?}"));
            assert!(
                info.flows
                    .iter()
                    .any(|f| f.stages.iter().any(|s| s.as_str() == "m.login.dummy")),
                "no m.login.dummy flow in {info:?}"
            );
            let mut dummy = Dummy::new();
            dummy.session = info.session.clone();
            request.auth = Some(AuthData::Dummy(dummy));
            client
                .matrix_auth()
                .register(request)
                .await
                .expect("register with m.login.dummy");
        }
    }
    assert!(
        client.is_active(),
        "client has no session after registering"
    );
    client
}

/// Logs `name` in with a password on a new client (a new device).
pub async fn login(url: &str, name: &str, password: &str) -> Client {
    let client = client(url).await;
    client
        .matrix_auth()
        .login_username(name, password)
        .initial_device_display_name("test login")
        .await
        .expect("login");
    client
}

/// One `m.room.message` seen by a client's sync (decrypted when it was encrypted).
#[derive(Debug, Clone)]
pub struct Seen {
    /// The room.
    pub room_id: OwnedRoomId,
    /// The event.
    pub event_id: OwnedEventId,
    /// The sender.
    pub sender: OwnedUserId,
    /// `content.body`.
    pub body: String,
    /// The whole content as JSON.
    pub content: Value,
}

/// Messages collected by an event handler on a client.
pub struct Inbox {
    client: Client,
    rx: mpsc::UnboundedReceiver<Seen>,
    /// Everything received so far.
    pub seen: Vec<Seen>,
}

impl Inbox {
    /// Installs an `m.room.message` handler on `client`.
    pub fn new(client: &Client) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        client.add_event_handler(move |ev: OriginalSyncRoomMessageEvent, room: Room| {
            let tx = tx.clone();
            async move {
                let content = serde_json::to_value(&ev.content).unwrap_or(Value::Null);
                let _ = tx.send(Seen {
                    room_id: room.room_id().to_owned(),
                    event_id: ev.event_id.clone(),
                    sender: ev.sender.clone(),
                    body: ev.content.body().to_owned(),
                    content,
                });
            }
        });
        Self {
            client: client.clone(),
            rx,
            seen: Vec::new(),
        }
    }

    /// Syncs (short long-polls) until a seen message matches `pred`, or `secs` pass.
    pub async fn wait_for(&mut self, secs: u64, what: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        match self.try_wait_for(secs, pred).await {
            Some(s) => s,
            None => panic!(
                "timed out after {secs}s waiting for {what}; seen: {:#?}",
                self.seen
            ),
        }
    }

    /// Like [`wait_for`](Self::wait_for), but returns `None` on timeout.
    pub async fn try_wait_for(&mut self, secs: u64, pred: impl Fn(&Seen) -> bool) -> Option<Seen> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            while let Ok(s) = self.rx.try_recv() {
                self.seen.push(s);
            }
            if let Some(s) = self.seen.iter().find(|s| pred(s)) {
                return Some(s.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            sync_once(&self.client, 1000).await;
        }
    }
}

/// One sync with a long-poll timeout, panicking on error.
pub async fn sync_once(client: &Client, timeout_ms: u64) {
    let settings = SyncSettings::default().timeout(Duration::from_millis(timeout_ms));
    match tokio::time::timeout(
        Duration::from_millis(timeout_ms) + Duration::from_secs(30),
        client.sync_once(settings),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!("sync failed: {e:?}"),
        Err(_) => panic!("sync did not return 30 s after its timeout"),
    }
}

/// Syncs until `client` knows `room_id` (as joined or invited), or `secs` pass.
pub async fn wait_room(client: &Client, room_id: &matrix_sdk::ruma::RoomId, secs: u64) -> Room {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(room) = client.get_room(room_id) {
            return room;
        }
        assert!(
            Instant::now() < deadline,
            "room {room_id} never appeared in sync"
        );
        sync_once(client, 1000).await;
    }
}

/// Content of a raw timeline event as JSON.
pub fn json_of(ev: &matrix_sdk::deserialized_responses::TimelineEvent) -> Value {
    ev.raw().deserialize_as::<Value>().unwrap_or(Value::Null)
}
