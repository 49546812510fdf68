//! Sliding sync through the HTTP API: lists, deltas, `pos` handling, filters, extensions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use http::{Method, StatusCode};
use ruma::{OwnedRoomId, UserId};
use serde_json::{json, Value};

use crate::testkit::{enc, kit, Kit};

const PATH: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

async fn ss(k: &Kit, token: &str, pos: Option<&str>, body: Value) -> (StatusCode, Value) {
    let uri = match pos {
        Some(p) => format!("{PATH}?pos={}&timeout=0", enc(p)),
        None => PATH.to_owned(),
    };
    k.call(Method::POST, &uri, Some(token), Some(body)).await
}

async fn say(k: &Kit, token: &str, room: &OwnedRoomId, text: &str) -> String {
    let txn = crate::service::users::random_string(8);
    let (s, b) = k
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                enc(room.as_str())
            ),
            Some(token),
            Some(json!({"msgtype": "m.text", "body": text})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["event_id"].as_str().unwrap().to_owned()
}

async fn read_up_to(k: &Kit, token: &str, room: &OwnedRoomId, event: &str) {
    let (s, b) = k
        .call(
            Method::POST,
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                enc(room.as_str()),
                enc(event)
            ),
            Some(token),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

fn list(ranges: Value, limit: u64) -> Value {
    json!({
        "lists": { "all": {
            "ranges": ranges,
            "timeline_limit": limit,
            "required_state": [["m.room.name", ""], ["m.room.member", "$LAZY"], ["m.room.create", ""]],
        }},
    })
}

fn bodies(room: &Value) -> Vec<String> {
    room["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn lists_rooms_by_recency_then_sends_only_changes() {
    let k = kit();
    let (alice, token) = k.user("alice").await;
    let old = k.room(&alice).await;
    let new = k.room(&alice).await;
    say(&k, &token, &old, "first").await;
    say(&k, &token, &new, "second").await;

    // Only the most recent room is in range [0, 0].
    let (s, b) = ss(&k, &token, None, list(json!([[0, 0]]), 1)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["lists"]["all"]["count"], 2);
    let rooms = b["rooms"].as_object().unwrap();
    assert_eq!(rooms.len(), 1, "{b}");
    let r = &b["rooms"][new.as_str()];
    assert_eq!(r["initial"], true);
    assert_eq!(bodies(r), ["second"]);
    assert!(r["bump_stamp"].as_u64().unwrap() > 0);
    assert_eq!(r["joined_count"], 1);
    // $LAZY: the sender's member event (not in the one-event timeline); and the create event.
    let state = r["required_state"].as_array().unwrap();
    assert!(state
        .iter()
        .any(|e| e["type"] == "m.room.member" && e["state_key"] == alice.as_str()));
    assert!(state.iter().any(|e| e["type"] == "m.room.create"));
    let pos = b["pos"].as_str().unwrap().to_owned();

    // Widen the range: the other room arrives as initial, the first is not sent again.
    let (_, b2) = ss(&k, &token, Some(&pos), list(json!([[0, 9]]), 3)).await;
    let rooms = b2["rooms"].as_object().unwrap();
    assert_eq!(rooms.len(), 1, "{b2}");
    assert_eq!(b2["rooms"][old.as_str()]["initial"], true);
    let pos2 = b2["pos"].as_str().unwrap().to_owned();

    // A new message in the old room: it moves to the top and only the new event comes.
    say(&k, &token, &old, "third").await;
    let (_, b3) = ss(
        &k,
        &token,
        Some(&pos2),
        json!({"lists": {"all": {"ranges": [[0, 9]]}}}),
    )
    .await;
    let r = &b3["rooms"][old.as_str()];
    assert!(r.get("initial").is_none(), "{b3}");
    assert_eq!(bodies(r), ["third"]);
    assert_eq!(r["num_live"], 1);
    assert!(b3["rooms"].get(new.as_str()).is_none());
    // The sticky timeline limit (3) still applies without being repeated.
    for i in 0..5 {
        say(&k, &token, &new, &format!("burst {i}")).await;
    }
    let pos3 = b3["pos"].as_str().unwrap().to_owned();
    let (_, b4) = ss(
        &k,
        &token,
        Some(&pos3),
        json!({"lists": {"all": {"ranges": [[0, 9]]}}}),
    )
    .await;
    let r = &b4["rooms"][new.as_str()];
    assert_eq!(bodies(r), ["burst 2", "burst 3", "burst 4"]);
    assert_eq!(r["limited"], true);
    // The prev_batch pages back with /messages.
    let (s, page) = k
        .call(
            Method::GET,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=2&from={}",
                enc(new.as_str()),
                r["prev_batch"].as_str().unwrap()
            ),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["chunk"][0]["content"]["body"], "burst 1");

    // Retrying an older pos gives the same delta again (the client may have lost it).
    let (_, again) = ss(
        &k,
        &token,
        Some(&pos3),
        json!({"lists": {"all": {"ranges": [[0, 9]]}}}),
    )
    .await;
    assert_eq!(
        bodies(&again["rooms"][new.as_str()]),
        ["burst 2", "burst 3", "burst 4"]
    );
}

#[tokio::test]
async fn unknown_pos_asks_for_a_new_connection() {
    let k = kit();
    let (_, token) = k.user("alice").await;
    let (s, b) = ss(&k, &token, Some("99_1"), list(json!([[0, 9]]), 1)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["errcode"], "M_UNKNOWN_POS");
    let (s, _) = k.call(Method::POST, PATH, None, Some(json!({}))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = k
        .call(
            Method::POST,
            &format!("{PATH}?timeout=soon"),
            Some(&token),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
}

#[tokio::test]
async fn invites_filters_and_unread_counts() {
    let k = kit();
    let (alice, atoken) = k.user("alice").await;
    let (bob, btoken) = k.user("bob").await;
    let room = k.room(&alice).await;
    let (s, b) = k
        .call(
            Method::POST,
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(room.as_str())),
            Some(&atoken),
            Some(json!({"user_id": bob})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let lists = json!({"lists": {
        "invites": {"ranges": [[0, 9]], "filters": {"is_invite": true}},
        "rooms": {"ranges": [[0, 9]], "filters": {"is_invite": false}, "timeline_limit": 5},
    }});
    let (_, b) = ss(&k, &btoken, None, lists.clone()).await;
    assert_eq!(b["lists"]["invites"]["count"], 1);
    assert_eq!(b["lists"]["rooms"]["count"], 0);
    let invite = &b["rooms"][room.as_str()];
    assert!(invite["invite_state"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "invite"));
    let pos = b["pos"].as_str().unwrap().to_owned();

    // Bob joins: the room moves lists and comes with its timeline, as initial.
    k.join(&room, &bob).await;
    say(&k, &atoken, &room, "welcome").await;
    say(&k, &atoken, &room, "bob?").await;
    let (_, b) = ss(&k, &btoken, Some(&pos), lists.clone()).await;
    assert_eq!(b["lists"]["invites"]["count"], 0);
    assert_eq!(b["lists"]["rooms"]["count"], 1);
    let r = &b["rooms"][room.as_str()];
    assert_eq!(r["initial"], true, "{b}");
    assert_eq!(bodies(r), ["welcome", "bob?"]);
    assert_eq!(r["notification_count"], 2);
    let pos = b["pos"].as_str().unwrap().to_owned();

    // Bob reads: the room is sent again with only its counts changed.
    let last = say(&k, &atoken, &room, "read me").await;
    let (_, b) = ss(&k, &btoken, Some(&pos), lists.clone()).await;
    assert_eq!(b["rooms"][room.as_str()]["notification_count"], 3);
    let pos = b["pos"].as_str().unwrap().to_owned();
    read_up_to(&k, &btoken, &room, &last).await;
    let (_, b) = ss(&k, &btoken, Some(&pos), lists).await;
    let r = &b["rooms"][room.as_str()];
    assert_eq!(r["notification_count"], 0, "{b}");
    assert!(bodies(r).is_empty());
}

#[tokio::test]
async fn extensions_carry_keys_to_device_account_data_receipts_and_typing() {
    let k = kit();
    let (alice, atoken) = k.user("alice").await;
    let (bob, btoken) = k.user("bob").await;
    let room = k.room(&alice).await;
    k.join(&room, &bob).await;
    let bob_device =
        k.gw.users
            .resolve_token(&btoken)
            .unwrap()
            .unwrap()
            .device_id;
    let exts = json!({
        "conn_id": "encryption",
        "lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 1}},
        "extensions": {
            "to_device": {"enabled": true},
            "e2ee": {"enabled": true},
            "account_data": {"enabled": true},
            "receipts": {"enabled": true},
            "typing": {"enabled": true},
        },
    });
    let (_, b) = ss(&k, &btoken, None, exts).await;
    assert!(
        b["extensions"]["e2ee"]["device_one_time_keys_count"].is_object(),
        "{b}"
    );
    let next = b["extensions"]["to_device"]["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let pos = b["pos"].as_str().unwrap().to_owned();

    // A to-device message, account data, a receipt and typing, all from elsewhere.
    let (s, _) = k
        .call(
            Method::PUT,
            "/_matrix/client/v3/sendToDevice/m.test/t1",
            Some(&atoken),
            Some(json!({"messages": {bob.as_str(): {bob_device.as_str(): {"hello": 1}}}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = k
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/user/{}/account_data/m.test",
                enc(bob.as_str())
            ),
            Some(&btoken),
            Some(json!({"x": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let ev = say(&k, &atoken, &room, "hi").await;
    read_up_to(&k, &atoken, &room, &ev).await;
    let (s, _) = k
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/typing/{}",
                enc(room.as_str()),
                enc(alice.as_str())
            ),
            Some(&atoken),
            Some(json!({"typing": true, "timeout": 30000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // Extensions are sticky: this request does not repeat them.
    let body = json!({
        "conn_id": "encryption",
        "lists": {"all": {"ranges": [[0, 9]]}},
        "extensions": {"to_device": {"since": next}},
    });
    let (_, b) = ss(&k, &btoken, Some(&pos), body).await;
    let e = &b["extensions"];
    assert_eq!(e["to_device"]["events"][0]["content"]["hello"], 1, "{b}");
    assert!(e["account_data"]["global"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["type"] == "m.test"));
    let receipt = &e["receipts"]["rooms"][room.as_str()]["content"][&ev]["m.read"];
    assert!(receipt.get(alice.as_str()).is_some(), "{b}");
    let typing = &e["typing"]["rooms"][room.as_str()]["content"]["user_ids"];
    assert_eq!(typing, &json!([alice]));
    // Another connection of the same device keeps its own state.
    let (s, b) = ss(&k, &btoken, Some(b["pos"].as_str().unwrap()), json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
}

#[tokio::test]
async fn long_poll_returns_when_a_message_arrives() {
    let k = kit();
    let (alice, token) = k.user("alice").await;
    let room = k.room(&alice).await;
    let (_, b) = ss(&k, &token, None, list(json!([[0, 9]]), 1)).await;
    let pos = b["pos"].as_str().unwrap().to_owned();
    let gw = k.gw.clone();
    let (r2, who) = (room.clone(), alice.clone());
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        send_direct(&gw, &r2, &who).await;
    });
    let started = std::time::Instant::now();
    let uri = format!("{PATH}?pos={}&timeout=10000", enc(&pos));
    let (s, b) = k
        .call(
            Method::POST,
            &uri,
            Some(&token),
            Some(json!({"lists": {"all": {"ranges": [[0, 9]]}}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(bodies(&b["rooms"][room.as_str()]), ["late"]);
    assert!(started.elapsed() < Duration::from_secs(9));
    sender.await.unwrap();
}

async fn send_direct(gw: &crate::service::Gateway, room: &OwnedRoomId, user: &UserId) {
    let u = user.to_owned();
    gw.rooms
        .write(room, None, move |txn| {
            txn.append(
                &u,
                "m.room.message",
                None,
                json!({"msgtype": "m.text", "body": "late"}),
                None,
            )
        })
        .await
        .unwrap();
}
