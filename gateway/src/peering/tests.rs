//! Several gateways in one process on the in-memory hub, driven through their CS API routers:
//! invites, joins, chat, state changes, kicks and bans, a third gateway, an offline gateway
//! catching up, and bad messages from the network.

use std::{sync::Arc, time::Duration};

use axum::{body::Body as HttpBody, Router};
use http::{Method, Request, StatusCode};
use ruma::{OwnedRoomId, OwnedUserId, ServerName, UserId};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{
    net::{memory::MemoryHub, PeerNet},
    wire::{self, Body, Envelope},
    PeeringStats,
};
use crate::{
    config::{GatewayConfig, RegistrationMode},
    service::Gateway,
    testkit::{body_bytes, enc},
};

mod backfill;
mod catchup;
mod corpus;
mod edus;
mod groupkeys;
mod media;
mod relations;
mod restricted;
mod room_delete;

struct Node {
    gw: Arc<Gateway>,
    app: Router,
    stats: Arc<PeeringStats>,
    peer: Arc<super::Peer>,
}

struct Net {
    hub: MemoryHub,
    nodes: Vec<Node>,
}

impl Net {
    fn new(n: usize) -> Net {
        Self::with_options(n, super::PeeringOptions::default())
    }

    fn with_options(n: usize, options: super::PeeringOptions) -> Net {
        Self::with_keys(n, options, Default::default())
    }

    fn with_keys(
        n: usize,
        options: super::PeeringOptions,
        keys: super::groupkeys::KeyPolicy,
    ) -> Net {
        let hub = MemoryHub::new();
        let mut nodes = Vec::new();
        for _ in 0..n {
            let (remote, commands) = super::channel();
            let gw = Gateway::open_with(
                GatewayConfig {
                    memory_only: true,
                    registration: RegistrationMode::Open,
                    group_keys: keys.clone(),
                    ..GatewayConfig::default()
                },
                Arc::new(remote),
            )
            .expect("open");
            let (net, inbox) = hub.attach(gw.server_name());
            let peer =
                super::spawn_peer(gw.clone(), net, Box::new(inbox), commands, options.clone());
            nodes.push(Node {
                app: crate::api::router(gw.clone()),
                gw,
                stats: peer.stats.clone(),
                peer,
            });
        }
        Net { hub, nodes }
    }

    fn name(&self, i: usize) -> &ServerName {
        self.nodes[i].gw.server_name()
    }

    async fn user(&self, i: usize, name: &str) -> (OwnedUserId, String) {
        let (user, _, token) = self.user_device(i, name).await;
        (user, token)
    }

    async fn user_device(&self, i: usize, name: &str) -> (OwnedUserId, String, String) {
        let gw = &self.nodes[i].gw;
        let user = UserId::parse(format!("@{name}:{}", gw.server_name())).expect("user");
        gw.users.create(&user, None).await.expect("create");
        let mut record = gw.users.get(&user).expect("read").expect("record");
        record.displayname = Some(name.to_uppercase());
        gw.users.save(&user, &record).await.expect("name");
        let (device, token) = gw
            .users
            .create_device(&user, None, None, None)
            .await
            .expect("device");
        (user, device.to_string(), token)
    }

    async fn call(
        &self,
        i: usize,
        method: Method,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"));
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                HttpBody::from(v.to_string())
            }
            None => HttpBody::empty(),
        };
        let res = self.nodes[i]
            .app
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("infallible");
        let status = res.status();
        let bytes = body_bytes(res).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn ok(
        &self,
        i: usize,
        method: Method,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> Value {
        let (status, body) = self.call(i, method, uri, token, body).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        body
    }

    async fn send(&self, i: usize, token: &str, room: &OwnedRoomId, text: &str) -> String {
        let txn = crate::service::users::random_string(10);
        self.ok(
            i,
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                enc(room.as_str())
            ),
            token,
            Some(json!({"msgtype": "m.text", "body": text})),
        )
        .await["event_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Message bodies of a room as `user` reads them with `/messages`, oldest first.
    async fn bodies(&self, i: usize, token: &str, room: &OwnedRoomId) -> Vec<String> {
        let (status, page) = self
            .call(
                i,
                Method::GET,
                &format!(
                    "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000",
                    enc(room.as_str())
                ),
                token,
                None,
            )
            .await;
        if status != StatusCode::OK {
            return Vec::new();
        }
        let mut out: Vec<String> = page["chunk"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
            .collect();
        out.reverse();
        out
    }

    /// Message bodies and event ids of a room as `user` reads them, oldest first.
    async fn bodies_and_ids(
        &self,
        i: usize,
        token: &str,
        room: &OwnedRoomId,
    ) -> Vec<(String, String)> {
        let (_, page) = self
            .call(
                i,
                Method::GET,
                &format!(
                    "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000",
                    enc(room.as_str())
                ),
                token,
                None,
            )
            .await;
        let mut out: Vec<(String, String)> = page["chunk"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .filter_map(|e| {
                Some((
                    e["content"]["body"].as_str()?.to_owned(),
                    e["event_id"].as_str()?.to_owned(),
                ))
            })
            .collect();
        out.reverse();
        out
    }

    /// `user` of gateway `i` joins `room` (held on gateway 0) and gateway 0 sees the join.
    async fn join_and_wait(&self, i: usize, user: &UserId, token: &str, room: &OwnedRoomId) {
        self.ok(
            i,
            Method::POST,
            &format!("/_matrix/client/v3/join/{}", enc(room.as_str())),
            token,
            Some(json!({})),
        )
        .await;
        until("joined on the room's gateway", || {
            self.membership(0, room, user).as_deref() == Some("join")
        })
        .await;
    }

    fn membership(&self, i: usize, room: &OwnedRoomId, user: &UserId) -> Option<String> {
        self.nodes[i].gw.rooms.membership(room, user).ok().flatten()
    }

    fn state_of(&self, i: usize, room: &OwnedRoomId) -> Vec<((String, String), String)> {
        let mut s: Vec<_> = self.nodes[i]
            .gw
            .rooms
            .current_state(room)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, e)| (k, e.event_id.to_string()))
            .collect();
        s.sort();
        s
    }
}

/// Waits (bounded) until `check` holds.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn until_async<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Syncs gateway `i` as `token` until a to-device event matching `pred` is there.
async fn until_to_device(
    net: &Net,
    i: usize,
    token: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) {
    until_async(what, || async {
        let sync = net
            .ok(
                i,
                Method::GET,
                "/_matrix/client/v3/sync?timeout=0",
                token,
                None,
            )
            .await;
        sync["to_device"]["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(&pred))
    })
    .await;
}

async fn create_room(net: &Net, i: usize, token: &str, body: Value) -> OwnedRoomId {
    let created = net
        .ok(
            i,
            Method::POST,
            "/_matrix/client/v3/createRoom",
            token,
            Some(body),
        )
        .await;
    OwnedRoomId::try_from(created["room_id"].as_str().unwrap_or_default()).expect("room id")
}

fn room_path(room: &OwnedRoomId, rest: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/{rest}", enc(room.as_str()))
}

#[tokio::test]
async fn invite_join_chat_and_state_across_two_gateways() {
    let net = Net::new(2);
    let (alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let room = create_room(
        &net,
        0,
        &at,
        json!({"name": "Garden", "preset": "private_chat"}),
    )
    .await;
    net.ok(
        0,
        Method::POST,
        &room_path(&room, "invite"),
        &at,
        Some(json!({"user_id": bob})),
    )
    .await;

    // Bob's gateway shows the invite with the room's name and the inviter.
    let mut invite = Value::Null;
    for _ in 0..1000 {
        let sync = net
            .ok(1, Method::GET, "/_matrix/client/v3/sync", &bt, None)
            .await;
        invite = sync["rooms"]["invite"][room.as_str()].clone();
        if !invite.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let events = invite["invite_state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Garden"),
        "{invite}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["sender"] == json!(alice)),
        "{invite}"
    );

    // Bob joins through Alice's gateway; both see the join.
    net.join_and_wait(1, &bob, &bt, &room).await;
    assert_eq!(net.membership(1, &room, &alice).as_deref(), Some("join"));

    // Chat both ways, in order.
    net.send(0, &at, &room, "hello bob").await;
    until_async("bob reads alice", || async {
        net.bodies(1, &bt, &room).await.len() == 1
    })
    .await;
    net.send(1, &bt, &room, "hello alice").await;
    net.send(0, &at, &room, "how are you").await;
    until_async("three messages on both", || async {
        net.bodies(0, &at, &room).await.len() == 3 && net.bodies(1, &bt, &room).await.len() == 3
    })
    .await;
    assert_eq!(net.bodies(1, &bt, &room).await[0], "hello bob");

    // Bob takes his message back: it is redacted on both gateways.
    let hello_alice = net
        .bodies_and_ids(0, &at, &room)
        .await
        .into_iter()
        .find(|(b, _)| b == "hello alice")
        .map(|(_, id)| id)
        .expect("bob's message on A");
    net.ok(
        1,
        Method::PUT,
        &room_path(&room, &format!("redact/{}/r1", enc(&hello_alice))),
        &bt,
        Some(json!({"reason": "typo"})),
    )
    .await;
    until_async("redacted on both", || async {
        net.bodies(0, &at, &room).await.len() == 2 && net.bodies(1, &bt, &room).await.len() == 2
    })
    .await;

    // State changes from either side apply on both.
    net.ok(
        0,
        Method::PUT,
        &room_path(&room, "state/m.room.topic/"),
        &at,
        Some(json!({"topic": "plants"})),
    )
    .await;
    until("topic on B", || {
        net.nodes[1]
            .gw
            .rooms
            .state_content(&room, "m.room.topic", "")
            .ok()
            .flatten()
            .map(|c| c["topic"].clone())
            == Some(json!("plants"))
    })
    .await;
    // Bob's display name comes with his join.
    let member = net.nodes[0]
        .gw
        .rooms
        .state_content(&room, "m.room.member", bob.as_str())
        .expect("m")
        .expect("m");
    assert_eq!(member["displayname"], "BOB");
    until("same state", || {
        net.state_of(0, &room) == net.state_of(1, &room)
    })
    .await;
    assert!(
        net.nodes[0].stats.drops().is_empty(),
        "{:?}",
        net.nodes[0].stats.drops()
    );
}

#[tokio::test]
async fn a_rejected_invite_leaves_the_room_on_both() {
    let net = Net::new(2);
    let (_alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let room = create_room(&net, 0, &at, json!({"preset": "private_chat"})).await;
    net.ok(
        0,
        Method::POST,
        &room_path(&room, "invite"),
        &at,
        Some(json!({"user_id": bob})),
    )
    .await;
    until("invite on B", || {
        net.nodes[1]
            .gw
            .rooms
            .remote_invite(&bob, &room)
            .ok()
            .flatten()
            .is_some()
    })
    .await;
    net.ok(
        1,
        Method::POST,
        &room_path(&room, "leave"),
        &bt,
        Some(json!({})),
    )
    .await;
    until("bob left on A", || {
        net.membership(0, &room, &bob).as_deref() == Some("leave")
    })
    .await;
    let sync = net
        .ok(1, Method::GET, "/_matrix/client/v3/sync", &bt, None)
        .await;
    assert!(sync["rooms"]["invite"][room.as_str()].is_null());
}

#[tokio::test]
async fn a_third_gateway_joins_by_alias_and_state_converges() {
    let net = Net::new(3);
    let (_alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let (carol, ct) = net.user(2, "carol").await;
    let room = create_room(
        &net,
        0,
        &at,
        json!({"preset": "public_chat", "room_alias_name": "plaza"}),
    )
    .await;
    let alias = format!("#plaza:{}", net.name(0));
    net.ok(
        1,
        Method::POST,
        &format!("/_matrix/client/v3/join/{}", enc(&alias)),
        &bt,
        Some(json!({})),
    )
    .await;
    net.ok(
        2,
        Method::POST,
        &format!("/_matrix/client/v3/join/{}", enc(room.as_str())),
        &ct,
        Some(json!({})),
    )
    .await;
    until("all joined everywhere", || {
        (0..3).all(|i| {
            net.membership(i, &room, &bob).as_deref() == Some("join")
                && net.membership(i, &room, &carol).as_deref() == Some("join")
        })
    })
    .await;

    // Two gateways change the topic at the same moment: all three end in one state.
    let pl = net.nodes[0]
        .gw
        .rooms
        .state_content(&room, "m.room.power_levels", "")
        .expect("pl")
        .expect("pl");
    let mut pl2 = pl.clone();
    pl2["users"][bob.as_str()] = json!(50);
    pl2["users"][carol.as_str()] = json!(50);
    net.ok(
        0,
        Method::PUT,
        &room_path(&room, "state/m.room.power_levels/"),
        &at,
        Some(pl2),
    )
    .await;
    until("power levels everywhere", || {
        (0..3).all(|i| net.state_of(i, &room) == net.state_of(0, &room))
    })
    .await;
    let topic_path = room_path(&room, "state/m.room.topic/");
    let (b, c) = tokio::join!(
        net.call(
            1,
            Method::PUT,
            &topic_path,
            &bt,
            Some(json!({"topic": "from B"}))
        ),
        net.call(
            2,
            Method::PUT,
            &topic_path,
            &ct,
            Some(json!({"topic": "from C"}))
        ),
    );
    assert_eq!((b.0, c.0), (StatusCode::OK, StatusCode::OK));
    net.send(1, &bt, &room, "b").await;
    net.send(2, &ct, &room, "c").await;
    until("one state on all three", || {
        let s0 = net.state_of(0, &room);
        s0 == net.state_of(1, &room) && s0 == net.state_of(2, &room)
    })
    .await;

    // Carol leaves; everyone sees it.
    net.ok(
        2,
        Method::POST,
        &room_path(&room, "leave"),
        &ct,
        Some(json!({})),
    )
    .await;
    until("carol left everywhere", || {
        (0..3).all(|i| net.membership(i, &room, &carol).as_deref() == Some("leave"))
    })
    .await;
}

#[tokio::test]
async fn kick_and_ban_across_gateways() {
    let net = Net::new(2);
    let (_alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let room = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;
    let join = format!("/_matrix/client/v3/join/{}", enc(room.as_str()));
    net.ok(1, Method::POST, &join, &bt, Some(json!({}))).await;
    until("joined", || {
        net.membership(0, &room, &bob).as_deref() == Some("join")
    })
    .await;

    net.ok(
        0,
        Method::POST,
        &room_path(&room, "kick"),
        &at,
        Some(json!({"user_id": bob})),
    )
    .await;
    until("kicked on B", || {
        net.membership(1, &room, &bob).as_deref() == Some("leave")
    })
    .await;
    net.ok(1, Method::POST, &join, &bt, Some(json!({}))).await;
    until("rejoined on A", || {
        net.membership(0, &room, &bob).as_deref() == Some("join")
    })
    .await;

    net.ok(
        0,
        Method::POST,
        &room_path(&room, "ban"),
        &at,
        Some(json!({"user_id": bob})),
    )
    .await;
    until("banned on B", || {
        net.membership(1, &room, &bob).as_deref() == Some("ban")
    })
    .await;
    let (status, _) = net.call(1, Method::POST, &join, &bt, Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a banned user cannot rejoin");
    assert_eq!(net.membership(0, &room, &bob).as_deref(), Some("ban"));

    net.ok(
        0,
        Method::POST,
        &room_path(&room, "unban"),
        &at,
        Some(json!({"user_id": bob})),
    )
    .await;
    until("unbanned on B", || {
        net.membership(1, &room, &bob).as_deref() == Some("leave")
    })
    .await;
    net.ok(1, Method::POST, &join, &bt, Some(json!({}))).await;
    until("joined again", || {
        net.membership(0, &room, &bob).as_deref() == Some("join")
    })
    .await;
}

#[tokio::test]
async fn an_offline_gateway_catches_up_in_order_exactly_once() {
    let net = Net::new(2);
    let (_alice, at) = net.user(0, "alice").await;
    let (bob, bt) = net.user(1, "bob").await;
    let room = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;
    net.join_and_wait(1, &bob, &bt, &room).await;

    net.hub.set_online(net.name(1), false);
    let sent: Vec<String> = (0..60).map(|i| format!("m{i}")).collect();
    for text in &sent {
        net.send(0, &at, &room, text).await;
    }
    net.hub.set_online(net.name(1), true);
    until_async("all 60 on B", || async {
        net.bodies(1, &bt, &room).await.len() >= 60
    })
    .await;
    assert_eq!(net.bodies(1, &bt, &room).await, sent, "in order, once");
    until("nothing pending", || net.hub.pending(net.name(1)) == 0).await;
}

#[tokio::test]
async fn bad_messages_are_dropped_and_counted() {
    let net = Net::new(2);
    let (_alice, at) = net.user(0, "alice").await;
    let room = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;
    let evil_name = ServerName::parse("evil.example").expect("name");
    let (evil, _evil_inbox) = net.hub.attach(&evil_name);
    let target = net.name(0).to_owned();

    // Garbage, a forged signature, a message for someone else.
    evil.send(&target, b"garbage".to_vec()).await.expect("send");
    let envelope = Envelope {
        origin: net.name(1).to_owned(),
        destination: target.clone(),
        ts: 1,
        body: Body::Txn {
            id: "x".into(),
            pdus: vec![],
            edus: vec![],
        },
    };
    let mut forged = wire::encode(&net.nodes[1].gw.identity, &envelope);
    forged[5] ^= 1; // a byte of the signature
    evil.send(&target, forged).await.expect("send");
    let other = Envelope {
        destination: net.name(1).to_owned(),
        ..envelope.clone()
    };
    evil.send(&target, wire::encode(&net.nodes[1].gw.identity, &other))
        .await
        .expect("send");
    // Room traffic in the clear: refused, whatever it carries.
    evil.send(
        &target,
        wire::encode(
            &net.nodes[1].gw.identity,
            &Envelope {
                ts: u64::from(ruma::MilliSecondsSinceUnixEpoch::now().get()),
                ..envelope.clone()
            },
        ),
    )
    .await
    .expect("send");
    // A room key from a gateway with nobody in the room, then a message under it; and a room
    // key for a room the receiver is not in.
    let sealed = share_key_from(&net, 1, 0, &room, None).await;
    net.nodes[1].peer.send(&target, sealed).await.expect("send");
    let elsewhere = OwnedRoomId::try_from("!elsewhere:example.org").expect("room");
    share_key_from(&net, 1, 0, &elsewhere, None).await;

    let stats = &net.nodes[0].stats;
    until("all dropped", || {
        stats.drops_of("malformed") >= 1
            && stats.drops_of("signature") >= 1
            && stats.drops_of("destination") >= 1
            && stats.drops_of("unsealed") >= 1
            && stats.drops_of("key_share_not_in_room") >= 1
            && stats.drops_of("key_share_unknown_room") >= 1
            && stats.noted("held_for_key") >= 1
    })
    .await;
    assert!(
        net.bodies(0, &at, &room).await.is_empty(),
        "nothing reached a client"
    );
    until("all confirmed", || net.hub.pending(&target) == 0).await;
}

/// Gateway `from` starts an epoch in `room` (encrypting a message), shares its key with
/// gateway `to` under Olm (with `membership` beside it), and returns the sealed message.
async fn share_key_from(
    net: &Net,
    from: usize,
    to: usize,
    room: &OwnedRoomId,
    membership: Option<wire::RawPdu>,
) -> Body {
    let peer = &net.nodes[from].peer;
    let readers = std::collections::BTreeSet::from([net.name(to).to_owned()]);
    let payload = super::reply_seal::encode_payload(&Body::Txn {
        id: "t".into(),
        pdus: vec![],
        edus: vec![],
    });
    let sealing = peer
        .keys
        .seal(room, &readers, "shared", 1, &payload)
        .await
        .expect("seal");
    let (_, share) = sealing.shares.into_iter().next().expect("a share");
    super::olm_channel::try_send(peer, net.name(to), &Body::RoomKey { share, membership })
        .await
        .expect("olm send");
    Body::Sealed {
        session_id: sealing.session_id,
        ciphertext: sealing.ciphertext,
    }
}

fn device_keys(user: &UserId, device: &str) -> Value {
    json!({
        "user_id": user,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{device}"): format!("curve{device}"),
            format!("ed25519:{device}"): format!("ed{device}"),
        },
        "signatures": { user.as_str(): { format!("ed25519:{device}"): "sig" } }
    })
}

#[tokio::test]
async fn keys_to_device_typing_and_receipts_cross_gateways() {
    let net = Net::new(2);
    let (alice, at) = net.user(0, "alice").await;
    let (bob, bob_device, bt) = net.user_device(1, "bob").await;
    let room = create_room(&net, 0, &at, json!({"preset": "public_chat"})).await;
    net.join_and_wait(1, &bob, &bt, &room).await;
    let alice_sync = net
        .ok(0, Method::GET, "/_matrix/client/v3/sync", &at, None)
        .await;
    let alice_since = alice_sync["next_batch"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Bob's keys, asked for on Alice's gateway.
    net.ok(
        1,
        Method::POST,
        "/_matrix/client/v3/keys/upload",
        &bt,
        Some(json!({
            "device_keys": device_keys(&bob, &bob_device),
            "one_time_keys": {"signed_curve25519:AAAAAQ": {"key": "otk1", "signatures": {}}},
        })),
    )
    .await;
    let query = net
        .ok(
            0,
            Method::POST,
            "/_matrix/client/v3/keys/query",
            &at,
            Some(json!({"device_keys": {bob.as_str(): []}})),
        )
        .await;
    assert_eq!(
        query["device_keys"][bob.as_str()][&bob_device]["keys"][format!("ed25519:{bob_device}")],
        format!("ed{bob_device}"),
        "{query}"
    );
    let claim = net
        .ok(
            0,
            Method::POST,
            "/_matrix/client/v3/keys/claim",
            &at,
            Some(json!({"one_time_keys": {bob.as_str(): {&bob_device: "signed_curve25519"}}})),
        )
        .await;
    assert_eq!(
        claim["one_time_keys"][bob.as_str()][&bob_device]["signed_curve25519:AAAAAQ"]["key"],
        "otk1",
        "{claim}"
    );

    // Bob's new keys reach Alice's clients as a device-list change.
    until_async("device list change on A", || async {
        let sync = net
            .ok(
                0,
                Method::GET,
                &format!("/_matrix/client/v3/sync?since={alice_since}&timeout=0"),
                &at,
                None,
            )
            .await;
        sync["device_lists"]["changed"]
            .as_array()
            .is_some_and(|c| c.contains(&json!(bob)))
    })
    .await;

    // A to-device message from Alice to Bob's device.
    net.ok(
        0,
        Method::PUT,
        "/_matrix/client/v3/sendToDevice/m.room_key_request/t1",
        &at,
        Some(json!({
            "messages": {bob.as_str(): {&bob_device: {"secret": "for bob"}}}
        })),
    )
    .await;
    until_to_device(&net, 1, &bt, "to-device on B", |m| {
        m["content"]["secret"] == "for bob" && m["sender"] == json!(alice)
    })
    .await;

    // Typing and a read receipt cross over.
    net.ok(
        0,
        Method::PUT,
        &room_path(&room, &format!("typing/{}", enc(alice.as_str()))),
        &at,
        Some(json!({"typing": true, "timeout": 20000})),
    )
    .await;
    until("alice types on B", || {
        net.nodes[1]
            .gw
            .ephemeral
            .typing_event(&room, 0)
            .is_some_and(|e| {
                e["content"]["user_ids"]
                    .as_array()
                    .is_some_and(|u| u.contains(&json!(alice)))
            })
    })
    .await;
    let event_id = net.send(0, &at, &room, "read me").await;
    until_async("message on B", || async {
        net.bodies(1, &bt, &room).await.len() == 1
    })
    .await;
    net.ok(
        1,
        Method::POST,
        &room_path(&room, &format!("receipt/m.read/{}", enc(&event_id))),
        &bt,
        Some(json!({})),
    )
    .await;
    until_async("bob's receipt on A", || async {
        let sync = net
            .ok(
                0,
                Method::GET,
                "/_matrix/client/v3/sync?timeout=0",
                &at,
                None,
            )
            .await;
        sync["rooms"]["join"][room.as_str()]["ephemeral"]["events"]
            .as_array()
            .is_some_and(|e| {
                e.iter().any(|r| {
                    r["type"] == "m.receipt"
                        && !r["content"][&event_id]["m.read"][bob.as_str()].is_null()
                })
            })
    })
    .await;
}
