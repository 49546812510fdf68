//! Also: the user directory cannot be used to enumerate a gateway's accounts.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::testkit::kit;

fn ids(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["user_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn by_default_only_room_mates_and_exact_ids_are_found() {
    let k = kit();
    let (alice, a) = k.user("alice").await;
    let (bob, _) = k.user("bob").await;
    let _ = k.user("alfred").await;
    let room = k.room(&alice).await;
    k.join(&room, &bob).await;
    let search = |term: &str| {
        k.call(
            Method::POST,
            "/_matrix/client/v3/user_directory/search",
            Some(&a),
            Some(json!({"search_term": term, "limit": 50})),
        )
    };
    // "a" matches alfred too, but alice shares no room with him.
    let (status, body) = search(":").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body), vec![alice.to_string(), bob.to_string()]);
    // Typing his exact user id finds him.
    let (_, body) = search("@alfred:example.org").await;
    assert_eq!(ids(&body), vec!["@alfred:example.org".to_owned()]);
    let (_, body) = search("alfred").await;
    assert_eq!(ids(&body), Vec::<String>::new());
}
