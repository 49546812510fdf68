#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::util::now_ms;
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

fn doc(epoch: u64) -> Document {
    Document {
        version: DOCUMENT_VERSION,
        epoch,
        valid_from_ms: 1000,
        valid_until_ms: 2000,
        params: TrafficParams::default(),
        nodes: vec![],
        gateways: vec![],
    }
}

/// A single authority on an ephemeral loopback port, hour-long epochs.
fn config(allowed: Option<Vec<[u8; 32]>>) -> DirectoryConfig {
    DirectoryConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        authority_seed: [9; 32],
        params: TrafficParams::default(),
        epoch_ms: 3_600_000,
        grace_ms: 60_000,
        allowed,
        peers: vec![],
        threshold: 1,
    }
}

#[test]
fn signatures_threshold_and_expiry() {
    let a = SigningKey::from_bytes(&[1; 32]);
    let b = SigningKey::from_bytes(&[2; 32]);
    let evil = SigningKey::from_bytes(&[3; 32]);
    let auth = [a.verifying_key().to_bytes(), b.verifying_key().to_bytes()];
    let mut s = SignedDocument::sign(&doc(7), &a).unwrap();
    assert_eq!(s.verify(&auth, 1, 1500).unwrap().epoch, 7);
    assert!(matches!(
        s.verify(&auth, 2, 1500),
        Err(DirectoryError::Signatures {
            valid: 1,
            needed: 2
        })
    ));
    s.add_signature(&a); // duplicate does not count twice
    assert!(s.verify(&auth, 2, 1500).is_err());
    s.add_signature(&b);
    assert!(s.verify(&auth, 2, 1500).is_ok());
    assert!(matches!(
        s.verify(&auth, 1, 2000),
        Err(DirectoryError::Expired { .. })
    ));
    assert!(matches!(
        s.verify(&auth, 1, 999),
        Err(DirectoryError::Expired { .. })
    ));
    // Forged: signed by an untrusted key.
    let f = SignedDocument::sign(&doc(7), &evil).unwrap();
    assert!(f.verify(&auth, 1, 1500).is_err());
    // Tampered content.
    let mut t = SignedDocument::sign(&doc(7), &a).unwrap();
    t.document = t.document.replace("\"epoch\":7", "\"epoch\":8");
    assert!(t.verify(&auth, 1, 1500).is_err());
}

#[tokio::test]
async fn serve_register_fetch() {
    let cfg = config(None);
    let srv = DirectoryServer::bind(cfg).await.unwrap();
    let addr = srv.local_addr().unwrap();
    let auth = srv.authority();
    let stats = srv.stats();
    let h = tokio::spawn(srv.run());
    let id = SigningKey::from_bytes(&[5; 32]);
    let epoch = now_ms() / 3_600_000;
    let reg = Registration {
        identity: id.verifying_key().to_bytes(),
        role: Role::Mix { layer: 2 },
        address: "127.0.0.1:1".into(),
        link_key: [1; 32],
        mix_keys: vec![EpochKey {
            epoch,
            key: crate::packet::SecretKey::from_bytes([2; 32]).public(),
        }],
    };
    // A mix key no sender can encrypt to (u = 2 lies on the twist) is refused.
    let mut twisted = reg.clone();
    twisted.mix_keys[0].key = [0; 32];
    twisted.mix_keys[0].key[0] = 2;
    assert!(
        register(addr, &SignedRegistration::sign(&twisted, &id).unwrap())
            .await
            .is_err()
    );
    register(addr, &SignedRegistration::sign(&reg, &id).unwrap())
        .await
        .unwrap();
    // A registration signed by the wrong key is refused.
    let mut bad = SignedRegistration::sign(&reg, &SigningKey::from_bytes(&[6; 32])).unwrap();
    assert!(register(addr, &bad).await.is_err());
    bad.registration = "garbage".into();
    assert!(register(addr, &bad).await.is_err());
    let d = fetch_document(addr, None)
        .await
        .unwrap()
        .verify(&[auth], 1, now_ms())
        .unwrap();
    assert_eq!(d.nodes.len(), 1);
    assert_eq!(d.layer(2).count(), 1);
    assert_eq!(d.nodes[0].id, node_id(&reg.identity));
    assert!(stats.refused.load(std::sync::atomic::Ordering::Relaxed) >= 3);
    h.abort();
}

#[tokio::test]
async fn allow_list_refuses_strangers() {
    let member = SigningKey::from_bytes(&[5; 32]);
    let cfg = config(Some(vec![member.verifying_key().to_bytes()]));
    let srv = DirectoryServer::bind(cfg).await.unwrap();
    let addr = srv.local_addr().unwrap();
    let h = tokio::spawn(srv.run());
    let reg = |k: &SigningKey| {
        let r = Registration {
            identity: k.verifying_key().to_bytes(),
            role: Role::Provider,
            address: "127.0.0.1:1".into(),
            link_key: [1; 32],
            mix_keys: vec![],
        };
        SignedRegistration::sign(&r, k).unwrap()
    };
    register(addr, &reg(&member)).await.unwrap();
    assert!(register(addr, &reg(&SigningKey::from_bytes(&[6; 32])))
        .await
        .is_err());
    h.abort();
}

#[test]
fn default_params_drain_their_own_cover() {
    assert!(TrafficParams::default().check().is_ok());
    let bad = TrafficParams {
        poll_per_s: 1.0,
        poll_batch: 4,
        ..TrafficParams::default()
    };
    assert!(bad.check().is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn document_and_registration_parsers_never_panic(text in ".{0,300}", sig in proptest::array::uniform32(any::<u8>())) {
        let sd = SignedDocument {
            document: text.clone(),
            signatures: vec![AuthoritySignature { authority: sig, signature: [7; 64] }],
        };
        prop_assert!(sd.verify(&[sig], 1, 1500).is_err());
        let sr = SignedRegistration { registration: text, signature: [1; 64] };
        prop_assert!(sr.verify().is_err());
    }
}

#[tokio::test]
async fn gateway_descriptors_are_listed_when_signed() {
    let cfg = config(None);
    let srv = DirectoryServer::bind(cfg).await.unwrap();
    let addr = srv.local_addr().unwrap();
    let auth = srv.authority();
    let h = tokio::spawn(srv.run());
    let gw = SigningKey::from_bytes(&[11; 32]);
    let entry = GatewayEntry::sign(r#"{"provider":"00","olm":"x"}"#.into(), &gw);
    publish_gateway(addr, &entry).await.unwrap();
    let mut forged = GatewayEntry::sign("{}".into(), &SigningKey::from_bytes(&[12; 32]));
    forged.descriptor = "{\"evil\":1}".into();
    assert!(publish_gateway(addr, &forged).await.is_err());
    let big = GatewayEntry::sign("x".repeat(MAX_DESCRIPTOR + 1), &gw);
    assert!(publish_gateway(addr, &big).await.is_err());
    let d = fetch_document(addr, None)
        .await
        .unwrap()
        .verify(&[auth], 1, now_ms())
        .unwrap();
    assert_eq!(d.gateways.len(), 1);
    assert_eq!(d.gateway(&gw.verifying_key().to_bytes()), Some(&entry));
    assert!(d.gateways[0].verify().is_ok());
    h.abort();
}
