//! Flaw 2: an ordinary member must not take over someone else's room alias.

use http::{Method, StatusCode};
use serde_json::json;

use super::{assert_err, create_room, join};
use crate::testkit::{enc, kit};

#[tokio::test]
async fn only_creator_or_moderator_deletes_an_alias() {
    let k = kit();
    let (_alice, a) = k.user("alice").await;
    let (_bob, b) = k.user("bob").await;
    let room = create_room(
        &k,
        &a,
        json!({"preset": "public_chat", "room_alias_name": "home"}),
    )
    .await;
    let own = create_room(&k, &b, json!({"preset": "public_chat"})).await;
    assert_eq!(join(&k, &b, &room).await.0, StatusCode::OK);
    let home = format!(
        "/_matrix/client/v3/directory/room/{}",
        enc("#home:example.org")
    );

    // Bob (power 0) may neither delete alice's alias nor, therefore, re-point it.
    let deleted = k.call(Method::DELETE, &home, Some(&b), None).await;
    assert_err(deleted, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let repointed = k
        .call(Method::PUT, &home, Some(&b), Some(json!({"room_id": own})))
        .await;
    assert_err(repointed, StatusCode::BAD_REQUEST, "M_ROOM_IN_USE");
    let (_, resolved) = k.call(Method::GET, &home, Some(&b), None).await;
    assert_eq!(resolved["room_id"], json!(room));

    // Bob may delete an alias he made; alice (moderator of the room) may delete it too.
    let mine = format!(
        "/_matrix/client/v3/directory/room/{}",
        enc("#bobs:example.org")
    );
    for (creator_deletes, token) in [(true, &b), (false, &a)] {
        let (status, _) = k
            .call(Method::PUT, &mine, Some(&b), Some(json!({"room_id": room})))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = k.call(Method::DELETE, &mine, Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "creator {creator_deletes}: {body}");
    }
    // The owner can still manage her own alias.
    let (status, _) = k.call(Method::DELETE, &home, Some(&a), None).await;
    assert_eq!(status, StatusCode::OK);
}
