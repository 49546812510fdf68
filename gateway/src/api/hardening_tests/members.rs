//! Flaw 3: former members see the member list as of their leave, never the live one.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{assert_err, create_room, join};
use crate::testkit::{enc, kit};

fn users_of(body: &Value) -> Vec<(String, String)> {
    let mut out: Vec<_> = body["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .map(|e| {
            (
                e["state_key"].as_str().expect("key").to_owned(),
                e["content"]["membership"]
                    .as_str()
                    .expect("membership")
                    .to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn former_members_see_the_list_as_of_their_leave() {
    let k = kit();
    let (alice, a) = k.user("alice").await;
    let (bob, b) = k.user("bob").await;
    let (_carol, c) = k.user("carol").await;
    let (dave, d) = k.user("dave").await;
    let room = create_room(&k, &a, json!({"preset": "public_chat", "invite": [dave]})).await;
    let r = enc(&room);
    assert_eq!(join(&k, &b, &room).await.0, StatusCode::OK);
    let (status, _) = k
        .call(
            Method::POST,
            &format!("/_matrix/client/v3/rooms/{r}/leave"),
            Some(&b),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Dave rejects his invite; carol joins after bob left.
    let (status, _) = k
        .call(
            Method::POST,
            &format!("/_matrix/client/v3/rooms/{r}/leave"),
            Some(&d),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(join(&k, &c, &room).await.0, StatusCode::OK);

    let members = format!("/_matrix/client/v3/rooms/{r}/members");
    let (status, body) = k.call(Method::GET, &members, Some(&b), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        users_of(&body),
        vec![
            (alice.to_string(), "join".to_owned()),
            (bob.to_string(), "leave".to_owned()),
            (dave.to_string(), "invite".to_owned()),
        ]
    );
    // A current member sees everyone as they are now.
    let (_, now) = k.call(Method::GET, &members, Some(&a), None).await;
    assert_eq!(users_of(&now).len(), 4);
    // Joined members need current membership; never having joined is 403 for both.
    let joined = format!("/_matrix/client/v3/rooms/{r}/joined_members");
    assert_err(
        k.call(Method::GET, &joined, Some(&b), None).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_err(
        k.call(Method::GET, &members, Some(&d), None).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_err(
        k.call(Method::GET, &joined, Some(&d), None).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let aliases = format!("/_matrix/client/v3/rooms/{r}/aliases");
    assert_err(
        k.call(Method::GET, &aliases, Some(&b), None).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}
