//! Flaw 1: restricted rooms, and membership through the generic state endpoint.

use http::{Method, StatusCode};
use serde_json::json;

use super::{assert_err, create_room, join};
use crate::testkit::{enc, kit};

#[tokio::test]
async fn restricted_rooms_admit_members_of_allowed_rooms_only() {
    let k = kit();
    let (alice, a) = k.user("alice").await;
    let (bob, b) = k.user("bob").await;
    let (carol, c) = k.user("carol").await;
    let space = create_room(&k, &a, json!({"preset": "public_chat"})).await;
    let room = create_room(
        &k,
        &a,
        json!({"preset": "private_chat", "initial_state": [{
            "type": "m.room.join_rules", "state_key": "",
            "content": {"join_rule": "restricted",
                        "allow": [{"type": "m.room_membership", "room_id": space}]}
        }]}),
    )
    .await;
    let r = enc(&room);
    assert_eq!(join(&k, &b, &space).await.0, StatusCode::OK);

    // Carol is in no allowed room: asserting alice as authoriser must not let her in.
    let forged = k
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{r}/state/m.room.member/{}",
                enc(carol.as_str())
            ),
            Some(&c),
            Some(json!({"membership": "join", "join_authorised_via_users_server": alice})),
        )
        .await;
    assert_err(forged, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_err(
        join(&k, &c, &room).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_eq!(
        k.gw.rooms
            .membership(&ruma::RoomId::parse(&room).expect("id"), &carol)
            .expect("read"),
        None
    );

    // Bob is in the space: /join works and the gateway names alice (who may invite).
    let (status, body) = join(&k, &b, &room).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, member) = k
        .call(
            Method::GET,
            &format!(
                "/_matrix/client/v3/rooms/{r}/state/m.room.member/{}",
                enc(bob.as_str())
            ),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(member["join_authorised_via_users_server"], json!(alice));

    // A client-supplied authoriser is never kept.
    let (status, _) = k
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{r}/state/m.room.member/{}",
                enc(bob.as_str())
            ),
            Some(&b),
            Some(json!({"membership": "join", "displayname": "B",
                        "join_authorised_via_users_server": carol})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, member) = k
        .call(
            Method::GET,
            &format!(
                "/_matrix/client/v3/rooms/{r}/state/m.room.member/{}",
                enc(bob.as_str())
            ),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(member, json!({"membership": "join", "displayname": "B"}));
}

#[tokio::test]
async fn the_state_endpoint_follows_the_membership_rules() {
    let k = kit();
    let (_alice, a) = k.user("alice").await;
    let (bob, b) = k.user("bob").await;
    let (carol, c) = k.user("carol").await;
    let room = create_room(&k, &a, json!({"preset": "public_chat"})).await;
    let r = enc(&room);
    let member_url = |u: &str| {
        format!(
            "/_matrix/client/v3/rooms/{r}/state/m.room.member/{}",
            enc(u)
        )
    };
    assert_eq!(join(&k, &b, &room).await.0, StatusCode::OK);
    // Nobody joins for someone else, even in a public room.
    let forced = k
        .call(
            Method::PUT,
            &member_url(carol.as_str()),
            Some(&b),
            Some(json!({"membership": "join"})),
        )
        .await;
    assert_err(forced, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // Inviting an unknown local user is 404 as through /invite.
    let unknown = k
        .call(
            Method::PUT,
            &member_url("@nobody:example.org"),
            Some(&b),
            Some(json!({"membership": "invite"})),
        )
        .await;
    assert_err(unknown, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    // A kick of a non-member is refused as through /kick.
    let kick = k
        .call(
            Method::PUT,
            &member_url(carol.as_str()),
            Some(&a),
            Some(json!({"membership": "leave"})),
        )
        .await;
    assert_err(kick, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // Bob (power 0) cannot ban through the state endpoint either.
    let (_, _) = join(&k, &c, &room).await;
    let ban = k
        .call(
            Method::PUT,
            &member_url(carol.as_str()),
            Some(&b),
            Some(json!({"membership": "ban"})),
        )
        .await;
    assert_err(ban, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // Leaving oneself works.
    let (status, _) = k
        .call(
            Method::PUT,
            &member_url(bob.as_str()),
            Some(&b),
            Some(json!({"membership": "leave"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        k.gw.rooms
            .membership(&ruma::RoomId::parse(&room).expect("id"), &bob)
            .expect("read")
            .as_deref(),
        Some("leave")
    );
    // A member event without a state key through /send is refused.
    let sent = k
        .call(
            Method::PUT,
            &format!("/_matrix/client/v3/rooms/{r}/send/m.room.member/t1"),
            Some(&c),
            Some(json!({"membership": "join"})),
        )
        .await;
    assert_err(sent, StatusCode::BAD_REQUEST, "M_BAD_JSON");
}

#[tokio::test]
async fn knocking_follows_the_join_rule() {
    let k = kit();
    let (_alice, a) = k.user("alice").await;
    let (bob, b) = k.user("bob").await;
    let closed = create_room(&k, &a, json!({"preset": "private_chat"})).await;
    let knockable = create_room(
        &k,
        &a,
        json!({"preset": "private_chat", "room_version": "11", "initial_state": [{
            "type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}
        }]}),
    )
    .await;
    let knock = async |room: &str| {
        let path = format!("/_matrix/client/v3/knock/{}", enc(room));
        k.call(
            Method::POST,
            &path,
            Some(&b),
            Some(json!({"reason": "let me in"})),
        )
        .await
    };
    assert_err(knock(&closed).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (status, body) = knock(&knockable).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        k.gw.rooms
            .membership(&ruma::RoomId::parse(&knockable).expect("id"), &bob)
            .expect("read")
            .as_deref(),
        Some("knock")
    );
    // Knocking is not joining: still no way in without an invite.
    assert_err(
        join(&k, &b, &knockable).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}
