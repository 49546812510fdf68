//! Also: every room version advertised as stable can be created and used.

use http::{Method, StatusCode};
use serde_json::json;

use super::join;
use crate::testkit::{enc, kit};

#[tokio::test]
async fn advertised_room_versions_work() {
    let k = kit();
    let (alice, a) = k.user("alice").await;
    let (_, b) = k.user("bob").await;
    let (_, caps) = k
        .call(
            Method::GET,
            "/_matrix/client/v3/capabilities",
            Some(&a),
            None,
        )
        .await;
    let available = caps["capabilities"]["m.room_versions"]["available"]
        .as_object()
        .expect("versions")
        .clone();
    assert!(!available.is_empty());
    for (version, stability) in available {
        if stability != "stable" {
            continue;
        }
        let (status, body) = k
            .call(
                Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(&a),
                Some(json!({"room_version": version, "preset": "public_chat"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "version {version}: {body}");
        let room = body["room_id"].as_str().expect("room").to_owned();
        assert_eq!(
            join(&k, &b, &room).await.0,
            StatusCode::OK,
            "join v{version}"
        );
        let (_, create) = k
            .call(
                Method::GET,
                &format!(
                    "/_matrix/client/v3/rooms/{}/state/m.room.create/",
                    enc(&room)
                ),
                Some(&a),
                None,
            )
            .await;
        assert_eq!(create["room_version"], json!(version));
        if version == "10" {
            assert_eq!(create["creator"], json!(alice));
        }
        let (status, _) = k
            .call(
                Method::PUT,
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/t-{version}",
                    enc(&room)
                ),
                Some(&b),
                Some(json!({"msgtype": "m.text", "body": "hi"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
}
