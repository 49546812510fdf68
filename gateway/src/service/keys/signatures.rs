//! Checking Ed25519 signatures on key objects (device keys, cross-signing keys).

use base64::Engine;
use ruma::{
    signatures::{to_canonical_json_string_for_signing, verify_canonical_json_bytes},
    CanonicalJsonValue, SigningKeyAlgorithm,
};
use serde_json::Value;

/// Decodes unpadded (or padded) standard base64, as Matrix writes keys and signatures.
fn unbase64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// Whether `object` carries a valid signature by `signer` with key `key_id` (`ed25519:…`),
/// made with the Ed25519 public key `public_key` (unpadded base64).
pub fn signature_valid(object: &Value, signer: &str, key_id: &str, public_key: &str) -> bool {
    let Some(sig) = object
        .get("signatures")
        .and_then(|s| s.get(signer))
        .and_then(|s| s.get(key_id))
        .and_then(Value::as_str)
    else {
        return false;
    };
    let (Some(sig), Some(pk)) = (unbase64(sig), unbase64(public_key)) else {
        return false;
    };
    let Ok(CanonicalJsonValue::Object(obj)) = CanonicalJsonValue::try_from(object.clone()) else {
        return false;
    };
    let Ok(canonical) = to_canonical_json_string_for_signing(&obj) else {
        return false;
    };
    verify_canonical_json_bytes(
        &SigningKeyAlgorithm::Ed25519,
        &pk,
        &sig,
        canonical.as_bytes(),
    )
    .is_ok()
}

/// The object without `signatures` and `unsigned`: what a signature covers.
pub fn signed_part(object: &Value) -> Value {
    let mut v = object.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("signatures");
        obj.remove("unsigned");
    }
    v
}

#[cfg(test)]
pub(crate) mod tests {
    use ruma::signatures::{Ed25519KeyPair, KeyPair};
    use serde_json::json;

    use super::*;

    /// A fresh Ed25519 key and its public key in unpadded base64.
    pub(crate) fn keypair() -> (Ed25519KeyPair, String) {
        let der = Ed25519KeyPair::generate();
        // The version is replaced per signature by `sign_as`.
        let pair = Ed25519KeyPair::from_der(&der, "x".to_owned()).expect("parse");
        let public = base64::engine::general_purpose::STANDARD_NO_PAD.encode(pair.public_key());
        (pair, public)
    }

    /// Signs `object` as `signer` with `pair`, under the key id `ed25519:{version}`.
    pub(crate) fn sign_as(object: &mut Value, signer: &str, pair: &Ed25519KeyPair, version: &str) {
        let mut obj = match CanonicalJsonValue::try_from(object.clone()).expect("canonical") {
            CanonicalJsonValue::Object(o) => o,
            _ => panic!("not an object"),
        };
        obj.remove("unsigned");
        let sig = pair.sign(
            to_canonical_json_string_for_signing(&obj)
                .expect("canonical")
                .as_bytes(),
        );
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(sig.as_bytes());
        let sigs = object
            .as_object_mut()
            .expect("object")
            .entry("signatures")
            .or_insert_with(|| json!({}));
        let per = sigs
            .as_object_mut()
            .expect("object")
            .entry(signer.to_owned())
            .or_insert_with(|| json!({}));
        per[format!("ed25519:{version}")] = Value::String(b64);
    }

    #[test]
    fn valid_and_forged_signatures() {
        let (pair, public) = keypair();
        let mut obj =
            json!({"user_id": "@a:x", "keys": {"ed25519:K": "abc"}, "unsigned": {"n": 1}});
        sign_as(&mut obj, "@a:x", &pair, &public);
        let key_id = format!("ed25519:{public}");
        assert!(signature_valid(&obj, "@a:x", &key_id, &public));
        // `unsigned` is not covered.
        obj["unsigned"] = json!({"n": 2});
        assert!(signature_valid(&obj, "@a:x", &key_id, &public));
        let mut changed = obj.clone();
        changed["keys"]["ed25519:K"] = json!("abd");
        assert!(!signature_valid(&changed, "@a:x", &key_id, &public));
        let (_, other) = keypair();
        assert!(!signature_valid(&obj, "@a:x", &key_id, &other));
        assert!(!signature_valid(&obj, "@b:x", &key_id, &public));
        assert!(!signature_valid(&obj, "@a:x", &key_id, "!!notbase64"));
    }
}
