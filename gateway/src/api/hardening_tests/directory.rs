//! Flaw 6: publishing a room in the public directory needs moderator power.

use http::{Method, StatusCode};
use serde_json::json;

use super::{assert_err, create_room, join};
use crate::testkit::{enc, kit};

#[tokio::test]
async fn only_moderators_publish_or_unpublish() {
    let k = kit();
    let (_alice, a) = k.user("alice").await;
    let (bob, b) = k.user("bob").await;
    let private = create_room(
        &k,
        &a,
        json!({"preset": "private_chat", "name": "secret", "invite": [bob]}),
    )
    .await;
    assert_eq!(join(&k, &b, &private).await.0, StatusCode::OK);
    let public = create_room(
        &k,
        &a,
        json!({"preset": "public_chat", "visibility": "public"}),
    )
    .await;
    assert_eq!(join(&k, &b, &public).await.0, StatusCode::OK);
    let list = |room: &str| format!("/_matrix/client/v3/directory/list/room/{}", enc(room));

    let published = k
        .call(
            Method::PUT,
            &list(&private),
            Some(&b),
            Some(json!({"visibility": "public"})),
        )
        .await;
    assert_err(published, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let hidden = k
        .call(
            Method::PUT,
            &list(&public),
            Some(&b),
            Some(json!({"visibility": "private"})),
        )
        .await;
    assert_err(hidden, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (_, dir) = k
        .call(Method::GET, "/_matrix/client/v3/publicRooms", None, None)
        .await;
    let ids: Vec<_> = dir["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .map(|r| r["room_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(public)]);
    // The room's creator (power 100) may.
    let (status, _) = k
        .call(
            Method::PUT,
            &list(&private),
            Some(&a),
            Some(json!({"visibility": "public"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}
