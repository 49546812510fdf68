//! Flaw 7: event types and state keys within the spec's limits on every client send path.

use http::{Method, StatusCode};
use serde_json::json;

use super::{assert_err, create_room};
use crate::testkit::{enc, kit};

#[tokio::test]
async fn oversized_empty_or_nul_identifiers_are_refused() {
    let k = kit();
    let (_alice, a) = k.user("alice").await;
    let room = create_room(&k, &a, json!({"preset": "public_chat"})).await;
    let r = enc(&room);
    let long = "x".repeat(256);
    let send = |ty: &str| {
        format!(
            "/_matrix/client/v3/rooms/{r}/send/{}/t-{}",
            enc(ty),
            ty.len()
        )
    };
    let state = |ty: &str, key: &str| {
        format!(
            "/_matrix/client/v3/rooms/{r}/state/{}/{}",
            enc(ty),
            enc(key)
        )
    };
    let body = Some(json!({"body": "x"}));
    assert_err(
        k.call(Method::PUT, &send(&long), Some(&a), body.clone())
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    assert_err(
        k.call(Method::PUT, &send("a\0b"), Some(&a), body.clone())
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_err(
        k.call(Method::PUT, &state("m.x", &long), Some(&a), body.clone())
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    assert_err(
        k.call(Method::PUT, &state("m.x", "a\0"), Some(&a), body.clone())
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    // 255 bytes is fine.
    let (status, _) = k
        .call(
            Method::PUT,
            &state(&"y".repeat(255), &"z".repeat(255)),
            Some(&a),
            body,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // createRoom's initial state goes through the same check (empty type included).
    for bad in [
        json!({"type": "", "content": {}}),
        json!({"type": long, "content": {}}),
    ] {
        let (status, b) = k
            .call(
                Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(&a),
                Some(json!({"initial_state": [bad]})),
            )
            .await;
        assert!(status.is_client_error(), "{status} {b}");
    }
}
