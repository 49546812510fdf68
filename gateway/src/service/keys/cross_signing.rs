//! Cross-signing keys (master, self-signing, user-signing) and signature uploads.

use std::collections::BTreeMap;

use ruma::{OwnedUserId, UserId};
use serde::Serialize;
use serde_json::Value;
use storage::key;

use super::{
    device_keys::merge_signatures,
    signatures::{signature_valid, signed_part},
    Keys,
};
use crate::error::{ApiError, ApiResult};

/// The three cross-signing keys of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrossSigningKind {
    /// The master key: the user's identity.
    Master,
    /// Signs the user's own devices.
    SelfSigning,
    /// Signs other users' master keys.
    UserSigning,
}

impl CrossSigningKind {
    /// Every kind.
    pub const ALL: [CrossSigningKind; 3] = [Self::Master, Self::SelfSigning, Self::UserSigning];

    /// The `usage` value and storage name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::SelfSigning => "self_signing",
            Self::UserSigning => "user_signing",
        }
    }
}

/// What a `/keys/device_signing/upload` carries.
#[derive(Debug, Default, Clone)]
pub struct CrossSigningUpload {
    /// The master key.
    pub master: Option<Value>,
    /// The self-signing key.
    pub self_signing: Option<Value>,
    /// The user-signing key.
    pub user_signing: Option<Value>,
}

impl CrossSigningUpload {
    fn keys(&self) -> [(CrossSigningKind, Option<&Value>); 3] {
        [
            (CrossSigningKind::Master, self.master.as_ref()),
            (CrossSigningKind::SelfSigning, self.self_signing.as_ref()),
            (CrossSigningKind::UserSigning, self.user_signing.as_ref()),
        ]
    }
}

/// Why one signature of a `/keys/signatures/upload` was refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignatureFailure {
    /// `M_INVALID_SIGNATURE`, `M_NOT_FOUND` or `M_INVALID_PARAM`.
    pub errcode: &'static str,
    /// What was wrong.
    pub error: String,
}

impl SignatureFailure {
    fn new(errcode: &'static str, error: impl Into<String>) -> Self {
        Self {
            errcode,
            error: error.into(),
        }
    }
}

/// The only public key of a key object (`keys: {"ed25519:ID": "KEY"}`), as `(key id, key)`.
fn only_key(object: &Value) -> Option<(String, String)> {
    let keys = object.get("keys")?.as_object()?;
    if keys.len() != 1 {
        return None;
    }
    let (id, key) = keys.iter().next()?;
    Some((id.clone(), key.as_str()?.to_owned()))
}

/// Checks the shape of an uploaded cross-signing key.
fn check_shape(object: &Value, user: &UserId, kind: CrossSigningKind) -> ApiResult<()> {
    crate::service::limits::check_size(
        "A cross-signing key",
        object,
        crate::service::limits::MAX_KEY_OBJECT_BYTES,
    )?;
    if object.get("user_id").and_then(Value::as_str) != Some(user.as_str()) {
        return Err(ApiError::invalid_param(format!(
            "{} key belongs to another user",
            kind.as_str()
        )));
    }
    let usage_ok = object
        .get("usage")
        .and_then(Value::as_array)
        .is_some_and(|u| u.iter().any(|x| x.as_str() == Some(kind.as_str())));
    if !usage_ok {
        return Err(ApiError::invalid_param(format!(
            "{} key must have usage {:?}",
            kind.as_str(),
            kind.as_str()
        )));
    }
    match only_key(object) {
        Some((id, key)) if id == format!("ed25519:{key}") => Ok(()),
        _ => Err(ApiError::invalid_param(format!(
            "{} key must hold exactly one ed25519 key named after itself",
            kind.as_str()
        ))),
    }
}

/// A signature that did not check out.
fn invalid_signature(message: impl Into<String>) -> ApiError {
    ApiError::new(
        http::StatusCode::BAD_REQUEST,
        "M_INVALID_SIGNATURE",
        message,
    )
}

/// Where the target of an uploaded signature is stored.
enum Target {
    /// Device keys at this table key.
    Device(Vec<u8>),
    /// One of the caller's own cross-signing keys.
    Own(CrossSigningKind),
    /// Another user's master key (signatures kept for the signer only).
    Foreign(OwnedUserId),
}

impl Keys {
    /// A user's cross-signing key of `kind`, as uploaded (with signatures merged in).
    pub fn cross_signing_key(
        &self,
        user: &UserId,
        kind: CrossSigningKind,
    ) -> ApiResult<Option<Value>> {
        Ok(self
            .t
            .cross_signing
            .get(&self.db, &key(&[user.as_bytes(), kind.as_str().as_bytes()]))?)
    }

    /// Signatures `signer` made on `target`'s master key, as `{"signatures": …}`.
    pub fn user_signature(&self, signer: &UserId, target: &UserId) -> ApiResult<Option<Value>> {
        Ok(self
            .t
            .user_signatures
            .get(&self.db, &key(&[signer.as_bytes(), target.as_bytes()]))?)
    }

    /// Whether uploading `upload` needs user-interactive auth: not for a user's first master
    /// key (MSC3967) and not for re-uploading keys already stored; yes for any replacement.
    pub fn cross_signing_upload_needs_auth(
        &self,
        user: &UserId,
        upload: &CrossSigningUpload,
    ) -> ApiResult<bool> {
        if self
            .cross_signing_key(user, CrossSigningKind::Master)?
            .is_none()
        {
            return Ok(false);
        }
        for (kind, new) in upload.keys() {
            if let Some(new) = new {
                let old = self.cross_signing_key(user, kind)?;
                if old.as_ref().map(signed_part) != Some(signed_part(new)) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Stores uploaded cross-signing keys (after UIA, which the caller checks). Self-signing and
    /// user-signing keys must be signed by the master key (the new one, or the stored one).
    /// Any change is a device-list change of the user.
    pub async fn upload_cross_signing(
        &self,
        user: &UserId,
        upload: CrossSigningUpload,
    ) -> ApiResult<()> {
        let _guard = self.lock.lock().await;
        for (kind, new) in upload.keys() {
            if let Some(new) = new {
                check_shape(new, user, kind)?;
            }
        }
        let master = match &upload.master {
            Some(m) => Some(m.clone()),
            None => self.cross_signing_key(user, CrossSigningKind::Master)?,
        };
        let master_key = master.as_ref().and_then(only_key);
        for (kind, new) in upload.keys().into_iter().skip(1) {
            let Some(new) = new else { continue };
            let Some((master_id, master_pub)) = &master_key else {
                return Err(ApiError::invalid_param(
                    "Upload a master key before the other cross-signing keys",
                ));
            };
            if !signature_valid(new, user.as_str(), master_id, master_pub) {
                return Err(invalid_signature(format!(
                    "{} key is not signed by the master key",
                    kind.as_str()
                )));
            }
        }
        let mut writes = Vec::new();
        for (kind, new) in upload.keys() {
            let Some(new) = new else { continue };
            let old = self.cross_signing_key(user, kind)?;
            if old.as_ref() != Some(new) {
                let mut new = new.clone();
                if let Some(obj) = new.as_object_mut() {
                    obj.remove("unsigned");
                }
                writes.push((kind, new));
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        self.write(&[user], |batch| {
            for (kind, value) in &writes {
                self.t.cross_signing.put(
                    batch,
                    &key(&[user.as_bytes(), kind.as_str().as_bytes()]),
                    value,
                )?;
            }
            Ok(())
        })
        .await?;
        tracing::debug!(user = %user, count = writes.len(), "cross-signing keys stored");
        Ok(())
    }

    /// Finds what the uploaded object `key_id` of `target` is, and its stored form.
    fn locate(
        &self,
        caller: &UserId,
        target: &UserId,
        key_id: &str,
    ) -> ApiResult<Option<(Target, Value)>> {
        if target == caller {
            let dkey = key(&[target.as_bytes(), key_id.as_bytes()]);
            if let Some(stored) = self.t.device_keys.get(&self.db, &dkey)? {
                return Ok(Some((Target::Device(dkey), stored)));
            }
            for kind in CrossSigningKind::ALL {
                if let Some(stored) = self.cross_signing_key(target, kind)? {
                    if only_key(&stored).is_some_and(|(_, k)| k == key_id) {
                        return Ok(Some((Target::Own(kind), stored)));
                    }
                }
            }
            return Ok(None);
        }
        match self.cross_signing_key(target, CrossSigningKind::Master)? {
            Some(stored) if only_key(&stored).is_some_and(|(_, k)| k == key_id) => {
                Ok(Some((Target::Foreign(target.to_owned()), stored)))
            }
            _ => Ok(None),
        }
    }

    /// The caller's public key named by `key_id` (`ed25519:X`: a cross-signing key whose
    /// public key is X, or the ed25519 key of the caller's device X).
    fn signing_key(&self, caller: &UserId, key_id: &str) -> ApiResult<Option<String>> {
        let Some(name) = key_id.strip_prefix("ed25519:") else {
            return Ok(None);
        };
        for kind in CrossSigningKind::ALL {
            if let Some(stored) = self.cross_signing_key(caller, kind)? {
                if only_key(&stored).is_some_and(|(_, k)| k == name) {
                    return Ok(Some(name.to_owned()));
                }
            }
        }
        let device = self
            .t
            .device_keys
            .get(&self.db, &key(&[caller.as_bytes(), name.as_bytes()]))?;
        Ok(device
            .as_ref()
            .and_then(|d| d.get("keys"))
            .and_then(|k| k.get(key_id))
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    /// Checks the caller's new signatures on one uploaded object and returns them
    /// (`{"signatures": {caller: {...}}}`) if all are valid.
    fn check_new_signatures(
        &self,
        caller: &UserId,
        uploaded: &Value,
        stored: &Value,
    ) -> Result<Value, SignatureFailure> {
        if signed_part(uploaded) != signed_part(stored) {
            return Err(SignatureFailure::new(
                "M_INVALID_SIGNATURE",
                "The signed object does not match the stored key",
            ));
        }
        let mine = uploaded
            .get("signatures")
            .and_then(|s| s.get(caller.as_str()))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut accepted = serde_json::Map::new();
        for (key_id, sig) in mine {
            let known = stored
                .get("signatures")
                .and_then(|s| s.get(caller.as_str()))
                .and_then(|s| s.get(&key_id));
            if known == Some(&sig) {
                continue;
            }
            let public = self
                .signing_key(caller, &key_id)
                .map_err(|e| SignatureFailure::new("M_UNKNOWN", e.message))?
                .ok_or_else(|| {
                    SignatureFailure::new("M_INVALID_SIGNATURE", format!("Unknown key {key_id}"))
                })?;
            if !signature_valid(uploaded, caller.as_str(), &key_id, &public) {
                return Err(SignatureFailure::new(
                    "M_INVALID_SIGNATURE",
                    format!("Invalid signature by {key_id}"),
                ));
            }
            accepted.insert(key_id, sig);
        }
        Ok(serde_json::json!({ "signatures": { caller.as_str(): accepted } }))
    }

    /// Merges the caller's signatures into stored device and cross-signing keys
    /// (`/keys/signatures/upload`). Each signature is checked against the caller's keys;
    /// signatures on other users' master keys are kept for the caller only. Returns the
    /// refused objects by user and key id; a stored change is a device-list change of the
    /// caller.
    pub async fn upload_signatures(
        &self,
        caller: &UserId,
        signed: &BTreeMap<OwnedUserId, BTreeMap<String, Value>>,
    ) -> ApiResult<BTreeMap<OwnedUserId, BTreeMap<String, SignatureFailure>>> {
        for uploaded in signed.values().flat_map(BTreeMap::values) {
            crate::service::limits::check_size(
                "A signed key",
                uploaded,
                crate::service::limits::MAX_KEY_OBJECT_BYTES,
            )?;
        }
        let _guard = self.lock.lock().await;
        let mut failures: BTreeMap<OwnedUserId, BTreeMap<String, SignatureFailure>> =
            BTreeMap::new();
        let mut writes: Vec<(Target, Value)> = Vec::new();
        for (target, objects) in signed {
            for (key_id, uploaded) in objects {
                let fail = |f: SignatureFailure,
                            failures: &mut BTreeMap<
                    OwnedUserId,
                    BTreeMap<String, SignatureFailure>,
                >| {
                    failures
                        .entry(target.clone())
                        .or_default()
                        .insert(key_id.clone(), f);
                };
                let Some((place, stored)) = self.locate(caller, target, key_id)? else {
                    fail(
                        SignatureFailure::new("M_NOT_FOUND", "Unknown key"),
                        &mut failures,
                    );
                    continue;
                };
                let new_sigs = match self.check_new_signatures(caller, uploaded, &stored) {
                    Ok(s) => s,
                    Err(f) => {
                        fail(f, &mut failures);
                        continue;
                    }
                };
                let empty = new_sigs["signatures"][caller.as_str()]
                    .as_object()
                    .is_none_or(|m| m.is_empty());
                if empty {
                    continue;
                }
                let merged = match &place {
                    Target::Foreign(t) => {
                        let mut prev = self
                            .user_signature(caller, t)?
                            .unwrap_or_else(|| serde_json::json!({ "signatures": {} }));
                        merge_signatures(&mut prev, &new_sigs);
                        prev
                    }
                    _ => {
                        let mut stored = stored;
                        merge_signatures(&mut stored, &new_sigs);
                        stored
                    }
                };
                writes.push((place, merged));
            }
        }
        if !writes.is_empty() {
            self.write(&[caller], |batch| {
                for (place, value) in &writes {
                    match place {
                        Target::Device(k) => self.t.device_keys.put(batch, k, value)?,
                        Target::Own(kind) => self.t.cross_signing.put(
                            batch,
                            &key(&[caller.as_bytes(), kind.as_str().as_bytes()]),
                            value,
                        )?,
                        Target::Foreign(t) => self.t.user_signatures.put(
                            batch,
                            &key(&[caller.as_bytes(), t.as_bytes()]),
                            value,
                        )?,
                    }
                }
                Ok(())
            })
            .await?;
        }
        Ok(failures)
    }
}

#[cfg(test)]
mod tests {
    use ruma::{signatures::Ed25519KeyPair, user_id};
    use serde_json::json;

    use super::super::{
        signatures::tests::{keypair, sign_as},
        tests::{device_keys, store},
        KeysUpload,
    };
    use super::*;
    use crate::service::users::Users;

    /// A cross-signing key object of `kind` for `user`, and its key pair.
    fn cs_key(user: &str, kind: CrossSigningKind) -> (Value, Ed25519KeyPair, String) {
        let (pair, public) = keypair();
        let v = json!({
            "user_id": user,
            "usage": [kind.as_str()],
            "keys": { format!("ed25519:{public}"): public },
        });
        (v, pair, public)
    }

    struct Identity {
        master: (Value, Ed25519KeyPair, String),
        ssk: (Value, Ed25519KeyPair, String),
        usk: (Value, Ed25519KeyPair, String),
    }

    fn identity(user: &str) -> Identity {
        let master = cs_key(user, CrossSigningKind::Master);
        let mut ssk = cs_key(user, CrossSigningKind::SelfSigning);
        let mut usk = cs_key(user, CrossSigningKind::UserSigning);
        sign_as(&mut ssk.0, user, &master.1, &master.2);
        sign_as(&mut usk.0, user, &master.1, &master.2);
        Identity { master, ssk, usk }
    }

    fn full_upload(id: &Identity) -> CrossSigningUpload {
        CrossSigningUpload {
            master: Some(id.master.0.clone()),
            self_signing: Some(id.ssk.0.clone()),
            user_signing: Some(id.usk.0.clone()),
        }
    }

    #[tokio::test]
    async fn first_upload_needs_no_auth_replacement_does() {
        let keys = store();
        let a = user_id!("@a:x");
        let id = identity("@a:x");
        assert!(!keys
            .cross_signing_upload_needs_auth(a, &full_upload(&id))
            .expect("check"));
        keys.upload_cross_signing(a, full_upload(&id))
            .await
            .expect("upload");
        assert_eq!(
            keys.changed_users(0, keys.stream.current()).expect("c"),
            vec![a]
        );
        // The same keys again: no auth, no change.
        assert!(!keys
            .cross_signing_upload_needs_auth(a, &full_upload(&id))
            .expect("check"));
        let before = keys.stream.current();
        keys.upload_cross_signing(a, full_upload(&id))
            .await
            .expect("again");
        assert_eq!(keys.stream.current(), before);
        // New keys: auth needed.
        let id2 = identity("@a:x");
        assert!(keys
            .cross_signing_upload_needs_auth(a, &full_upload(&id2))
            .expect("check"));
        keys.upload_cross_signing(a, full_upload(&id2))
            .await
            .expect("replace");
        let stored = keys
            .cross_signing_key(a, CrossSigningKind::Master)
            .expect("get")
            .expect("some");
        assert_eq!(stored, id2.master.0);
    }

    #[tokio::test]
    async fn bad_cross_signing_keys_are_refused() {
        let keys = store();
        let a = user_id!("@a:x");
        let id = identity("@a:x");
        // A self-signing key without a master key.
        let only_ssk = CrossSigningUpload {
            self_signing: Some(id.ssk.0.clone()),
            ..Default::default()
        };
        assert_eq!(
            keys.upload_cross_signing(a, only_ssk)
                .await
                .expect_err("no master")
                .errcode,
            "M_INVALID_PARAM"
        );
        // A self-signing key not signed by the master key.
        let (unsigned_ssk, _, _) = cs_key("@a:x", CrossSigningKind::SelfSigning);
        let bad = CrossSigningUpload {
            master: Some(id.master.0.clone()),
            self_signing: Some(unsigned_ssk),
            ..Default::default()
        };
        assert_eq!(
            keys.upload_cross_signing(a, bad)
                .await
                .expect_err("unsigned")
                .errcode,
            "M_INVALID_SIGNATURE"
        );
        // Someone else's key, and a wrong usage.
        let other = identity("@b:x");
        let wrong_user = CrossSigningUpload {
            master: Some(other.master.0.clone()),
            ..Default::default()
        };
        assert!(keys.upload_cross_signing(a, wrong_user).await.is_err());
        let wrong_usage = CrossSigningUpload {
            master: Some(id.ssk.0.clone()),
            ..Default::default()
        };
        assert!(keys.upload_cross_signing(a, wrong_usage).await.is_err());
        assert!(keys
            .cross_signing_key(a, CrossSigningKind::Master)
            .expect("get")
            .is_none());
    }

    #[tokio::test]
    async fn signatures_are_checked_merged_and_user_signing_ones_private() {
        let keys = store();
        let users = Users::new(keys.db.clone());
        let a = user_id!("@a:x");
        let b = user_id!("@b:x");
        let (dev_pair, dev_pub) = keypair();
        let dk = device_keys("@a:x", "D1", &dev_pub);
        keys.upload(
            a,
            "D1",
            KeysUpload {
                device_keys: Some(dk.clone()),
                ..Default::default()
            },
        )
        .await
        .expect("device keys");
        let ida = identity("@a:x");
        let idb = identity("@b:x");
        keys.upload_cross_signing(a, full_upload(&ida))
            .await
            .expect("a");
        keys.upload_cross_signing(b, full_upload(&idb))
            .await
            .expect("b");

        // The self-signing key signs the device; the device signs the master key; a's
        // user-signing key signs b's master key; one forged signature.
        let mut signed_dev = dk.clone();
        sign_as(&mut signed_dev, "@a:x", &ida.ssk.1, &ida.ssk.2);
        let mut signed_master = ida.master.0.clone();
        sign_as(&mut signed_master, "@a:x", &dev_pair, "D1");
        let mut signed_b = idb.master.0.clone();
        sign_as(&mut signed_b, "@a:x", &ida.usk.1, &ida.usk.2);
        let mut forged = idb.ssk.0.clone();
        sign_as(&mut forged, "@a:x", &ida.usk.1, &ida.usk.2);
        let upload = BTreeMap::from([
            (
                a.to_owned(),
                BTreeMap::from([
                    ("D1".to_owned(), signed_dev),
                    (ida.master.2.clone(), signed_master),
                    ("NOPE".to_owned(), json!({})),
                ]),
            ),
            (
                b.to_owned(),
                BTreeMap::from([
                    (idb.master.2.clone(), signed_b),
                    (idb.ssk.2.clone(), forged),
                ]),
            ),
        ]);
        let before = keys.stream.current();
        let failures = keys.upload_signatures(a, &upload).await.expect("upload");
        assert_eq!(failures[a]["NOPE"].errcode, "M_NOT_FOUND");
        assert!(failures[b].contains_key(&idb.ssk.2));
        assert_eq!(failures.len(), 2);
        assert_eq!(failures[a].len(), 1);
        assert_eq!(failures[b].len(), 1);
        assert_eq!(
            keys.changed_users(before, keys.stream.current())
                .expect("c"),
            vec![a]
        );

        let ssk_id = format!("ed25519:{}", ida.ssk.2);
        let dev = keys.device_keys(a, "D1").expect("get").expect("some");
        assert!(signature_valid(&dev, "@a:x", &ssk_id, &ida.ssk.2));
        let master = keys
            .cross_signing_key(a, CrossSigningKind::Master)
            .expect("get")
            .expect("some");
        assert!(signature_valid(&master, "@a:x", "ed25519:D1", &dev_pub));

        // a sees its signature on b's master key; b (and anyone else) does not; only a sees
        // a's user-signing key.
        let wanted = BTreeMap::from([(a.to_owned(), vec![]), (b.to_owned(), vec![])]);
        let usk_id = format!("ed25519:{}", ida.usk.2);
        let as_a = keys.query(&users, a, &wanted).expect("query");
        assert!(signature_valid(
            &as_a.master_keys[b],
            "@a:x",
            &usk_id,
            &ida.usk.2
        ));
        assert!(as_a.user_signing_keys.contains_key(a));
        assert!(!as_a.user_signing_keys.contains_key(b));
        assert_eq!(as_a.self_signing_keys.len(), 2);
        let as_b = keys.query(&users, b, &wanted).expect("query");
        assert!(as_b.master_keys[b]["signatures"].get("@a:x").is_none());
        assert!(as_b.user_signing_keys.contains_key(b));
        assert!(!as_b.user_signing_keys.contains_key(a));
    }
}
