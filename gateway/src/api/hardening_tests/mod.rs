//! HTTP-level tests of issue 13 (security and conformance hardening): one file per flaw, each
//! reproducing what a hostile user could do before and checking it is refused now.

mod aliases;
mod connections;
mod directory;
mod identifiers;
mod members;
mod membership;
mod passwords;
mod pushers;
mod receipts;
mod room_versions;
mod sizes;
mod user_directory;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::testkit::{enc, Kit};

/// Creates a room through the API as `token` with `body`; returns its id.
async fn create_room(k: &Kit, token: &str, body: Value) -> String {
    let (status, created) = k
        .call(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    created["room_id"].as_str().expect("room id").to_owned()
}

/// `POST /join/{room}` as `token`.
async fn join(k: &Kit, token: &str, room: &str) -> (StatusCode, Value) {
    k.call(
        Method::POST,
        &format!("/_matrix/client/v3/join/{}", enc(room)),
        Some(token),
        Some(json!({})),
    )
    .await
}

/// Asserts a status and Matrix error code.
fn assert_err(got: (StatusCode, Value), status: StatusCode, errcode: &str) {
    assert_eq!(
        (got.0, got.1["errcode"].as_str()),
        (status, Some(errcode)),
        "{}",
        got.1
    );
}
