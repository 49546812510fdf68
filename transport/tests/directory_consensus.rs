//! Three directory authorities that must agree (threshold 2): registrations made at any one
//! of them reach all, every authority serves one document signed by all three, a rogue
//! authority cannot add a node alone, and two authorities still agree while the third is down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use tokio::task::JoinHandle;
use transport::directory::{
    fetch_document, fetch_verified, publish_gateway, register, DirectoryConfig, DirectoryServer,
    DirectoryStats, Document, EpochKey, GatewayEntry, PeerAuthority, Registration, Role,
    SignedRegistration, TrafficParams,
};
use transport::packet::SecretKey;

const EPOCH_MS: u64 = 12_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

struct Authority {
    addr: SocketAddr,
    key: [u8; 32],
    stats: Arc<DirectoryStats>,
    task: Option<JoinHandle<()>>,
}

/// Binds `n` authorities (seeds 11, 12, ...) with the given allow-lists; starts those marked
/// in `running`, each knowing all the others as peers.
async fn authorities(allowed: &[Option<Vec<[u8; 32]>>], running: &[bool]) -> Vec<Authority> {
    let mut servers = Vec::new();
    for (i, allow) in allowed.iter().enumerate() {
        let s = DirectoryServer::bind(DirectoryConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            authority_seed: [11 + i as u8; 32],
            params: TrafficParams::default(),
            epoch_ms: EPOCH_MS,
            grace_ms: 10_000,
            allowed: allow.clone(),
            peers: vec![],
            threshold: 1,
        })
        .await
        .unwrap();
        servers.push(s);
    }
    let all: Vec<PeerAuthority> = servers
        .iter()
        .map(|s| PeerAuthority {
            address: s.local_addr().unwrap(),
            key: s.authority(),
        })
        .collect();
    let mut out = Vec::new();
    for (i, s) in servers.into_iter().enumerate() {
        let peers = all
            .iter()
            .filter(|p| p.key != all[i].key)
            .cloned()
            .collect();
        let s = s.with_peers(peers, 2).unwrap();
        let (addr, key, stats) = (s.local_addr().unwrap(), s.authority(), s.stats());
        let task = running[i].then(|| tokio::spawn(s.run()));
        out.push(Authority {
            addr,
            key,
            stats,
            task,
        });
    }
    out
}

fn registration(seed: u8, layer: u8) -> (SignedRegistration, [u8; 32]) {
    let id = SigningKey::from_bytes(&[seed; 32]);
    let epoch = now_ms() / EPOCH_MS;
    let key = |e: u64| EpochKey {
        epoch: e,
        key: SecretKey::from_bytes([seed ^ e as u8; 32]).public(),
    };
    let reg = Registration {
        identity: id.verifying_key().to_bytes(),
        role: Role::Mix { layer },
        address: format!("127.0.0.1:{}", 9000 + u16::from(seed)),
        link_key: [seed; 32],
        mix_keys: vec![key(epoch), key(epoch + 1)],
    };
    (
        SignedRegistration::sign(&reg, &id).unwrap(),
        id.verifying_key().to_bytes(),
    )
}

/// Polls `a` until it serves a document verified with threshold 2 that satisfies `ok`
/// (bounded: 15 s); returns it and its number of signatures.
async fn agreed(a: &Authority, trusted: &[[u8; 32]], ok: impl Fn(&Document) -> bool) -> usize {
    for _ in 0..150 {
        if let Ok(sd) = fetch_document(a.addr, None).await {
            if let Ok(doc) = sd.verify(trusted, 2, now_ms()) {
                if ok(&doc) {
                    return sd.signatures.len();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("authority {} never served an agreed document", a.addr);
}

fn lists(doc: &Document, identity: &[u8; 32]) -> bool {
    doc.nodes.iter().any(|n| &n.identity == identity)
}

#[tokio::test]
async fn three_authorities_agree_on_one_document() {
    let auths = authorities(&[None, None, None], &[true, true, true]).await;
    let trusted: Vec<[u8; 32]> = auths.iter().map(|a| a.key).collect();
    // A node registers with the first authority only; a gateway publishes with the second.
    let (reg, node) = registration(40, 2);
    register(auths[0].addr, &reg).await.unwrap();
    let gw_key = SigningKey::from_bytes(&[41; 32]);
    let entry = GatewayEntry::sign("{\"hello\":1}".into(), &gw_key);
    publish_gateway(auths[1].addr, &entry).await.unwrap();
    let gw = gw_key.verifying_key().to_bytes();
    for a in &auths {
        let n = agreed(a, &trusted, |d| {
            lists(d, &node) && d.gateways.iter().any(|g| g.identity == gw)
        })
        .await;
        assert!(n >= 2);
    }
    // Eventually each serves the document with all three signatures.
    for a in &auths {
        let mut best = 0;
        for _ in 0..100 {
            let sd = fetch_document(a.addr, None).await.unwrap();
            best = sd.signatures.len();
            if best == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(best, 3, "authority {} collected {best} signatures", a.addr);
        assert_eq!(a.stats.bad_votes.load(Ordering::Relaxed), 0);
    }
    // All three serve the same text.
    let texts: Vec<String> = futures_texts(&auths).await;
    assert!(texts.windows(2).all(|w| w[0] == w[1]));
    for a in auths {
        a.task.unwrap().abort();
    }
}

async fn futures_texts(auths: &[Authority]) -> Vec<String> {
    let mut v = Vec::new();
    for a in auths {
        v.push(fetch_document(a.addr, None).await.unwrap().document);
    }
    v
}

#[tokio::test]
async fn a_rogue_authority_cannot_add_a_node() {
    let (honest_reg, honest) = registration(50, 1);
    let (rogue_reg, rogue) = registration(51, 3);
    // The first two admit only the honest node; the third admits anyone.
    let allow = Some(vec![honest]);
    let auths = authorities(&[allow.clone(), allow, None], &[true, true, true]).await;
    let trusted: Vec<[u8; 32]> = auths.iter().map(|a| a.key).collect();
    register(auths[0].addr, &honest_reg).await.unwrap();
    register(auths[2].addr, &rogue_reg).await.unwrap();
    for a in &auths {
        agreed(a, &trusted, |d| lists(d, &honest)).await;
    }
    // Give the rogue node's registration every chance to spread, then check again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for a in &auths {
        let sd = fetch_document(a.addr, None).await.unwrap();
        let doc = sd.verify(&trusted, 2, now_ms()).unwrap();
        assert!(lists(&doc, &honest));
        assert!(!lists(&doc, &rogue), "{} lists the rogue node", a.addr);
    }
    for a in auths {
        a.task.unwrap().abort();
    }
}

#[tokio::test]
async fn two_of_three_agree_while_one_is_down() {
    let auths = authorities(&[None, None, None], &[true, true, false]).await;
    let trusted: Vec<[u8; 32]> = auths.iter().map(|a| a.key).collect();
    let (reg, node) = registration(60, 3);
    register(auths[1].addr, &reg).await.unwrap();
    for a in &auths[..2] {
        let n = agreed(a, &trusted, |d| lists(d, &node)).await;
        assert_eq!(n, 2);
    }
    // A node or client whose first directory is the one that is down falls back to the next.
    let doc = fetch_verified(&[auths[2].addr, auths[0].addr], &trusted, 2, now_ms())
        .await
        .unwrap();
    assert!(lists(&doc, &node));
    // With threshold 3 no client would accept it: the third signature is missing.
    let sd = fetch_document(auths[0].addr, None).await.unwrap();
    assert!(sd.verify(&trusted, 3, now_ms()).is_err());
    for a in auths {
        if let Some(t) = a.task {
            t.abort();
        }
    }
}
