//! Blocked rooms: blocked by a deletion (also of a room never held) or by `PUT …/block`,
//! refused to every local join, invite and create; unblocking.

use http::{Method, StatusCode};
use serde_json::json;

use super::{
    room_delete_tests::{busy_room, delete},
    tests::{assert_err, setup},
};
use crate::testkit::enc;

#[tokio::test]
async fn a_blocked_room_cannot_be_joined_invited_into_or_created_again() {
    let (k, root, alice) = setup().await;
    let (room, bob) = busy_room(&k, &alice).await;
    let done = delete(&k, &root, &room, json!({"block": true, "purge": false})).await;
    assert_eq!(done["status"], "complete", "{done}");
    let r = enc(&room);
    let (_, carol) = k.user("carol").await;
    for token in [&carol, &bob] {
        let got = k
            .call(
                Method::POST,
                &format!("/_matrix/client/v3/rooms/{r}/join"),
                Some(token),
                Some(json!({})),
            )
            .await;
        assert_err(got.clone(), StatusCode::FORBIDDEN, "M_FORBIDDEN");
        assert_eq!(got.1["error"], "This room has been blocked on this server");
        let got = k
            .call(
                Method::POST,
                &format!("/_matrix/client/v3/join/{r}"),
                Some(token),
                Some(json!({})),
            )
            .await;
        assert_err(got, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    let got = k
        .call(
            Method::POST,
            &format!("/_matrix/client/v3/rooms/{r}/invite"),
            Some(&alice),
            Some(json!({"user_id": "@carol:example.org"})),
        )
        .await;
    assert_err(got, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // Synapse accepts blocking a room it never held; later joins are refused, and the id
    // cannot be created here.
    let ghost = ruma::RoomId::parse("!ghost:example.org").expect("room id");
    let (status, result) = k
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v1/rooms/{}", enc(ghost.as_str())),
            Some(&root),
            Some(json!({"block": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["kicked_users"], json!([]));
    let got = k
        .call(
            Method::POST,
            &format!("/_matrix/client/v3/join/{}", enc(ghost.as_str())),
            Some(&carol),
            Some(json!({})),
        )
        .await;
    assert_err(got, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let creator = ruma::UserId::parse("@carol:example.org").expect("user");
    let created =
        k.gw.rooms
            .write(&ghost, Some(ruma::RoomVersionId::V11), |txn| {
                txn.append(
                    &creator,
                    "m.room.create",
                    Some(""),
                    json!({"room_version": "11"}),
                    None,
                )
            })
            .await;
    assert_eq!(
        created.err().map(|e| e.errcode),
        Some("M_FORBIDDEN"),
        "a blocked id cannot be created"
    );
}

#[tokio::test]
async fn an_admin_blocks_and_unblocks_a_room_without_deleting_it() {
    let (k, root, alice) = setup().await;
    let (room, _) = busy_room(&k, &alice).await;
    let path = format!("/_synapse/admin/v1/rooms/{}/block", enc(&room));
    let (_, shown) = k.call(Method::GET, &path, Some(&root), None).await;
    assert_eq!(shown, json!({"block": false}));
    let (status, set) = k
        .call(
            Method::PUT,
            &path,
            Some(&root),
            Some(json!({"block": true})),
        )
        .await;
    assert_eq!((status, set), (StatusCode::OK, json!({"block": true})));
    let (_, shown) = k.call(Method::GET, &path, Some(&root), None).await;
    assert_eq!(
        shown,
        json!({"block": true, "user_id": "@root:example.org"})
    );
    let (_, carol) = k.user("carol").await;
    let join = format!("/_matrix/client/v3/join/{}", enc(&room));
    let got = k
        .call(Method::POST, &join, Some(&carol), Some(json!({})))
        .await;
    assert_err(got, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (status, _) = k
        .call(
            Method::PUT,
            &path,
            Some(&root),
            Some(json!({"block": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, joined) = k
        .call(Method::POST, &join, Some(&carol), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let got = k
        .call(Method::PUT, &path, Some(&root), Some(json!({})))
        .await;
    assert_err(got, StatusCode::BAD_REQUEST, "M_BAD_JSON");
}
