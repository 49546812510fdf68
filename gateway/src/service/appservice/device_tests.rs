//! `device_id` masquerading: a ghost acts on its own device, uploads keys there and reads
//! its to-device messages.

use http::{Method, StatusCode};
use serde_json::json;

use super::query_tests::kit_for;
use crate::testkit::enc;

#[tokio::test]
async fn a_ghost_acts_on_its_own_device_with_keys_and_to_device_messages() {
    let dir = tempfile::tempdir().expect("dir");
    let k = kit_for("null", dir.path()).await;
    let (alice, at) = k.user("alice").await;
    let ghost = "@_bridge_gus:example.org";
    let (s, b) = k
        .call(
            Method::POST,
            "/_matrix/client/v3/register",
            Some("as-bridge"),
            Some(
                json!({ "type": "m.login.application_service", "username": "_bridge_gus",
                         "device_id": "GUSDEV" }),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let as_gus = |path: &str, device: Option<(&str, &str)>| {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut p = format!("{path}{sep}user_id={}", enc(ghost));
        if let Some((param, d)) = device {
            p.push_str(&format!("&{param}={d}"));
        }
        p
    };
    let whoami = "/_matrix/client/v3/account/whoami";
    for param in ["device_id", "org.matrix.msc3202.device_id"] {
        let (s, b) = k
            .call(
                Method::GET,
                &as_gus(whoami, Some((param, "GUSDEV"))),
                Some("as-bridge"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["device_id"], "GUSDEV", "{b}");
    }
    // A device the ghost does not have, and Alice's device, are refused.
    let alice_device = k.gw.users.devices(&alice).expect("devices")[0]
        .0
        .to_string();
    for device in ["NOPE", alice_device.as_str()] {
        let (s, b) = k
            .call(
                Method::GET,
                &as_gus(whoami, Some(("device_id", device))),
                Some("as-bridge"),
                None,
            )
            .await;
        assert_eq!(
            (s, b["errcode"].as_str()),
            (StatusCode::BAD_REQUEST, Some("M_UNKNOWN_DEVICE")),
            "{b}"
        );
    }
    // Keys: refused without a device, stored on the named one and seen by Alice.
    let keys = json!({ "device_keys": {
        "user_id": ghost, "device_id": "GUSDEV",
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": { "curve25519:GUSDEV": "curve", "ed25519:GUSDEV": "ed" },
        "signatures": {},
    }});
    let upload = "/_matrix/client/v3/keys/upload";
    let (s, b) = k
        .call(
            Method::POST,
            &as_gus(upload, None),
            Some("as-bridge"),
            Some(keys.clone()),
        )
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_MISSING_PARAM")),
        "{b}"
    );
    let (s, b) = k
        .call(
            Method::POST,
            &as_gus(upload, Some(("device_id", "GUSDEV"))),
            Some("as-bridge"),
            Some(keys),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = k
        .call(
            Method::POST,
            "/_matrix/client/v3/keys/query",
            Some(&at),
            Some(json!({ "device_keys": { ghost: [] } })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["device_keys"][ghost]["GUSDEV"]["keys"]["curve25519:GUSDEV"], "curve",
        "{b}"
    );
    // To-device: Alice writes to the ghost's device, the service reads it there.
    let (s, b) = k
        .call(
            Method::PUT,
            "/_matrix/client/v3/sendToDevice/m.test/t1",
            Some(&at),
            Some(json!({ "messages": { ghost: { "GUSDEV": { "hello": "gus" } } } })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = k
        .call(
            Method::GET,
            &as_gus(
                "/_matrix/client/v3/sync?timeout=0",
                Some(("device_id", "GUSDEV")),
            ),
            Some("as-bridge"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let events = b["to_device"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        events.iter().any(|e| e["type"] == "m.test"
            && e["content"]["hello"] == "gus"
            && e["sender"] == alice.as_str()),
        "{b}"
    );
}
