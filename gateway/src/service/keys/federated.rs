//! `/keys/query` and `/keys/claim` across gateways: local users are answered here, users of
//! other gateways by their gateway through the `Remote` port (one request per gateway, all at
//! once, each bounded), and the answers merged. A gateway may only answer for its own users;
//! one that cannot be reached is listed in `failures`.

use std::{collections::BTreeMap, time::Duration};

use ruma::{OwnedServerName, OwnedUserId, UserId};
use serde_json::{json, Value};

use super::{ClaimedKeys, KeysQueryResult};
use crate::{error::ApiResult, service::Gateway};

/// How long one gateway may take to answer.
const REMOTE_WAIT: Duration = Duration::from_secs(10);

fn split<T: Clone>(
    gw: &Gateway,
    wanted: &BTreeMap<OwnedUserId, T>,
) -> (
    BTreeMap<OwnedUserId, T>,
    BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>>,
) {
    let mut local = BTreeMap::new();
    let mut remote: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>> = BTreeMap::new();
    for (user, v) in wanted {
        if user.server_name() == gw.server_name() {
            local.insert(user.clone(), v.clone());
        } else {
            remote
                .entry(user.server_name().to_owned())
                .or_default()
                .insert(user.clone(), v.clone());
        }
    }
    (local, remote)
}

/// Entries of `map` (user → value) whose user belongs to `server`.
fn own_users(map: &Value, server: &ruma::ServerName) -> Vec<(OwnedUserId, Value)> {
    map.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(u, v)| {
            let user = UserId::parse(u.as_str()).ok()?;
            (user.server_name() == server).then(|| (user, v.clone()))
        })
        .collect()
}

/// Answers a `/keys/query` for local and remote users; returns the keys and `failures`.
pub async fn query(
    gw: &Gateway,
    caller: &UserId,
    wanted: &BTreeMap<OwnedUserId, Vec<String>>,
) -> ApiResult<(KeysQueryResult, BTreeMap<String, Value>)> {
    let (local, remote) = split(gw, wanted);
    let mut result = gw.keys.query(&gw.users, caller, &local)?;
    let mut failures = BTreeMap::new();
    let asks = remote.into_iter().map(|(server, users)| async move {
        let answer = tokio::time::timeout(REMOTE_WAIT, gw.remote.query_keys(&server, users)).await;
        (server, answer)
    });
    for (server, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(Ok(body)) => {
                for (user, devices) in own_users(&body["device_keys"], &server) {
                    if let Ok(devices) = serde_json::from_value(devices) {
                        result.device_keys.insert(user, devices);
                    }
                }
                for (user, key) in own_users(&body["master_keys"], &server) {
                    result.master_keys.insert(user, key);
                }
                for (user, key) in own_users(&body["self_signing_keys"], &server) {
                    result.self_signing_keys.insert(user, key);
                }
            }
            Ok(Err(e)) => {
                failures.insert(server.to_string(), json!({ "error": e.message }));
            }
            Err(_) => {
                failures.insert(server.to_string(), json!({ "error": "timed out" }));
            }
        }
    }
    Ok((result, failures))
}

/// Answers a `/keys/claim` for local and remote users; returns the keys and `failures`.
pub async fn claim(
    gw: &Gateway,
    wanted: &BTreeMap<OwnedUserId, BTreeMap<String, String>>,
) -> ApiResult<(ClaimedKeys, BTreeMap<String, Value>)> {
    let (local, remote) = split(gw, wanted);
    let mut result = gw.keys.claim(&local).await?;
    let mut failures = BTreeMap::new();
    let asks = remote.into_iter().map(|(server, users)| async move {
        let answer = tokio::time::timeout(REMOTE_WAIT, gw.remote.claim_keys(&server, users)).await;
        (server, answer)
    });
    for (server, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(Ok(body)) => {
                for (user, devices) in own_users(&body, &server) {
                    if let Ok(devices) = serde_json::from_value(devices) {
                        result.insert(user, devices);
                    }
                }
            }
            Ok(Err(e)) => {
                failures.insert(server.to_string(), json!({ "error": e.message }));
            }
            Err(_) => {
                failures.insert(server.to_string(), json!({ "error": "timed out" }));
            }
        }
    }
    Ok((result, failures))
}

/// The `/keys/query` answer this gateway gives another: keys of its own users that share a
/// room with a user of `asker` (nobody else's), as `{device_keys, master_keys,
/// self_signing_keys}`.
pub fn answer_query(
    gw: &Gateway,
    asker: &ruma::ServerName,
    wanted: &BTreeMap<OwnedUserId, Vec<String>>,
) -> ApiResult<Value> {
    let entitled = entitled_users(gw, asker, wanted.keys())?;
    let wanted: BTreeMap<_, _> = wanted
        .iter()
        .filter(|(u, _)| entitled.contains(*u))
        .map(|(u, d)| (u.clone(), d.clone()))
        .collect();
    // Signatures a user-signing key made are shown only to its owner: nobody here.
    let nobody = UserId::parse(format!("@-:{asker}"))
        .map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
    let found = gw.keys.query(&gw.users, &nobody, &wanted)?;
    Ok(json!({
        "device_keys": found.device_keys,
        "master_keys": found.master_keys,
        "self_signing_keys": found.self_signing_keys,
    }))
}

/// The `/keys/claim` answer this gateway gives another (own users sharing a room with it).
pub async fn answer_claim(
    gw: &Gateway,
    asker: &ruma::ServerName,
    wanted: &BTreeMap<OwnedUserId, BTreeMap<String, String>>,
) -> ApiResult<Value> {
    let entitled = entitled_users(gw, asker, wanted.keys())?;
    let wanted: BTreeMap<_, _> = wanted
        .iter()
        .filter(|(u, _)| entitled.contains(*u))
        .map(|(u, d)| (u.clone(), d.clone()))
        .collect();
    Ok(serde_json::to_value(gw.keys.claim(&wanted).await?)?)
}

/// Which of `users` are local and share a room with a member of `asker`.
fn entitled_users<'a>(
    gw: &Gateway,
    asker: &ruma::ServerName,
    users: impl Iterator<Item = &'a OwnedUserId>,
) -> ApiResult<Vec<OwnedUserId>> {
    let mut out = Vec::new();
    for user in users {
        if user.server_name() != gw.server_name() {
            continue;
        }
        for room in gw.rooms.joined_rooms(user)? {
            if gw.rooms.server_in_room(&room, asker)? {
                out.push(user.clone());
                break;
            }
        }
    }
    Ok(out)
}
