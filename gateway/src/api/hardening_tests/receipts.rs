//! Also: receipts and read markers only on events of the room; typing timeouts capped.

use http::{Method, StatusCode};
use serde_json::json;

use super::{assert_err, create_room, join};
use crate::testkit::{enc, kit};

#[tokio::test]
async fn receipts_need_an_event_of_the_room() {
    let k = kit();
    let (_alice, a) = k.user("alice").await;
    let (_bob, b) = k.user("bob").await;
    let room = create_room(&k, &a, json!({"preset": "public_chat"})).await;
    let other = create_room(&k, &a, json!({"preset": "public_chat"})).await;
    assert_eq!(join(&k, &b, &room).await.0, StatusCode::OK);
    let (_, sent) = k
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/t1",
                enc(&other)
            ),
            Some(&a),
            Some(json!({"msgtype": "m.text", "body": "elsewhere"})),
        )
        .await;
    let elsewhere = sent["event_id"].as_str().expect("event").to_owned();
    let (_, sent) = k
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/t2",
                enc(&room)
            ),
            Some(&a),
            Some(json!({"msgtype": "m.text", "body": "here"})),
        )
        .await;
    let here = sent["event_id"].as_str().expect("event").to_owned();
    let r = enc(&room);
    for bad in ["$unknownevent", elsewhere.as_str()] {
        assert_err(
            k.call(
                Method::POST,
                &format!("/_matrix/client/v3/rooms/{r}/receipt/m.read/{}", enc(bad)),
                Some(&b),
                Some(json!({})),
            )
            .await,
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        );
        assert_err(
            k.call(
                Method::POST,
                &format!("/_matrix/client/v3/rooms/{r}/read_markers"),
                Some(&b),
                Some(json!({"m.fully_read": bad, "m.read": bad})),
            )
            .await,
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        );
    }
    let (status, _) = k
        .call(
            Method::POST,
            &format!("/_matrix/client/v3/rooms/{r}/receipt/m.read/{}", enc(&here)),
            Some(&b),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = k
        .call(
            Method::POST,
            &format!("/_matrix/client/v3/rooms/{r}/read_markers"),
            Some(&b),
            Some(json!({"m.fully_read": here})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}
