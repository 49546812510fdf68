//! `POST /search` through the router.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::testkit::{enc, kit, Kit};

const SEARCH: &str = "/_matrix/client/v3/search";

async fn send(k: &Kit, token: &str, room: &str, body: &str) -> String {
    let txn = crate::service::users::random_string(10);
    let (s, b) = k
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                enc(room)
            ),
            Some(token),
            Some(json!({ "msgtype": "m.text", "body": body })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["event_id"].as_str().expect("id").to_owned()
}

async fn state(k: &Kit, token: &str, room: &str, kind: &str, content: Value) {
    let (s, b) = k
        .call(
            Method::PUT,
            &format!("/_matrix/client/v3/rooms/{}/state/{kind}/", enc(room)),
            Some(token),
            Some(content),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

async fn search(k: &Kit, token: &str, criteria: Value, next: Option<&str>) -> Value {
    let uri = match next {
        Some(n) => format!("{SEARCH}?next_batch={}", enc(n)),
        None => SEARCH.to_owned(),
    };
    let (s, b) = k
        .call(
            Method::POST,
            &uri,
            Some(token),
            Some(json!({ "search_categories": { "room_events": criteria } })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["search_categories"]["room_events"].clone()
}

fn bodies(r: &Value) -> Vec<String> {
    r["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|x| {
            let c = &x["result"]["content"];
            c["body"]
                .as_str()
                .or(c["name"].as_str())
                .or(c["topic"].as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn finds_words_prefixes_names_and_topics() {
    let k = kit();
    let (alice, at) = k.user("alice").await;
    let room = k.room(&alice).await.to_string();
    send(&k, &at, &room, "The quick brown fox").await;
    send(&k, &at, &room, "a slow brown dog").await;
    send(&k, &at, &room, "Foxes are QUICK").await;
    state(
        &k,
        &at,
        &room,
        "m.room.name",
        json!({ "name": "Brown bag lunch" }),
    )
    .await;
    state(
        &k,
        &at,
        &room,
        "m.room.topic",
        json!({ "topic": "quick questions" }),
    )
    .await;

    let r = search(
        &k,
        &at,
        json!({ "search_term": "quick fox", "order_by": "recent" }),
        None,
    )
    .await;
    assert_eq!(bodies(&r), vec!["Foxes are QUICK", "The quick brown fox"]);
    assert_eq!(r["count"], 2);
    assert_eq!(r["highlights"], json!(["fox", "foxes", "quick"]));
    let r = search(
        &k,
        &at,
        json!({ "search_term": "brown", "order_by": "recent" }),
        None,
    )
    .await;
    assert_eq!(
        bodies(&r),
        vec!["Brown bag lunch", "a slow brown dog", "The quick brown fox"]
    );
    let r = search(
        &k,
        &at,
        json!({ "search_term": "quick", "keys": ["content.topic"] }),
        None,
    )
    .await;
    assert_eq!(bodies(&r), vec!["quick questions"]);
    // Words under three characters match whole words only.
    let r = search(&k, &at, json!({ "search_term": "do" }), None).await;
    assert_eq!(r["count"], 0);
    // Rank: the shorter, denser match first.
    let r = search(&k, &at, json!({ "search_term": "quick" }), None).await;
    assert_eq!(
        bodies(&r),
        vec!["quick questions", "Foxes are QUICK", "The quick brown fox"],
        "{r}"
    );
}

#[tokio::test]
async fn pages_in_both_orders() {
    let k = kit();
    let (alice, at) = k.user("alice").await;
    let room = k.room(&alice).await.to_string();
    for i in 0..7 {
        send(&k, &at, &room, &format!("tea number {i}")).await;
    }
    for order in ["recent", "rank"] {
        let mut next: Option<String> = None;
        let mut seen = Vec::new();
        loop {
            let r = search(
                &k,
                &at,
                json!({ "search_term": "tea", "order_by": order, "filter": { "limit": 3 } }),
                next.as_deref(),
            )
            .await;
            assert_eq!(r["count"], 7);
            let page = bodies(&r);
            assert!(page.len() <= 3);
            seen.extend(page);
            match r["next_batch"].as_str() {
                Some(n) => next = Some(n.to_owned()),
                None => break,
            }
        }
        seen.sort();
        let mut expected: Vec<String> = (0..7).map(|i| format!("tea number {i}")).collect();
        expected.sort();
        assert_eq!(seen, expected, "{order}: every result once");
    }
    let (s, b) = k
        .call(
            Method::POST,
            &format!("{SEARCH}?next_batch=garbage"),
            Some(&at),
            Some(json!({ "search_categories": { "room_events": { "search_term": "tea" } } })),
        )
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM"))
    );
}

#[tokio::test]
async fn history_visibility_membership_and_redactions_are_honoured() {
    let k = kit();
    let (alice, at) = k.user("alice").await;
    let (bob, bt) = k.user("bob").await;
    let (_, et) = k.user("eve").await;
    let room_id = k.room(&alice).await;
    let room = room_id.to_string();
    state(
        &k,
        &at,
        &room,
        "m.room.history_visibility",
        json!({ "history_visibility": "joined" }),
    )
    .await;
    send(&k, &at, &room, "secret plan before bob").await;
    k.join(&room_id, &bob).await;
    send(&k, &at, &room, "secret plan after bob joined").await;
    let gone = send(&k, &at, &room, "secret plan to redact").await;
    let (s, _) = k
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/r1",
                enc(&room),
                enc(&gone)
            ),
            Some(&at),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    let q = json!({ "search_term": "secret plan", "order_by": "recent" });
    let r = search(&k, &bt, q.clone(), None).await;
    assert_eq!(bodies(&r), vec!["secret plan after bob joined"]);
    let r = search(&k, &at, q.clone(), None).await;
    assert_eq!(
        bodies(&r),
        vec!["secret plan after bob joined", "secret plan before bob"]
    );
    let r = search(&k, &et, q, None).await;
    assert_eq!(r["count"], 0, "a non-member finds nothing");
}

#[tokio::test]
async fn context_profiles_and_a_snapshot() {
    let k = kit();
    let (alice, at) = k.user("alice").await;
    let room = k.room(&alice).await.to_string();
    send(&k, &at, &room, "before").await;
    send(&k, &at, &room, "the needle").await;
    send(&k, &at, &room, "after").await;
    let mut r = search(
        &k,
        &at,
        json!({ "search_term": "needle",
                "event_context": { "before_limit": 1, "after_limit": 1, "include_profile": true } }),
        None,
    )
    .await;
    let ctx = &r["results"][0]["context"];
    assert_eq!(ctx["events_before"][0]["content"]["body"], "before");
    assert_eq!(ctx["events_after"][0]["content"]["body"], "after");
    assert_eq!(ctx["profile_info"][alice.as_str()]["displayname"], "alice");
    crate::service::relations::tests_support::stable(&mut r);
    insta::assert_json_snapshot!("search_result", r);
}

#[tokio::test]
async fn bad_bodies_are_refused() {
    let k = kit();
    let (_, at) = k.user("alice").await;
    for body in [
        json!({}),
        json!({ "search_categories": { "room_events": { "search_term": 5 } } }),
        json!({ "search_categories": { "room_events": { "search_term": "x", "order_by": "loudest" } } }),
        json!({ "search_categories": { "room_events": { "search_term": "x", "keys": ["content.secret"] } } }),
    ] {
        let (s, b) = k
            .call(Method::POST, SEARCH, Some(&at), Some(body.clone()))
            .await;
        assert_eq!(
            (s, b["errcode"].as_str()),
            (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")),
            "{body}"
        );
    }
    let (s, _) = k
        .call(
            Method::POST,
            SEARCH,
            None,
            Some(json!({ "search_categories": {} })),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_index_is_rebuilt_from_the_timelines() {
    let k = kit();
    let (alice, at) = k.user("alice").await;
    let room = k.room(&alice).await.to_string();
    send(&k, &at, &room, "remember me").await;
    // Drop the index and its version, as in a database from before it existed.
    let mut batch = storage::Batch::new();
    let terms = storage::RawTable::new("search_terms");
    for (key, _) in terms.scan_prefix(&k.gw.db, b"").expect("scan") {
        terms.delete(&mut batch, &key);
    }
    storage::RawTable::new("derived_meta").delete(&mut batch, b"derived_index_version");
    k.gw.db.apply(batch).expect("apply");
    let r = search(&k, &at, json!({ "search_term": "remember" }), None).await;
    assert_eq!(r["count"], 0);
    let indexed =
        crate::service::derived::rebuild_if_needed(&k.gw.db, &k.gw.rooms).expect("rebuild");
    assert!(indexed > 0);
    let r = search(&k, &at, json!({ "search_term": "remember" }), None).await;
    assert_eq!(r["count"], 1);
    assert_eq!(
        crate::service::derived::rebuild_if_needed(&k.gw.db, &k.gw.rooms).expect("again"),
        0,
        "a current index is not rebuilt"
    );
}
