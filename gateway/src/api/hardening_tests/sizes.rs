//! Flaw 4: what a user can store or push to others is bounded.

use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::assert_err;
use crate::{
    service::limits,
    testkit::{enc, kit},
};

#[tokio::test]
async fn to_device_messages_are_bounded_in_size_queue_and_per_sync() {
    let k = kit();
    let (_mallory, m) = k.user("mallory").await;
    let (bob, b) = k.user("bob").await;
    let (_, me) = k
        .call(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            Some(&b),
            None,
        )
        .await;
    let device = me["device_id"].as_str().expect("device").to_owned();
    let send = |txn: usize, content: Value| {
        let body = json!({"messages": {bob.as_str(): {device.as_str(): content}}});
        let path = format!("/_matrix/client/v3/sendToDevice/m.x/t{txn}");
        (path, body)
    };
    // One message over the cap is refused outright.
    let (path, body) = send(
        0,
        json!({"pad": "x".repeat(limits::MAX_TO_DEVICE_CONTENT_BYTES)}),
    );
    assert_err(
        k.call(Method::PUT, &path, Some(&m), Some(body)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    // Messages just under the cap: one /sync carries about MAX_TO_DEVICE_SYNC_BYTES of them.
    let big = "y".repeat(limits::MAX_TO_DEVICE_CONTENT_BYTES - 100);
    let n = limits::MAX_TO_DEVICE_SYNC_BYTES / big.len() + 5;
    for i in 1..=n {
        let (path, body) = send(i, json!({"pad": big}));
        let (status, _) = k.call(Method::PUT, &path, Some(&m), Some(body)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, first) = k
        .call(
            Method::GET,
            "/_matrix/client/v3/sync?timeout=0",
            Some(&b),
            None,
        )
        .await;
    let got = first["to_device"]["events"].as_array().map_or(0, Vec::len);
    assert!(got > 0 && got < n, "one sync carried {got} of {n}");
    let since = first["next_batch"].as_str().expect("token");
    let (_, second) = k
        .call(
            Method::GET,
            &format!("/_matrix/client/v3/sync?timeout=0&since={since}"),
            Some(&b),
            None,
        )
        .await;
    let rest = second["to_device"]["events"].as_array().map_or(0, Vec::len);
    assert_eq!(got + rest, n);
    // The inbox of a device that does not sync stops growing at the cap.
    for i in 0..limits::MAX_TO_DEVICE_QUEUE + 20 {
        let (path, body) = send(10_000 + i, json!({"i": i}));
        let (status, _) = k.call(Method::PUT, &path, Some(&m), Some(body)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let pending = k.gw.to_device.pending_count(&bob, &device).expect("count");
    assert_eq!(pending, limits::MAX_TO_DEVICE_QUEUE);
}

#[tokio::test]
async fn keys_names_account_data_and_filters_are_bounded() {
    let k = kit();
    let (alice, a) = k.user("alice").await;
    let (_, me) = k
        .call(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            Some(&a),
            None,
        )
        .await;
    let device = me["device_id"].as_str().expect("device").to_owned();
    let huge = "z".repeat(200 * 1024);
    let keys = json!({"device_keys": {
        "user_id": alice, "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
        "keys": {}, "signatures": {}, "extra": huge,
    }});
    assert_err(
        k.call(
            Method::POST,
            "/_matrix/client/v3/keys/upload",
            Some(&a),
            Some(keys),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    let otk = json!({"one_time_keys": {"signed_curve25519:AAAA": {"key": huge}}});
    assert_err(
        k.call(
            Method::POST,
            "/_matrix/client/v3/keys/upload",
            Some(&a),
            Some(otk),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    let rename = k
        .call(
            Method::PUT,
            &format!("/_matrix/client/v3/devices/{}", enc(&device)),
            Some(&a),
            Some(json!({"display_name": "n".repeat(limits::MAX_DEVICE_NAME_BYTES + 1)})),
        )
        .await;
    assert_err(rename, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let data = k
        .call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/user/{}/account_data/m.big",
                enc(alice.as_str())
            ),
            Some(&a),
            Some(json!({"pad": huge})),
        )
        .await;
    assert_err(data, StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    let filter = k
        .call(
            Method::POST,
            &format!("/_matrix/client/v3/user/{}/filter", enc(alice.as_str())),
            Some(&a),
            Some(json!({"event_fields": [huge]})),
        )
        .await;
    assert_err(filter, StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    // Any JSON body beyond the cap is refused before it is parsed.
    let body = json!({"pad": "w".repeat(limits::MAX_JSON_BODY_BYTES)});
    assert_err(
        k.call(
            Method::PUT,
            &format!(
                "/_matrix/client/v3/user/{}/account_data/m.x",
                enc(alice.as_str())
            ),
            Some(&a),
            Some(body),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
}
