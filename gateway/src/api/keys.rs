//! End-to-end encryption key endpoints: `/keys/upload`, `/keys/query`, `/keys/claim`,
//! `/keys/changes`, `/keys/signatures/upload` and `/keys/device_signing/upload`.

use std::{collections::BTreeMap, sync::Arc};

use axum::{extract::State, Router};
use ruma::{
    api::client::keys::{
        claim_keys::v3 as claim, get_key_changes::v3 as changes, get_keys::v3 as query,
        upload_keys::v3 as upload, upload_signatures::v3 as signatures,
        upload_signing_keys::v3 as signing_keys,
    },
    serde::Raw,
    OwnedUserId, UInt,
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use super::{add, Ruma, RumaResponse, RumaResult};
use crate::{
    error::{ApiError, ApiResult},
    service::{
        keys::{CrossSigningUpload, KeysUpload},
        uiaa, Gateway,
    },
};

/// Re-types a value through JSON (stored JSON into ruma types and back).
pub(super) fn convert<T: DeserializeOwned>(value: impl Serialize) -> ApiResult<T> {
    let json = serde_json::to_value(value).map_err(|e| ApiError::internal(e.to_string()))?;
    serde_json::from_value(json).map_err(|e| {
        tracing::error!(error = %e, "stored key data does not fit the response type");
        ApiError::internal("Stored data is not valid")
    })
}

/// The JSON of a raw ruma value.
pub(super) fn json_of<T>(raw: &Raw<T>) -> ApiResult<Value> {
    serde_json::from_str(raw.json().get()).map_err(|e| ApiError::bad_json(e.to_string()))
}

/// A stream position from a `/keys/changes` token (`123`, or `s123…` as some servers write).
fn position(token: &str) -> ApiResult<u64> {
    let digits: String = token
        .strip_prefix('s')
        .unwrap_or(token)
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .map_err(|_| ApiError::invalid_param(format!("Invalid stream token {token:?}")))
}

async fn upload_keys(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<upload::Request>,
) -> RumaResult<upload::Response> {
    let caller = req.caller()?;
    if !caller.has_device() {
        return Err(ApiError::new(
            http::StatusCode::BAD_REQUEST,
            "M_MISSING_PARAM",
            "An application service uploads keys for one of its users' devices: pass device_id",
        ));
    }
    let body = &req.body;
    let mut up = KeysUpload {
        device_keys: body.device_keys.as_ref().map(json_of).transpose()?,
        ..Default::default()
    };
    for (id, key) in &body.one_time_keys {
        up.one_time_keys.insert(id.to_string(), json_of(key)?);
    }
    for (id, key) in &body.fallback_keys {
        up.fallback_keys.insert(id.to_string(), json_of(key)?);
    }
    let counts = gw
        .keys
        .upload(&caller.user_id, caller.device_id.as_str(), up)
        .await?;
    let counts = counts
        .into_iter()
        .map(|(alg, n)| (alg.as_str().into(), UInt::new_saturating(n)))
        .collect();
    Ok(RumaResponse(upload::Response::new(counts)))
}

async fn query_keys(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<query::Request>,
) -> RumaResult<query::Response> {
    let caller = req.caller()?;
    let wanted: BTreeMap<OwnedUserId, Vec<String>> = req
        .body
        .device_keys
        .iter()
        .map(|(u, ds)| (u.clone(), ds.iter().map(|d| d.to_string()).collect()))
        .collect();
    let (found, failures) =
        crate::service::keys::federated::query(&gw, &caller.user_id, &wanted).await?;
    let mut res = query::Response::new();
    res.failures = convert(&failures)?;
    res.device_keys = convert(&found.device_keys)?;
    res.master_keys = convert(&found.master_keys)?;
    res.self_signing_keys = convert(&found.self_signing_keys)?;
    res.user_signing_keys = convert(&found.user_signing_keys)?;
    Ok(RumaResponse(res))
}

async fn claim_keys(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<claim::Request>,
) -> RumaResult<claim::Response> {
    req.caller()?;
    let wanted: BTreeMap<OwnedUserId, BTreeMap<String, String>> = req
        .body
        .one_time_keys
        .iter()
        .map(|(u, ds)| {
            (
                u.clone(),
                ds.iter()
                    .map(|(d, alg)| (d.to_string(), alg.to_string()))
                    .collect(),
            )
        })
        .collect();
    let (claimed, failures) = crate::service::keys::federated::claim(&gw, &wanted).await?;
    let mut res = claim::Response::new(convert(&claimed)?);
    res.failures = convert(&failures)?;
    Ok(RumaResponse(res))
}

async fn key_changes(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<changes::Request>,
) -> RumaResult<changes::Response> {
    let caller = req.caller()?;
    let from = position(&req.body.from)?;
    let to = position(&req.body.to)?;
    // The same lists as `device_lists` in /sync over the same positions.
    let (changed, left) =
        crate::service::sync::device_list_changes(&gw, &caller.user_id, from, to)?;
    Ok(RumaResponse(changes::Response::new(changed, left)))
}

async fn upload_signatures(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<signatures::Request>,
) -> RumaResult<signatures::Response> {
    let caller = req.caller()?;
    let signed: BTreeMap<OwnedUserId, BTreeMap<String, Value>> = convert(&req.body.signed_keys)?;
    let failures = gw.keys.upload_signatures(&caller.user_id, &signed).await?;
    if !failures.is_empty() {
        tracing::debug!(user = %caller.user_id, ?failures, "signatures refused");
    }
    let mut res = signatures::Response::new();
    res.failures = convert(&failures)?;
    Ok(RumaResponse(res))
}

async fn upload_signing_keys(
    State(gw): State<Arc<Gateway>>,
    req: Ruma<signing_keys::Request>,
) -> RumaResult<signing_keys::Response> {
    let caller = req.caller()?;
    let body = &req.body;
    let upload = CrossSigningUpload {
        master: body.master_key.as_ref().map(json_of).transpose()?,
        self_signing: body.self_signing_key.as_ref().map(json_of).transpose()?,
        user_signing: body.user_signing_key.as_ref().map(json_of).transpose()?,
    };
    if gw
        .keys
        .cross_signing_upload_needs_auth(&caller.user_id, &upload)?
    {
        uiaa::require_password(&gw, &caller.user_id, req.ip, req.json.as_ref()).await?;
    }
    gw.keys
        .upload_cross_signing(&caller.user_id, upload)
        .await?;
    Ok(RumaResponse(signing_keys::Response::new()))
}

pub(super) fn routes(r: axum::Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    let r = add::<upload::Request, _, _>(r, upload_keys);
    let r = add::<query::Request, _, _>(r, query_keys);
    let r = add::<claim::Request, _, _>(r, claim_keys);
    let r = add::<changes::Request, _, _>(r, key_changes);
    let r = add::<signatures::Request, _, _>(r, upload_signatures);
    add::<signing_keys::Request, _, _>(r, upload_signing_keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_tokens() {
        assert_eq!(position("42").expect("plain"), 42);
        assert_eq!(position("s42_7").expect("prefixed"), 42);
        assert_eq!(position("x").expect_err("bad").errcode, "M_INVALID_PARAM");
    }
}

#[cfg(test)]
mod http_tests {
    use http::{Method, StatusCode};
    use serde_json::json;

    use crate::{
        api::e2ee_testing::{call, gateway, user, PASSWORD},
        service::keys::{keypair, sign_as},
    };

    fn device_keys(user: &str, device: &str) -> serde_json::Value {
        json!({
            "user_id": user,
            "device_id": device,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                format!("curve25519:{device}"): format!("curve{device}"),
                format!("ed25519:{device}"): format!("ed{device}"),
            },
            "signatures": { user: { format!("ed25519:{device}"): "sig" } }
        })
    }

    #[tokio::test]
    async fn upload_query_claim_over_http() {
        let (gw, app) = gateway();
        let alice = user(&gw, "alice", "ADEV").await;
        let bob = user(&gw, "bob", "BDEV").await;
        let (status, body) = call(
            &app,
            Method::POST,
            "/_matrix/client/v3/keys/upload",
            &alice,
            Some(json!({
                "device_keys": device_keys("@alice:test.local", "ADEV"),
                "one_time_keys": {
                    "signed_curve25519:AAAAAQ": {"key": "otk1", "signatures": {}},
                },
                "fallback_keys": {
                    "signed_curve25519:AAAAAg": {"key": "fb", "fallback": true, "signatures": {}},
                },
            })),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            json!({"one_time_key_counts": {"signed_curve25519": 1}})
        );

        // Keys for another device are refused.
        let (status, body) = call(
            &app,
            Method::POST,
            "/_matrix/client/v3/keys/upload",
            &bob,
            Some(json!({ "device_keys": device_keys("@alice:test.local", "ADEV") })),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["errcode"], "M_INVALID_PARAM");

        let (status, body) = call(
            &app,
            Method::POST,
            "/_matrix/client/v3/keys/query",
            &bob,
            Some(json!({"device_keys": {"@alice:test.local": []}})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        insta::assert_json_snapshot!("keys_query", body);

        let claim = json!({"one_time_keys": {"@alice:test.local": {"ADEV": "signed_curve25519"}}});
        let (status, first) = call(
            &app,
            Method::POST,
            "/_matrix/client/v3/keys/claim",
            &bob,
            Some(claim.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        insta::assert_json_snapshot!("keys_claim", first);
        let (_, second) = call(
            &app,
            Method::POST,
            "/_matrix/client/v3/keys/claim",
            &bob,
            Some(claim),
        )
        .await;
        assert_eq!(
            second["one_time_keys"]["@alice:test.local"]["ADEV"]["signed_curve25519:AAAAAg"]["key"],
            "fb"
        );
        assert_eq!(
            gw.keys
                .unused_fallback_key_types(ruma::user_id!("@alice:test.local"), "ADEV")
                .expect("types"),
            Vec::<String>::new()
        );

        // Alice's own change shows in /keys/changes; nobody shares a room with her.
        let to = gw.stream.current().to_string();
        let (status, body) = call(
            &app,
            Method::GET,
            &format!("/_matrix/client/v3/keys/changes?from=0&to={to}"),
            &alice,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"changed": ["@alice:test.local"], "left": []}));
        let (_, body) = call(
            &app,
            Method::GET,
            &format!("/_matrix/client/v3/keys/changes?from=0&to={to}"),
            &bob,
            None,
        )
        .await;
        assert_eq!(body["changed"], json!([]));
    }

    #[tokio::test]
    async fn device_signing_needs_uia_only_to_replace_keys() {
        let (gw, app) = gateway();
        let alice = user(&gw, "alice", "ADEV").await;
        let uid = "@alice:test.local";
        let cross_signing = || {
            let (mpair, mpub) = keypair();
            let (spair, spub) = keypair();
            let master = json!({"user_id": uid, "usage": ["master"],
                                "keys": {format!("ed25519:{mpub}"): mpub}});
            let mut ssk = json!({"user_id": uid, "usage": ["self_signing"],
                                 "keys": {format!("ed25519:{spub}"): spub}});
            sign_as(&mut ssk, uid, &mpair, &mpub);
            let _ = spair;
            json!({"master_key": master, "self_signing_key": ssk})
        };
        let path = "/_matrix/client/v3/keys/device_signing/upload";
        let first = cross_signing();
        let (status, body) = call(&app, Method::POST, path, &alice, Some(first.clone())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Re-uploading the same keys needs no auth either.
        let (status, _) = call(&app, Method::POST, path, &alice, Some(first)).await;
        assert_eq!(status, StatusCode::OK);

        let second = cross_signing();
        let (status, body) = call(&app, Method::POST, path, &alice, Some(second.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["flows"], json!([{"stages": ["m.login.password"]}]));
        let session = body["session"].as_str().expect("session").to_owned();

        let mut wrong = second.clone();
        wrong["auth"] = json!({"type": "m.login.password", "session": session,
            "identifier": {"type": "m.id.user", "user": "alice"}, "password": "wrong"});
        let (status, _) = call(&app, Method::POST, path, &alice, Some(wrong)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let mut authed = second.clone();
        authed["auth"] = json!({"type": "m.login.password", "session": session,
            "identifier": {"type": "m.id.user", "user": "alice"}, "password": PASSWORD});
        let (status, body) = call(&app, Method::POST, path, &alice, Some(authed)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, body) = call(
            &app,
            Method::POST,
            "/_matrix/client/v3/keys/query",
            &alice,
            Some(json!({"device_keys": {uid: []}})),
        )
        .await;
        assert_eq!(body["master_keys"][uid], second["master_key"]);
        assert_eq!(body["self_signing_keys"][uid], second["self_signing_key"]);
    }
}
