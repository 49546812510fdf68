//! Relations, bundled aggregations, `/relations` and `/threads` through the router.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::tests_support::stable;
use crate::testkit::{enc, kit, Kit};

struct Room {
    id: String,
}

async fn send(k: &Kit, token: &str, room: &Room, kind: &str, content: Value) -> String {
    let txn = crate::service::users::random_string(10);
    let (status, body) = k
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/{kind}/{txn}",
                enc(&room.id)
            ),
            Some(token),
            Some(content),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().expect("event id").to_owned()
}

fn text(body: &str) -> Value {
    json!({ "msgtype": "m.text", "body": body })
}

fn edit(of: &str, body: &str) -> Value {
    json!({
        "msgtype": "m.text",
        "body": format!("* {body}"),
        "m.new_content": { "msgtype": "m.text", "body": body },
        "m.relates_to": { "rel_type": "m.replace", "event_id": of },
    })
}

fn reply_in_thread(root: &str, body: &str) -> Value {
    json!({
        "msgtype": "m.text",
        "body": body,
        "m.relates_to": { "rel_type": "m.thread", "event_id": root, "is_falling_back": true,
                          "m.in_reply_to": { "event_id": root } },
    })
}

async fn get(k: &Kit, token: &str, uri: &str) -> (StatusCode, Value) {
    k.call(Method::GET, uri, Some(token), None).await
}

async fn event(k: &Kit, token: &str, room: &Room, id: &str) -> Value {
    let (status, body) = get(
        k,
        token,
        &format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            enc(&room.id),
            enc(id)
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn setup() -> (Kit, String, String, Room) {
    let k = kit();
    let (alice, at) = k.user("alice").await;
    let (bob, bt) = k.user("bob").await;
    let room = k.room(&alice).await;
    k.join(&room, &bob).await;
    (
        k,
        at,
        bt,
        Room {
            id: room.to_string(),
        },
    )
}

fn edited_body(ev: &Value) -> Option<&str> {
    ev["unsigned"]["m.relations"]["m.replace"]["content"]["m.new_content"]["body"].as_str()
}

#[tokio::test]
async fn newest_valid_edit_is_bundled_everywhere_events_are_served() {
    let (k, at, bt, room) = setup().await;
    let original = send(&k, &at, &room, "m.room.message", text("helo")).await;
    send(&k, &at, &room, "m.room.message", edit(&original, "hello")).await;
    // Edits are ordered by `origin_server_ts` (milliseconds), then event id.
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let second = send(&k, &at, &room, "m.room.message", edit(&original, "hello!")).await;
    // Not valid: another sender, an edit of an edit, another event type.
    send(
        &k,
        &bt,
        &room,
        "m.room.message",
        edit(&original, "bob was here"),
    )
    .await;
    send(
        &k,
        &at,
        &room,
        "m.room.message",
        edit(&second, "edit of edit"),
    )
    .await;
    send(&k, &at, &room, "m.sticker", edit(&original, "sticker")).await;

    let ev = event(&k, &bt, &room, &original).await;
    assert_eq!(edited_body(&ev), Some("hello!"), "{ev}");
    assert_eq!(
        ev["content"]["body"], "helo",
        "the original content stays as sent"
    );
    let edit_ev = event(&k, &at, &room, &second).await;
    assert!(
        edit_ev["unsigned"].get("m.relations").is_none(),
        "{edit_ev}"
    );

    let (_, msgs) = get(
        &k,
        &bt,
        &format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100",
            enc(&room.id)
        ),
    )
    .await;
    let served = msgs["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .find(|e| e["event_id"] == original.as_str())
        .expect("original in /messages");
    assert_eq!(edited_body(served), Some("hello!"));

    let (_, ctx) = get(
        &k,
        &bt,
        &format!(
            "/_matrix/client/v3/rooms/{}/context/{}?limit=4",
            enc(&room.id),
            enc(&original)
        ),
    )
    .await;
    assert_eq!(edited_body(&ctx["event"]), Some("hello!"), "{ctx}");

    let (_, sync) = get(
        &k,
        &bt,
        "/_matrix/client/v3/sync?filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A50%7D%7D%7D",
    )
    .await;
    let timeline = sync["rooms"]["join"][&room.id]["timeline"]["events"]
        .as_array()
        .expect("timeline");
    let served = timeline
        .iter()
        .find(|e| e["event_id"] == original.as_str())
        .expect("original in /sync");
    assert_eq!(edited_body(served), Some("hello!"));
    assert!(served.get("room_id").is_none());
}

#[tokio::test]
async fn a_redacted_edit_or_original_is_not_bundled() {
    let (k, at, bt, room) = setup().await;
    let original = send(&k, &at, &room, "m.room.message", text("one")).await;
    let first = send(&k, &at, &room, "m.room.message", edit(&original, "two")).await;
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let last = send(&k, &at, &room, "m.room.message", edit(&original, "three")).await;
    let redact = |id: String| {
        let k = &k;
        let at = &at;
        let room = &room;
        async move {
            let (s, b) = k
                .call(
                    Method::PUT,
                    &format!(
                        "/_matrix/client/v3/rooms/{}/redact/{}/{}",
                        enc(&room.id),
                        enc(&id),
                        crate::service::users::random_string(8)
                    ),
                    Some(at),
                    Some(json!({})),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
    };
    redact(last).await;
    let ev = event(&k, &bt, &room, &original).await;
    assert_eq!(
        edited_body(&ev),
        Some("two"),
        "the older edit is current again"
    );
    redact(original.clone()).await;
    let ev = event(&k, &bt, &room, &original).await;
    assert!(ev["unsigned"].get("m.relations").is_none(), "{ev}");
    let _ = first;
}

#[tokio::test]
async fn relations_pages_filter_and_recurse() {
    let (k, at, bt, room) = setup().await;
    let root = send(&k, &at, &room, "m.room.message", text("root")).await;
    let mut reactions = Vec::new();
    for key in ["👍", "🎉", "❤️"] {
        let content =
            json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": root, "key": key } });
        reactions.push(send(&k, &bt, &room, "m.reaction", content).await);
    }
    let reply = send(
        &k,
        &bt,
        &room,
        "m.room.message",
        reply_in_thread(&root, "r1"),
    )
    .await;
    let nested =
        json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": reply, "key": "👀" } });
    let nested = send(&k, &at, &room, "m.reaction", nested).await;

    let base = format!(
        "/_matrix/client/v1/rooms/{}/relations/{}",
        enc(&room.id),
        enc(&root)
    );
    let ids = |b: &Value| -> Vec<String> {
        b["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .map(|e| e["event_id"].as_str().expect("id").to_owned())
            .collect()
    };
    // Newest first, two at a time.
    let (s, page1) = get(&k, &bt, &format!("{base}?limit=2")).await;
    assert_eq!(s, StatusCode::OK, "{page1}");
    assert_eq!(ids(&page1), vec![reply.clone(), reactions[2].clone()]);
    let next = page1["next_batch"].as_str().expect("next_batch");
    let (_, page2) = get(&k, &bt, &format!("{base}?limit=2&from={next}")).await;
    assert_eq!(
        ids(&page2),
        vec![reactions[1].clone(), reactions[0].clone()]
    );
    assert!(page2.get("next_batch").is_none(), "{page2}");
    // Forwards, filtered by rel_type and event type.
    let (_, ann) = get(&k, &bt, &format!("{base}/m.annotation/m.reaction?dir=f")).await;
    assert_eq!(ids(&ann), reactions);
    let (_, none) = get(&k, &bt, &format!("{base}/m.annotation/m.room.message")).await;
    assert!(ids(&none).is_empty());
    // Recursion reaches the reaction on the thread reply.
    let (_, flat) = get(&k, &bt, &format!("{base}/m.annotation")).await;
    assert!(!ids(&flat).contains(&nested));
    let (_, deep) = get(&k, &bt, &format!("{base}/m.annotation?recurse=true")).await;
    assert_eq!(ids(&deep)[0], nested);
    assert_eq!(deep["recursion_depth"], 3);
    // Bad tokens, unknown events and events of rooms one cannot see.
    let (s, b) = get(&k, &bt, &format!("{base}?from=nonsense")).await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM"))
    );
    let (s, b) = get(
        &k,
        &bt,
        &format!(
            "/_matrix/client/v1/rooms/{}/relations/{}",
            enc(&room.id),
            enc("$nope")
        ),
    )
    .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND"))
    );
    let (_, eve) = k.user("eve").await;
    let (s, _) = get(&k, &eve, &base).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a non-member learns nothing");
}

#[tokio::test]
async fn threads_are_bundled_and_listed_by_latest_activity() {
    let (k, at, bt, room) = setup().await;
    let t1 = send(&k, &at, &room, "m.room.message", text("thread one")).await;
    let t2 = send(&k, &bt, &room, "m.room.message", text("thread two")).await;
    send(&k, &bt, &room, "m.room.message", reply_in_thread(&t1, "a")).await;
    send(&k, &at, &room, "m.room.message", reply_in_thread(&t2, "b")).await;
    let last = send(&k, &bt, &room, "m.room.message", reply_in_thread(&t1, "c")).await;

    let root = event(&k, &at, &room, &t1).await;
    let thread = &root["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(thread["count"], 2, "{root}");
    assert_eq!(thread["latest_event"]["event_id"], last.as_str());
    assert_eq!(thread["current_user_participated"], true);

    let (_, eve_token) = k.user("eve").await;

    let list = format!("/_matrix/client/v1/rooms/{}/threads", enc(&room.id));
    let roots = |b: &Value| -> Vec<String> {
        b["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .map(|e| e["event_id"].as_str().expect("id").to_owned())
            .collect()
    };
    let (s, all) = get(&k, &at, &list).await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert_eq!(roots(&all), vec![t1.clone(), t2.clone()]);
    let (_, page1) = get(&k, &at, &format!("{list}?limit=1")).await;
    assert_eq!(roots(&page1), vec![t1.clone()]);
    let next = page1["next_batch"].as_str().expect("next_batch");
    let (_, page2) = get(&k, &at, &format!("{list}?limit=1&from={next}")).await;
    assert_eq!(roots(&page2), vec![t2.clone()]);

    // Carol takes part only in thread two.
    let (carol, ct) = k.user("carol").await;
    k.join(&ruma::RoomId::parse(&room.id).expect("room"), &carol)
        .await;
    send(
        &k,
        &ct,
        &room,
        "m.room.message",
        reply_in_thread(&t2, "me too"),
    )
    .await;
    let (_, mine) = get(&k, &ct, &format!("{list}?include=participated")).await;
    assert_eq!(roots(&mine), vec![t2.clone()]);
    let (_, now) = get(&k, &ct, &list).await;
    assert_eq!(roots(&now), vec![t2, t1], "a new reply moves a thread up");
    let (s, _) = get(&k, &eve_token, &list).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn snapshots_of_a_bundle_and_a_relations_page() {
    let (k, at, bt, room) = setup().await;
    let root = send(&k, &at, &room, "m.room.message", text("root")).await;
    send(
        &k,
        &at,
        &room,
        "m.room.message",
        edit(&root, "root, edited"),
    )
    .await;
    send(
        &k,
        &bt,
        &room,
        "m.room.message",
        reply_in_thread(&root, "in thread"),
    )
    .await;
    let reference = json!({ "msgtype": "m.text", "body": "see above",
        "m.relates_to": { "rel_type": "m.reference", "event_id": root } });
    send(&k, &bt, &room, "m.room.message", reference).await;
    let reaction =
        json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": root, "key": "👍" } });
    send(&k, &bt, &room, "m.reaction", reaction).await;

    let mut ev = event(&k, &bt, &room, &root).await;
    stable(&mut ev);
    insta::assert_json_snapshot!("bundled_aggregations", ev);
    let (_, mut page) = get(
        &k,
        &bt,
        &format!(
            "/_matrix/client/v1/rooms/{}/relations/{}?limit=3",
            enc(&room.id),
            enc(&root)
        ),
    )
    .await;
    stable(&mut page);
    insta::assert_json_snapshot!("relations_page", page);
}

#[tokio::test]
async fn unread_counts_split_by_thread_and_threaded_receipts() {
    let (k, at, bt, room) = setup().await;
    let root = send(&k, &at, &room, "m.room.message", text("root")).await;
    send(&k, &bt, &room, "m.room.message", text("main line")).await;
    send(
        &k,
        &bt,
        &room,
        "m.room.message",
        reply_in_thread(&root, "t1"),
    )
    .await;
    let last = send(
        &k,
        &bt,
        &room,
        "m.room.message",
        reply_in_thread(&root, "t2"),
    )
    .await;
    let filter = enc(r#"{"room":{"timeline":{"unread_thread_notifications":true}}}"#);
    let uri = format!("/_matrix/client/v3/sync?filter={filter}");
    let (main, threads) = split_counts(&k, &at, &uri, &room).await;
    assert_eq!(main, 1, "only the main-timeline message");
    assert_eq!(threads[&root]["notification_count"], 2, "{threads}");

    // Without the filter flag the counts are not split.
    let (_, plain) = get(&k, &at, "/_matrix/client/v3/sync").await;
    let r = &plain["rooms"]["join"][&room.id];
    assert_eq!(r["unread_notifications"]["notification_count"], 3);
    assert!(r.get("unread_thread_notifications").is_none());

    // A receipt in the thread reads the thread only.
    let (s, b) = k
        .call(
            Method::POST,
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                enc(&room.id),
                enc(&last)
            ),
            Some(&at),
            Some(json!({ "thread_id": root })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (main, threads) = split_counts(&k, &at, &uri, &room).await;
    assert_eq!(main, 1);
    assert_eq!(threads, json!({}));
}

async fn split_counts(k: &Kit, token: &str, uri: &str, room: &Room) -> (Value, Value) {
    let (_, sync) = get(k, token, uri).await;
    let r = &sync["rooms"]["join"][&room.id];
    (
        r["unread_notifications"]["notification_count"].clone(),
        r["unread_thread_notifications"].clone(),
    )
}
