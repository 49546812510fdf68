//! One-time keys and fallback keys: upload, counts, and claims.

use std::collections::BTreeMap;

use ruma::{OwnedUserId, UserId};
use serde_json::Value;
use storage::{key, Batch};

use super::{device_prefix, split_key, FallbackKey, Keys};
use crate::error::{ApiError, ApiResult};

/// The algorithm every client counts one-time keys of; always reported, 0 when none is left.
const SIGNED_CURVE25519: &str = "signed_curve25519";

/// Claimed keys: user → device → key id → key object.
pub type ClaimedKeys = BTreeMap<OwnedUserId, BTreeMap<String, BTreeMap<String, Value>>>;

/// The algorithm part of a key id (`signed_curve25519` of `signed_curve25519:AAAAAQ`).
fn algorithm_of(key_id: &str) -> ApiResult<&str> {
    match key_id.split_once(':') {
        Some((alg, id)) if !alg.is_empty() && !id.is_empty() => Ok(alg),
        _ => Err(ApiError::bad_json(format!(
            "Key id {key_id:?} is not of the form <algorithm>:<id>"
        ))),
    }
}

impl Keys {
    /// Checks uploaded one-time keys and returns the writes to make: keys already stored with
    /// the same content are skipped, a known id with other content is refused (unless
    /// `replacing`: the stored keys are being dropped in the same write).
    pub(super) fn prepare_one_time_keys(
        &self,
        user: &UserId,
        device: &str,
        keys: &BTreeMap<String, Value>,
        replacing: bool,
    ) -> ApiResult<Vec<(Vec<u8>, Value)>> {
        let mut writes = Vec::new();
        for (key_id, value) in keys {
            let alg = algorithm_of(key_id)?;
            let k = key(&[
                user.as_bytes(),
                device.as_bytes(),
                alg.as_bytes(),
                key_id.as_bytes(),
            ]);
            if replacing {
                writes.push((k, value.clone()));
                continue;
            }
            match self.t.one_time.get(&self.db, &k)? {
                Some(old) if &old == value => {}
                Some(_) => {
                    return Err(ApiError::bad_request(format!(
                        "One-time key {key_id} already exists with other content"
                    )))
                }
                None => writes.push((k, value.clone())),
            }
        }
        Ok(writes)
    }

    /// Queues the replacement of each algorithm's fallback key by the uploaded one (unless it
    /// is the very key already stored, which keeps its `used` flag; with `replacing` the stored
    /// keys are being dropped in the same write, so every uploaded key is written).
    pub(super) fn put_fallback_keys(
        &self,
        batch: &mut Batch,
        user: &UserId,
        device: &str,
        keys: &BTreeMap<String, Value>,
        replacing: bool,
    ) -> ApiResult<()> {
        for (key_id, value) in keys {
            let alg = algorithm_of(key_id)?;
            let k = key(&[user.as_bytes(), device.as_bytes(), alg.as_bytes()]);
            if let Some(old) = self.t.fallback.get(&self.db, &k)?.filter(|_| !replacing) {
                if &old.key_id == key_id && &old.key == value {
                    continue;
                }
            }
            let record = FallbackKey {
                key_id: key_id.clone(),
                key: value.clone(),
                used: false,
            };
            self.t.fallback.put(batch, &k, &record)?;
        }
        Ok(())
    }

    /// Unclaimed one-time keys of a device per algorithm, e.g. `{"signed_curve25519": 50}`.
    /// `signed_curve25519` is always present (0 when none is left), since clients read a
    /// missing count as "unknown" in some places and as zero in others.
    pub fn one_time_key_counts(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> ApiResult<BTreeMap<String, u64>> {
        let prefix = device_prefix(user_id, device_id);
        let mut counts = BTreeMap::from([(SIGNED_CURVE25519.to_owned(), 0u64)]);
        for (k, _) in self.t.one_time.raw().scan_prefix(&self.db, &prefix)? {
            let parts = split_key(&k[prefix.len()..]);
            if let Some(alg) = parts.first().and_then(|a| std::str::from_utf8(a).ok()) {
                *counts.entry(alg.to_owned()).or_default() += 1;
            }
        }
        Ok(counts)
    }

    /// Algorithms for which the device has a fallback key that no claim has used yet
    /// (`device_unused_fallback_key_types` in `/sync`; always send it, even empty, or clients
    /// assume the server lacks fallback keys).
    pub fn unused_fallback_key_types(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> ApiResult<Vec<String>> {
        let prefix = device_prefix(user_id, device_id);
        Ok(self
            .t
            .fallback
            .scan_prefix(&self.db, &prefix)?
            .into_iter()
            .filter(|(_, f)| !f.used)
            .filter_map(|(k, _)| String::from_utf8(k[prefix.len()..].to_vec()).ok())
            .collect())
    }

    /// Claims one key per requested device and algorithm: an unclaimed one-time key, which is
    /// deleted so nobody else gets it, or else the device's fallback key of that algorithm,
    /// which is marked used (and may be handed out again). Devices with neither are left out.
    pub async fn claim(
        &self,
        wanted: &BTreeMap<OwnedUserId, BTreeMap<String, String>>,
    ) -> ApiResult<ClaimedKeys> {
        let _guard = self.lock.lock().await;
        let mut out = ClaimedKeys::new();
        let mut deletes = Vec::new();
        let mut used_fallbacks = Vec::new();
        for (user, devices) in wanted {
            for (device, alg) in devices {
                let mut prefix = key(&[user.as_bytes(), device.as_bytes(), alg.as_bytes()]);
                prefix.push(0xff);
                let first = self.t.one_time.range(&self.db, &prefix, b"", false, 1)?;
                let claimed = if let Some((k, value)) = first.into_iter().next() {
                    let key_id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                    deletes.push(k);
                    Some((key_id, value))
                } else {
                    let fkey = key(&[user.as_bytes(), device.as_bytes(), alg.as_bytes()]);
                    match self.t.fallback.get(&self.db, &fkey)? {
                        Some(mut fallback) => {
                            let pair = (fallback.key_id.clone(), fallback.key.clone());
                            if !fallback.used {
                                fallback.used = true;
                                used_fallbacks.push((fkey, fallback));
                            }
                            Some(pair)
                        }
                        None => None,
                    }
                };
                if let Some((key_id, value)) = claimed {
                    out.entry(user.clone())
                        .or_default()
                        .entry(device.clone())
                        .or_default()
                        .insert(key_id, value);
                }
            }
        }
        self.write(&[], |batch| {
            for k in &deletes {
                self.t.one_time.delete(batch, k);
            }
            for (k, f) in &used_fallbacks {
                self.t.fallback.put(batch, k, f)?;
            }
            Ok(())
        })
        .await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use ruma::user_id;
    use serde_json::json;

    use super::super::{tests::store, KeysUpload};
    use super::*;

    fn otks(ids: &[&str]) -> BTreeMap<String, Value> {
        ids.iter()
            .map(|id| {
                (
                    format!("signed_curve25519:{id}"),
                    json!({"key": format!("k{id}"), "signatures": {}}),
                )
            })
            .collect()
    }

    fn want(device: &str) -> BTreeMap<OwnedUserId, BTreeMap<String, String>> {
        BTreeMap::from([(
            user_id!("@a:x").to_owned(),
            BTreeMap::from([(device.to_owned(), SIGNED_CURVE25519.to_owned())]),
        )])
    }

    #[tokio::test]
    async fn one_time_keys_are_claimed_exactly_once() {
        let keys = store();
        let a = user_id!("@a:x");
        assert_eq!(
            keys.one_time_key_counts(a, "D").expect("counts")[SIGNED_CURVE25519],
            0
        );
        let counts = keys
            .upload(
                a,
                "D",
                KeysUpload {
                    one_time_keys: otks(&["A", "B"]),
                    ..Default::default()
                },
            )
            .await
            .expect("upload");
        assert_eq!(counts[SIGNED_CURVE25519], 2);
        let first = keys.claim(&want("D")).await.expect("claim");
        let second = keys.claim(&want("D")).await.expect("claim");
        let id1 = first[a]["D"].keys().next().expect("one").clone();
        let id2 = second[a]["D"].keys().next().expect("one").clone();
        assert_ne!(id1, id2);
        assert_eq!(
            keys.one_time_key_counts(a, "D").expect("counts")[SIGNED_CURVE25519],
            0
        );
        // Nothing left and no fallback key: the device is left out.
        let third = keys.claim(&want("D")).await.expect("claim");
        assert!(third.is_empty());
    }

    #[tokio::test]
    async fn concurrent_claims_never_share_a_key() {
        let keys = std::sync::Arc::new(store());
        let a = user_id!("@a:x");
        let ids: Vec<String> = (0..20).map(|i| format!("K{i:02}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        keys.upload(
            a,
            "D",
            KeysUpload {
                one_time_keys: otks(&refs),
                ..Default::default()
            },
        )
        .await
        .expect("upload");
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let keys = keys.clone();
            tasks.push(tokio::spawn(async move {
                keys.claim(&want("D")).await.expect("claim")
            }));
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in tasks {
            let got = t.await.expect("join");
            let id = got[a]["D"].keys().next().expect("one").clone();
            assert!(seen.insert(id), "a key was handed out twice");
        }
        assert_eq!(seen.len(), 20);
    }

    #[tokio::test]
    async fn fallback_is_served_when_exhausted_and_reported_until_replaced() {
        let keys = store();
        let a = user_id!("@a:x");
        let fallback = BTreeMap::from([(
            "signed_curve25519:FB1".to_owned(),
            json!({"key": "fb1", "fallback": true, "signatures": {}}),
        )]);
        keys.upload(
            a,
            "D",
            KeysUpload {
                one_time_keys: otks(&["A"]),
                fallback_keys: fallback.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("upload");
        assert_eq!(
            keys.unused_fallback_key_types(a, "D").expect("types"),
            vec![SIGNED_CURVE25519]
        );
        let c1 = keys.claim(&want("D")).await.expect("claim");
        assert!(c1[a]["D"].contains_key("signed_curve25519:A"));
        assert_eq!(keys.unused_fallback_key_types(a, "D").expect("t").len(), 1);
        let c2 = keys.claim(&want("D")).await.expect("claim");
        assert_eq!(c2[a]["D"]["signed_curve25519:FB1"]["key"], "fb1");
        assert!(keys
            .unused_fallback_key_types(a, "D")
            .expect("t")
            .is_empty());
        // The fallback key is served again while nothing replaces it.
        let c3 = keys.claim(&want("D")).await.expect("claim");
        assert!(c3[a]["D"].contains_key("signed_curve25519:FB1"));
        // Re-uploading the same key does not make it unused again...
        keys.upload(
            a,
            "D",
            KeysUpload {
                fallback_keys: fallback,
                ..Default::default()
            },
        )
        .await
        .expect("same");
        assert!(keys
            .unused_fallback_key_types(a, "D")
            .expect("t")
            .is_empty());
        // ...a new one does.
        keys.upload(
            a,
            "D",
            KeysUpload {
                fallback_keys: BTreeMap::from([(
                    "signed_curve25519:FB2".to_owned(),
                    json!({"key": "fb2", "fallback": true}),
                )]),
                ..Default::default()
            },
        )
        .await
        .expect("new");
        assert_eq!(
            keys.unused_fallback_key_types(a, "D").expect("t"),
            vec![SIGNED_CURVE25519]
        );
        let c4 = keys.claim(&want("D")).await.expect("claim");
        assert!(c4[a]["D"].contains_key("signed_curve25519:FB2"));
    }

    #[tokio::test]
    async fn conflicting_one_time_key_is_refused_and_identical_is_ignored() {
        let keys = store();
        let a = user_id!("@a:x");
        let up = |v: &str| KeysUpload {
            one_time_keys: BTreeMap::from([(
                "signed_curve25519:A".to_owned(),
                json!({ "key": v }),
            )]),
            ..Default::default()
        };
        keys.upload(a, "D", up("1")).await.expect("first");
        let counts = keys.upload(a, "D", up("1")).await.expect("same again");
        assert_eq!(counts[SIGNED_CURVE25519], 1);
        keys.upload(a, "D", up("2"))
            .await
            .expect_err("different content");
        let bad = KeysUpload {
            one_time_keys: BTreeMap::from([("nocolon".to_owned(), json!({}))]),
            ..Default::default()
        };
        assert_eq!(
            keys.upload(a, "D", bad).await.expect_err("bad id").errcode,
            "M_BAD_JSON"
        );
    }
}
