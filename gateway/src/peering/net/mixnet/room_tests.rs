//! Three whole gateways sharing a room over a loopback mixnet, under group keys: they read
//! each other; after a kick the kicked gateway gets ciphertext under the new epoch and cannot
//! read it; and no provider ever holds a message's text.
//! Every wait is bounded and only guards against hangs; nothing asserts on timing.

use std::time::Duration;

use axum::{body::Body as HttpBody, Router};
use http::{Method, Request};
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;
use crate::{
    config::{GatewayConfig, RegistrationMode},
    peering::{wire::Body, KeyPolicy, Peer},
    service::Gateway,
    testkit::{body_bytes, enc},
};

struct Node {
    gw: Arc<Gateway>,
    app: Router,
    peer: Arc<Peer>,
}

async fn gateway(network: &NetworkConfig) -> Node {
    let (remote, commands) = crate::peering::channel();
    let gw = Gateway::open_with(
        GatewayConfig {
            memory_only: true,
            registration: RegistrationMode::Open,
            group_keys: KeyPolicy {
                ask_after_secs: 2,
                ..KeyPolicy::default()
            },
            ..GatewayConfig::default()
        },
        Arc::new(remote),
    )
    .expect("open");
    let olm_key = gw_keys(&gw).olm_identity().await.expect("olm");
    let options = MixnetOptions {
        refresh: Duration::from_millis(500),
        olm_key: Some(olm_key),
        ..MixnetOptions::default()
    };
    let (net, inbox) = tokio::time::timeout(
        Duration::from_secs(60),
        MixnetNet::start(&gw.identity, gw.db.clone(), network, options),
    )
    .await
    .expect("in time")
    .expect("join");
    let peer = crate::peering::spawn_peer(
        gw.clone(),
        net,
        Box::new(inbox),
        commands,
        Default::default(),
    );
    Node {
        app: crate::api::router(gw.clone()),
        gw,
        peer,
    }
}

fn gw_keys(gw: &Arc<Gateway>) -> crate::peering::groupkeys::GroupKeys {
    crate::peering::groupkeys::GroupKeys::new(
        gw.db.clone(),
        Arc::new(crate::service::clock::SystemClock),
        gw.config.group_keys.clone(),
    )
}

async fn call(node: &Node, method: Method, uri: &str, token: &str, body: Value) -> Value {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(HttpBody::from(body.to_string()))
        .expect("request");
    let res = node.app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let bytes = body_bytes(res).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(status.is_success(), "{uri}: {status} {v}");
    v
}

async fn user(node: &Node, name: &str) -> (OwnedUserId, String) {
    let gw = &node.gw;
    let user = UserId::parse(format!("@{name}:{}", gw.server_name())).expect("user");
    gw.users.create(&user, None).await.expect("create");
    let (_, token) = gw
        .users
        .create_device(&user, None, None, None)
        .await
        .expect("device");
    (user, token)
}

async fn bodies(node: &Node, token: &str, room: &OwnedRoomId) -> Vec<String> {
    let page = call(
        node,
        Method::GET,
        &format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
            enc(room.as_str())
        ),
        token,
        Value::Null,
    )
    .await;
    page["chunk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn send(node: &Node, token: &str, room: &OwnedRoomId, text: &str) {
    call(
        node,
        Method::PUT,
        &format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            enc(room.as_str()),
            crate::service::users::random_string(8)
        ),
        token,
        json!({"msgtype": "m.text", "body": text}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_share_a_room_under_group_keys_over_the_mixnet() {
    let (mixnet, network) = super::tests::network().await;
    for p in &mixnet.providers {
        if let Some(m) = &p.mailboxes {
            m.record();
        }
    }
    let nodes = [
        gateway(&network).await,
        gateway(&network).await,
        gateway(&network).await,
    ];
    let users = [
        user(&nodes[0], "alice").await,
        user(&nodes[1], "bob").await,
        user(&nodes[2], "carol").await,
    ];
    let room: OwnedRoomId = serde_json::from_value(
        call(
            &nodes[0],
            Method::POST,
            "/_matrix/client/v3/createRoom",
            &users[0].1,
            json!({"preset": "public_chat"}),
        )
        .await["room_id"]
            .clone(),
    )
    .expect("room id");
    for i in 1..3 {
        call(
            &nodes[i],
            Method::POST,
            &format!("/_matrix/client/v3/join/{}", enc(room.as_str())),
            &users[i].1,
            json!({}),
        )
        .await;
    }
    let texts = [
        "aardvark over the mixnet",
        "bumblebee over the mixnet",
        "capybara over the mixnet",
    ];
    for (i, text) in texts.iter().enumerate() {
        send(&nodes[i], &users[i].1, &room, text).await;
    }
    for (i, node) in nodes.iter().enumerate() {
        for text in texts {
            until(&format!("gateway {i} shows {text}"), || async {
                bodies(node, &users[i].1, &room)
                    .await
                    .iter()
                    .any(|b| b == text)
            })
            .await;
        }
    }

    // Carol is kicked: Alice's gateway starts a new epoch that carol's gateway never gets.
    call(
        &nodes[0],
        Method::POST,
        &format!("/_matrix/client/v3/rooms/{}/kick", enc(room.as_str())),
        &users[0].1,
        json!({"user_id": users[2].0}),
    )
    .await;
    until("carol kicked on C", || async {
        nodes[2]
            .gw
            .rooms
            .membership(&room, &users[2].0)
            .ok()
            .flatten()
            .as_deref()
            == Some("leave")
    })
    .await;
    send(&nodes[0], &users[0].1, &room, "dromedary after the kick").await;
    until("bob reads after the kick", || async {
        bodies(&nodes[1], &users[1].1, &room)
            .await
            .iter()
            .any(|b| b == "dromedary after the kick")
    })
    .await;
    let epoch = nodes[0]
        .peer
        .keys
        .current_epoch(&room)
        .await
        .expect("epoch")
        .expect("an epoch");
    // Ciphertext under that epoch reaches carol's gateway: it holds it, asks for the key, and
    // is refused.
    let readers = std::collections::BTreeSet::from([nodes[1].gw.server_name().to_owned()]);
    let payload = crate::peering::reply_seal::encode_payload(&Body::Txn {
        id: "x".into(),
        pdus: vec![],
        edus: vec![],
    });
    let sealed = nodes[0]
        .peer
        .keys
        .seal(&room, &readers, "shared", 1, &payload)
        .await
        .expect("seal");
    assert_eq!(sealed.session_id, epoch, "still the post-kick epoch");
    nodes[0]
        .peer
        .send(
            nodes[2].gw.server_name(),
            Body::Sealed {
                session_id: sealed.session_id.clone(),
                ciphertext: sealed.ciphertext.clone(),
            },
        )
        .await
        .expect("send");
    until(
        "carol's gateway holds it and is refused its key",
        || async {
            nodes[2].peer.stats.noted("held_for_key") >= 1
                && nodes[0].peer.stats.drops_of("key_not_entitled") >= 1
        },
    )
    .await;
    let held = nodes[2].peer.keys.received_epochs().await.expect("epochs");
    assert!(
        !held.iter().any(|(id, _, _)| id.ends_with(&epoch)),
        "C never got the post-kick epoch"
    );
    assert!(!bodies(&nodes[2], &users[2].1, &room)
        .await
        .iter()
        .any(|b| b == "dromedary after the kick"));

    // What the providers stored: never a message's text.
    let mut stored = 0;
    for p in &mixnet.providers {
        for packet in p
            .mailboxes
            .as_ref()
            .map(|m| m.recorded())
            .unwrap_or_default()
        {
            stored += 1;
            let text = String::from_utf8_lossy(&packet);
            for t in texts.iter().chain(["dromedary after the kick"].iter()) {
                assert!(!text.contains(t), "plaintext in a mailbox");
            }
        }
    }
    assert!(stored > 0, "the providers stored packets");
}
