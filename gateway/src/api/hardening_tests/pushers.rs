//! Flaw 8: pusher URLs must be HTTPS push gateway URLs on public hosts.

use http::{Method, StatusCode};
use serde_json::json;

use super::assert_err;
use crate::testkit::{kit, kit_with};

fn pusher(url: &str) -> serde_json::Value {
    json!({"pushkey": "k", "kind": "http", "app_id": "im.example", "app_display_name": "E",
           "device_display_name": "D", "lang": "en", "data": {"url": url}})
}

#[tokio::test]
async fn pusher_urls_are_validated() {
    let k = kit();
    let (_, t) = k.user("alice").await;
    for url in [
        "file:///etc/passwd",
        "gopher://push.example/_matrix/push/v1/notify",
        "http://push.example/_matrix/push/v1/notify",
        "https://push.example/admin",
        "https://127.0.0.1/_matrix/push/v1/notify",
        "https://[::1]/_matrix/push/v1/notify",
        "https://10.0.0.5/_matrix/push/v1/notify",
        "https://localhost/_matrix/push/v1/notify",
        "not a url",
    ] {
        assert_err(
            k.call(
                Method::POST,
                "/_matrix/client/v3/pushers/set",
                Some(&t),
                Some(pusher(url)),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        );
    }
    let (status, _) = k
        .call(
            Method::POST,
            "/_matrix/client/v3/pushers/set",
            Some(&t),
            Some(pusher("https://push.example/_matrix/push/v1/notify")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = k
        .call(Method::GET, "/_matrix/client/v3/pushers", Some(&t), None)
        .await;
    assert_eq!(listed["pushers"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn operators_may_allow_a_local_push_gateway() {
    let k = kit_with(|c| c.push_allowed_private_hosts = vec!["127.0.0.1".into()]);
    let (_, t) = k.user("alice").await;
    let (status, body) = k
        .call(
            Method::POST,
            "/_matrix/client/v3/pushers/set",
            Some(&t),
            Some(pusher("http://127.0.0.1:5000/_matrix/push/v1/notify")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Only the listed host.
    assert_err(
        k.call(
            Method::POST,
            "/_matrix/client/v3/pushers/set",
            Some(&t),
            Some(pusher("http://10.0.0.1/_matrix/push/v1/notify")),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
}
