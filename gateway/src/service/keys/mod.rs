//! End-to-end encryption keys: device keys, one-time and fallback keys, cross-signing keys,
//! signatures, and the log of device-list changes that `/sync` and `/keys/changes` report.
//!
//! Keys are stored as the JSON objects clients upload (the server never needs to understand
//! them beyond their ids). Every change that other clients must learn about (a device's keys
//! appearing or disappearing, a cross-signing key or signature changing, a device renamed) is a
//! *device-list change*: it is committed through the global stream at a position, in the same
//! batch as the keys, so `/sync` reports it exactly when the new keys are readable.
//!
//! Writes are serialised by one lock per service (taken before the stream lock), so claiming a
//! one-time key hands it out exactly once even under concurrent claims.

mod changes;
mod cross_signing;
mod device_keys;
pub mod federated;
mod one_time;
mod signatures;

use std::sync::Arc;

use ruma::{OwnedUserId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storage::{key, u64_be, Batch, Db, Table};
use tokio::sync::Mutex;

pub use cross_signing::{CrossSigningKind, CrossSigningUpload, SignatureFailure};
pub use device_keys::{KeysQueryResult, KeysUpload};
pub use one_time::ClaimedKeys;
pub use signatures::signature_valid;
#[cfg(test)]
pub(crate) use signatures::tests::{keypair, sign_as};

use super::{stream::Stream, Gateway};
use crate::error::ApiResult;

/// A fallback key of one algorithm of a device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FallbackKey {
    /// The full key id (`signed_curve25519:AAAAAQ`).
    pub key_id: String,
    /// The key object as uploaded.
    pub key: Value,
    /// Whether it was handed out by `/keys/claim` since it was uploaded.
    pub used: bool,
}

/// The tables of the key store.
struct Tables {
    /// `(user, device)` → device keys object.
    device_keys: Table<Value>,
    /// `(user, device, algorithm, key id)` → one-time key object.
    one_time: Table<Value>,
    /// `(user, device, algorithm)` → fallback key.
    fallback: Table<FallbackKey>,
    /// `(user, kind)` → cross-signing key object.
    cross_signing: Table<Value>,
    /// `(signer, target)` → signatures the signer made on the target's master key (visible to the
    /// signer only, as the spec says for user-signing signatures).
    user_signatures: Table<Value>,
    /// `position` → user whose device list changed there.
    changes: Table<OwnedUserId>,
}

/// The key store. Reachable as `gw.keys`.
pub struct Keys {
    db: Db,
    stream: Arc<Stream>,
    t: Tables,
    lock: Mutex<()>,
}

/// `user 0xff device` as a key prefix ending in the separator.
fn device_prefix(user: &UserId, device: &str) -> Vec<u8> {
    let mut p = key(&[user.as_bytes(), device.as_bytes()]);
    p.push(0xff);
    p
}

/// `user 0xff` as a key prefix.
fn user_prefix(user: &UserId) -> Vec<u8> {
    let mut p = user.as_bytes().to_vec();
    p.push(0xff);
    p
}

/// The parts of a stored key, split at the separator.
fn split_key(k: &[u8]) -> Vec<&[u8]> {
    k.split(|b| *b == 0xff).collect()
}

impl Keys {
    /// Opens the key tables.
    pub fn new(db: Db, stream: Arc<Stream>) -> Self {
        Self {
            db,
            stream,
            t: Tables {
                device_keys: Table::new("e2ee_device_keys"),
                one_time: Table::new("e2ee_one_time_keys"),
                fallback: Table::new("e2ee_fallback_keys"),
                cross_signing: Table::new("e2ee_cross_signing"),
                user_signatures: Table::new("e2ee_user_signatures"),
                changes: Table::new("e2ee_device_list_changes"),
            },
            lock: Mutex::new(()),
        }
    }

    /// Applies the writes of `f` durably. When `changed` names users, the writes are committed
    /// through the global stream together with one device-list change per user, so `/sync`
    /// wakes and reports them; otherwise they are applied directly (nothing to sync).
    ///
    /// Callers hold `self.lock` so their reads and this write are one step.
    async fn write<T>(
        &self,
        changed: &[&UserId],
        f: impl FnOnce(&mut Batch) -> ApiResult<T>,
    ) -> ApiResult<T> {
        if changed.is_empty() {
            let mut batch = Batch::new();
            let value = f(&mut batch)?;
            if !batch.is_empty() {
                self.db.apply(batch)?;
                self.db.flush().await?;
            }
            return Ok(value);
        }
        let (value, _) = self
            .stream
            .commit(|positions, batch| {
                let value = f(batch)?;
                for user in changed {
                    let pos = positions.next();
                    self.t
                        .changes
                        .put(batch, &u64_be(pos), &(*user).to_owned())?;
                }
                Ok(value)
            })
            .await?;
        Ok(value)
    }
}

/// Deletes a device completely: its account entry and access token, its keys, one-time and
/// fallback keys, and its pending to-device messages; records a device-list change for the
/// user when the device had keys. Returns whether the device existed.
///
/// Logout, logout-all and deactivation should call this too, so other users stop encrypting
/// for a device that is gone.
pub async fn remove_device(gw: &Gateway, user_id: &UserId, device_id: &str) -> ApiResult<bool> {
    let existed = gw.users.delete_device(user_id, device_id).await?;
    gw.keys.delete_device(user_id, device_id).await?;
    gw.to_device.delete_device(user_id, device_id).await?;
    Ok(existed)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A key store over a fresh memory database.
    pub(crate) fn store() -> Keys {
        let db = Db::memory().expect("db");
        let stream = Arc::new(Stream::open(db.clone()).expect("stream"));
        Keys::new(db, stream)
    }

    /// Device keys as a client uploads them.
    pub(crate) fn device_keys(user: &str, device: &str, ed: &str) -> Value {
        json!({
            "user_id": user,
            "device_id": device,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                format!("curve25519:{device}"): format!("curve-{ed}"),
                format!("ed25519:{device}"): ed,
            },
            "signatures": { user: { format!("ed25519:{device}"): "sig" } }
        })
    }

    #[test]
    fn key_helpers() {
        let user = ruma::user_id!("@a:x");
        let p = device_prefix(user, "DEV");
        assert_eq!(p, b"@a:x\xffDEV\xff".to_vec());
        assert_eq!(user_prefix(user), b"@a:x\xff".to_vec());
        assert_eq!(split_key(b"a\xffb\xffc"), vec![&b"a"[..], b"b", b"c"]);
    }
}
