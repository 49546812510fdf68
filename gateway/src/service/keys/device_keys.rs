//! Device identity keys: upload (with one-time and fallback keys), query and deletion.

use std::collections::BTreeMap;

use ruma::{OwnedUserId, UserId};
use serde_json::{Map, Value};
use storage::key;

use super::{device_prefix, user_prefix, CrossSigningKind, Keys};
use crate::{
    error::{ApiError, ApiResult},
    service::{limits, users::Users},
};

/// What a `/keys/upload` request carries, as JSON objects.
#[derive(Debug, Default, Clone)]
pub struct KeysUpload {
    /// The device's identity keys, if the client sends them.
    pub device_keys: Option<Value>,
    /// One-time keys by full key id (`signed_curve25519:AAAAAQ`).
    pub one_time_keys: BTreeMap<String, Value>,
    /// Fallback keys by full key id; each replaces the fallback key of its algorithm.
    pub fallback_keys: BTreeMap<String, Value>,
}

/// 413 `M_TOO_LARGE` if the device keys or any one-time or fallback key is over
/// [`limits::MAX_KEY_OBJECT_BYTES`] (they are served to everyone who queries the user).
fn check_upload_sizes(upload: &KeysUpload) -> ApiResult<()> {
    if let Some(keys) = &upload.device_keys {
        limits::check_size("Device keys", keys, limits::MAX_KEY_OBJECT_BYTES)?;
    }
    for key in upload
        .one_time_keys
        .values()
        .chain(upload.fallback_keys.values())
    {
        limits::check_size("A one-time key", key, limits::MAX_KEY_OBJECT_BYTES)?;
    }
    Ok(())
}

/// The answer to a `/keys/query`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct KeysQueryResult {
    /// Device keys by user and device, with `unsigned.device_display_name`.
    pub device_keys: BTreeMap<OwnedUserId, BTreeMap<String, Value>>,
    /// Master keys by user.
    pub master_keys: BTreeMap<OwnedUserId, Value>,
    /// Self-signing keys by user.
    pub self_signing_keys: BTreeMap<OwnedUserId, Value>,
    /// The caller's own user-signing key (never another user's).
    pub user_signing_keys: BTreeMap<OwnedUserId, Value>,
}

/// Merges the `signatures` of `from` into those of `into` (entries of `from` win).
pub(super) fn merge_signatures(into: &mut Value, from: &Value) {
    let Some(from_sigs) = from.get("signatures").and_then(Value::as_object) else {
        return;
    };
    let Some(obj) = into.as_object_mut() else {
        return;
    };
    let sigs = obj
        .entry("signatures")
        .or_insert_with(|| Value::Object(Map::new()));
    if !sigs.is_object() {
        *sigs = Value::Object(Map::new());
    }
    let Some(sigs) = sigs.as_object_mut() else {
        return;
    };
    for (signer, by_key) in from_sigs {
        let Some(by_key) = by_key.as_object() else {
            continue;
        };
        let entry = sigs
            .entry(signer.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(entry) = entry.as_object_mut() {
            for (key_id, sig) in by_key {
                entry.insert(key_id.clone(), sig.clone());
            }
        }
    }
}

/// Checks that uploaded device keys belong to the uploading device.
fn check_device_keys(keys: &Value, user: &UserId, device: &str) -> ApiResult<()> {
    if keys.get("user_id").and_then(Value::as_str) != Some(user.as_str()) {
        return Err(ApiError::invalid_param(
            "user_id in device_keys does not match the access token",
        ));
    }
    if keys.get("device_id").and_then(Value::as_str) != Some(device) {
        return Err(ApiError::invalid_param(
            "device_id in device_keys does not match the access token",
        ));
    }
    if !keys.get("keys").is_some_and(Value::is_object) {
        return Err(ApiError::bad_json("device_keys.keys must be an object"));
    }
    Ok(())
}

impl Keys {
    /// Stores what a device uploaded and returns its one-time key counts afterwards.
    ///
    /// New or changed device keys record a device-list change (signatures already stored for
    /// unchanged key material are kept). One-time keys whose id is already stored with other
    /// content are refused, as are keys for a device other than the caller's.
    pub async fn upload(
        &self,
        user: &UserId,
        device: &str,
        upload: KeysUpload,
    ) -> ApiResult<BTreeMap<String, u64>> {
        check_upload_sizes(&upload)?;
        let _guard = self.lock.lock().await;
        if !upload.one_time_keys.is_empty() {
            let stored: u64 = self.one_time_key_counts(user, device)?.values().sum();
            let total = usize::try_from(stored)
                .unwrap_or(usize::MAX)
                .saturating_add(upload.one_time_keys.len());
            if total > limits::MAX_ONE_TIME_KEYS_PER_DEVICE {
                return Err(ApiError::too_large(format!(
                    "A device may store at most {} one-time keys",
                    limits::MAX_ONE_TIME_KEYS_PER_DEVICE
                )));
            }
        }
        let dkey = key(&[user.as_bytes(), device.as_bytes()]);
        let mut new_device_keys = None;
        // A device that re-registers with new identity keys (a client that lost its store but
        // kept its device id) invalidates its old one-time and fallback keys.
        let mut new_identity = false;
        if let Some(mut keys) = upload.device_keys {
            check_device_keys(&keys, user, device)?;
            if let Some(obj) = keys.as_object_mut() {
                obj.remove("unsigned");
            }
            let old = self.t.device_keys.get(&self.db, &dkey)?;
            if let Some(old) = &old {
                if old.get("keys") == keys.get("keys") {
                    let mut merged = old.clone();
                    merge_signatures(&mut merged, &keys);
                    if let (Some(m), Some(k)) = (merged.as_object_mut(), keys.as_object()) {
                        for (field, v) in k {
                            if field != "signatures" {
                                m.insert(field.clone(), v.clone());
                            }
                        }
                    }
                    keys = merged;
                } else {
                    new_identity = true;
                }
            }
            if old.as_ref() != Some(&keys) {
                new_device_keys = Some(keys);
            }
        }
        let mut stale = Vec::new();
        if new_identity {
            tracing::info!(user = %user, device, "device identity keys replaced; old one-time keys dropped");
            let prefix = device_prefix(user, device);
            for (k, _) in self.t.one_time.raw().scan_prefix(&self.db, &prefix)? {
                stale.push((true, k));
            }
            for (k, _) in self.t.fallback.raw().scan_prefix(&self.db, &prefix)? {
                stale.push((false, k));
            }
        }
        let otk_writes =
            self.prepare_one_time_keys(user, device, &upload.one_time_keys, new_identity)?;
        let changed: Vec<&UserId> = if new_device_keys.is_some() {
            vec![user]
        } else {
            Vec::new()
        };
        self.write(&changed, |batch| {
            for (one_time, k) in &stale {
                if *one_time {
                    self.t.one_time.delete(batch, k);
                } else {
                    self.t.fallback.delete(batch, k);
                }
            }
            if let Some(keys) = &new_device_keys {
                self.t.device_keys.put(batch, &dkey, keys)?;
            }
            for (k, v) in &otk_writes {
                self.t.one_time.put(batch, k, v)?;
            }
            self.put_fallback_keys(batch, user, device, &upload.fallback_keys, new_identity)?;
            Ok(())
        })
        .await?;
        if new_device_keys.is_some() {
            tracing::debug!(user = %user, device, "device keys stored");
        }
        self.one_time_key_counts(user, device)
    }

    /// The stored keys of one device, as uploaded.
    pub fn device_keys(&self, user: &UserId, device: &str) -> ApiResult<Option<Value>> {
        Ok(self
            .t
            .device_keys
            .get(&self.db, &key(&[user.as_bytes(), device.as_bytes()]))?)
    }

    /// The stored keys of every device of `user`, by device id.
    pub fn all_device_keys(&self, user: &UserId) -> ApiResult<BTreeMap<String, Value>> {
        let prefix = user_prefix(user);
        Ok(self
            .t
            .device_keys
            .scan_prefix(&self.db, &prefix)?
            .into_iter()
            .filter_map(|(k, v)| Some((String::from_utf8(k[prefix.len()..].to_vec()).ok()?, v)))
            .collect())
    }

    /// Answers a `/keys/query` by `caller` for the devices in `wanted` (an empty list means
    /// every device of that user). Users this gateway holds no keys for are left out.
    pub fn query(
        &self,
        users: &Users,
        caller: &UserId,
        wanted: &BTreeMap<OwnedUserId, Vec<String>>,
    ) -> ApiResult<KeysQueryResult> {
        let mut out = KeysQueryResult::default();
        for (user, devices) in wanted {
            let found = if devices.is_empty() {
                self.all_device_keys(user)?
            } else {
                let mut found = BTreeMap::new();
                for device in devices {
                    if let Some(keys) = self.device_keys(user, device)? {
                        found.insert(device.clone(), keys);
                    }
                }
                found
            };
            let mut shown = BTreeMap::new();
            for (device, mut keys) in found {
                // Keys left behind by a device that logged out without `remove_device` are not
                // shown: nobody should encrypt for a device that cannot sync any more.
                let Some(record) = users.device(user, &device)? else {
                    continue;
                };
                if let (Some(obj), Some(name)) = (keys.as_object_mut(), record.display_name) {
                    obj.insert(
                        "unsigned".to_owned(),
                        serde_json::json!({ "device_display_name": name }),
                    );
                }
                shown.insert(device, keys);
            }
            out.device_keys.insert(user.clone(), shown);
            if let Some(mut master) = self.cross_signing_key(user, CrossSigningKind::Master)? {
                if let Some(sigs) = self.user_signature(caller, user)? {
                    merge_signatures(&mut master, &sigs);
                }
                out.master_keys.insert(user.clone(), master);
            }
            if let Some(ssk) = self.cross_signing_key(user, CrossSigningKind::SelfSigning)? {
                out.self_signing_keys.insert(user.clone(), ssk);
            }
            if user == caller {
                if let Some(usk) = self.cross_signing_key(user, CrossSigningKind::UserSigning)? {
                    out.user_signing_keys.insert(user.clone(), usk);
                }
            }
        }
        Ok(out)
    }

    /// Deletes a device's keys, one-time keys and fallback keys; a device that had keys counts
    /// as a device-list change of its user.
    pub async fn delete_device(&self, user: &UserId, device: &str) -> ApiResult<()> {
        let _guard = self.lock.lock().await;
        let dkey = key(&[user.as_bytes(), device.as_bytes()]);
        let had_keys = self.t.device_keys.get(&self.db, &dkey)?.is_some();
        let prefix = device_prefix(user, device);
        let otks = self.t.one_time.raw().scan_prefix(&self.db, &prefix)?;
        let fallbacks = self.t.fallback.raw().scan_prefix(&self.db, &prefix)?;
        let changed: Vec<&UserId> = if had_keys { vec![user] } else { Vec::new() };
        self.write(&changed, |batch| {
            self.t.device_keys.delete(batch, &dkey);
            for (k, _) in &otks {
                self.t.one_time.delete(batch, k);
            }
            for (k, _) in &fallbacks {
                self.t.fallback.delete(batch, k);
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use ruma::user_id;
    use serde_json::json;

    use super::super::tests::{device_keys, store};
    use super::*;

    #[tokio::test]
    async fn upload_checks_owner_and_records_changes_only_on_change() {
        let keys = store();
        let a = user_id!("@a:x");
        let upload = |dk: Value| KeysUpload {
            device_keys: Some(dk),
            ..Default::default()
        };
        let err = keys
            .upload(a, "D1", upload(device_keys("@b:x", "D1", "ed")))
            .await
            .expect_err("other user");
        assert_eq!(err.errcode, "M_INVALID_PARAM");
        let err = keys
            .upload(a, "D1", upload(device_keys("@a:x", "D2", "ed")))
            .await
            .expect_err("other device");
        assert_eq!(err.errcode, "M_INVALID_PARAM");

        keys.upload(a, "D1", upload(device_keys("@a:x", "D1", "ed")))
            .await
            .expect("upload");
        let p1 = keys.stream.current();
        assert_eq!(keys.changed_users(0, p1).expect("c"), vec![a]);
        // The same keys again: no new change.
        keys.upload(a, "D1", upload(device_keys("@a:x", "D1", "ed")))
            .await
            .expect("again");
        assert_eq!(keys.stream.current(), p1);
        assert!(keys.device_keys(a, "D1").expect("get").is_some());
    }

    #[tokio::test]
    async fn reupload_keeps_signatures_made_by_others() {
        let keys = store();
        let a = user_id!("@a:x");
        let mut stored = device_keys("@a:x", "D1", "ed");
        keys.upload(
            a,
            "D1",
            KeysUpload {
                device_keys: Some(stored.clone()),
                ..Default::default()
            },
        )
        .await
        .expect("upload");
        merge_signatures(
            &mut stored,
            &json!({"signatures": {"@a:x": {"ed25519:SSK": "ssk-sig"}}}),
        );
        let mut b = storage::Batch::new();
        keys.t
            .device_keys
            .put(&mut b, &key(&[a.as_bytes(), b"D1"]), &stored)
            .expect("put");
        keys.db.apply(b).expect("apply");
        keys.upload(
            a,
            "D1",
            KeysUpload {
                device_keys: Some(device_keys("@a:x", "D1", "ed")),
                ..Default::default()
            },
        )
        .await
        .expect("reupload");
        let got = keys.device_keys(a, "D1").expect("get").expect("some");
        assert_eq!(got["signatures"]["@a:x"]["ed25519:SSK"], "ssk-sig");
        assert_eq!(got["signatures"]["@a:x"]["ed25519:D1"], "sig");
    }

    #[tokio::test]
    async fn new_identity_for_the_same_device_drops_old_one_time_keys() {
        let keys = store();
        let a = user_id!("@a:x");
        let otk = |v: &str| {
            BTreeMap::from([
                ("signed_curve25519:AAAAAQ".to_owned(), json!({ "key": v })),
                (format!("signed_curve25519:{v}"), json!({ "key": v })),
            ])
        };
        let fallback = |v: &str| {
            BTreeMap::from([(
                "signed_curve25519:FB".to_owned(),
                json!({ "key": v, "fallback": true }),
            )])
        };
        keys.upload(
            a,
            "D1",
            KeysUpload {
                device_keys: Some(device_keys("@a:x", "D1", "old")),
                one_time_keys: otk("old"),
                fallback_keys: fallback("old"),
            },
        )
        .await
        .expect("first identity");
        // The same key id with other content is refused while the identity is unchanged...
        assert!(keys
            .upload(
                a,
                "D1",
                KeysUpload {
                    one_time_keys: otk("new"),
                    ..Default::default()
                },
            )
            .await
            .is_err());
        // ...and accepted with new identity keys, which drop every old key of the device.
        let counts = keys
            .upload(
                a,
                "D1",
                KeysUpload {
                    device_keys: Some(device_keys("@a:x", "D1", "new")),
                    one_time_keys: otk("new"),
                    fallback_keys: fallback("new"),
                },
            )
            .await
            .expect("new identity");
        assert_eq!(counts["signed_curve25519"], 2);
        let want = BTreeMap::from([(
            a.to_owned(),
            BTreeMap::from([("D1".to_owned(), "signed_curve25519".to_owned())]),
        )]);
        for _ in 0..3 {
            let got = keys.claim(&want).await.expect("claim");
            let key = got[a]["D1"].values().next().expect("a key");
            assert_eq!(key["key"], "new");
        }
    }

    #[tokio::test]
    async fn query_and_delete() {
        let keys = store();
        let users = Users::new(keys.db.clone());
        let a = user_id!("@a:x");
        for d in ["D1", "D2", "GONE"] {
            users
                .create_device(a, Some(d.into()), Some(format!("name {d}")), None)
                .await
                .expect("device");
            keys.upload(
                a,
                d,
                KeysUpload {
                    device_keys: Some(device_keys("@a:x", d, d)),
                    ..Default::default()
                },
            )
            .await
            .expect("upload");
        }
        let all = BTreeMap::from([(a.to_owned(), vec![])]);
        let res = keys.query(&users, a, &all).expect("query");
        assert_eq!(res.device_keys[a].len(), 3);
        assert_eq!(
            res.device_keys[a]["D1"]["unsigned"]["device_display_name"],
            "name D1"
        );
        // A device deleted without its keys (a plain logout) is not shown.
        users.delete_device(a, "GONE").await.expect("logout");
        let res = keys.query(&users, a, &all).expect("query");
        assert_eq!(res.device_keys[a].len(), 2);
        let one = BTreeMap::from([(a.to_owned(), vec!["D2".to_owned(), "NOPE".to_owned()])]);
        let res = keys.query(&users, a, &one).expect("query");
        assert_eq!(
            res.device_keys[a].keys().collect::<Vec<_>>(),
            vec![&"D2".to_owned()]
        );
        let before = keys.stream.current();
        keys.delete_device(a, "D1").await.expect("delete");
        assert_eq!(
            keys.changed_users(before, keys.stream.current())
                .expect("c"),
            vec![a]
        );
        let res = keys.query(&users, a, &all).expect("query");
        assert_eq!(res.device_keys[a].len(), 1);
        // Deleting a device without keys is not a change.
        let before = keys.stream.current();
        keys.delete_device(a, "D9").await.expect("delete");
        assert_eq!(keys.stream.current(), before);
    }
}
