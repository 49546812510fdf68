//! Olm and Megolm between two gateways' key stores, with a hand-driven clock.

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use ruma::{OwnedRoomId, OwnedServerName, ServerName};
use storage::Db;

use super::{megolm::decrypt_with_every_held_session, GroupKeys, KeyError, KeyPolicy};
use crate::service::clock::Clock;

struct Hand(AtomicU64);

impl Clock for Hand {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn store(clock: Arc<Hand>) -> GroupKeys {
    GroupKeys::new(Db::memory().expect("db"), clock, KeyPolicy::default())
}

fn name(s: &str) -> OwnedServerName {
    OwnedServerName::try_from(s).expect("name")
}

fn room() -> OwnedRoomId {
    OwnedRoomId::try_from("!r:a").expect("room")
}

fn readers(names: &[&str]) -> BTreeSet<OwnedServerName> {
    names.iter().map(|n| name(n)).collect()
}

/// Sets up an Olm session a → b and delivers `share`s from a's seal to b.
async fn olm_pair(a: &GroupKeys, b: &GroupKeys, b_name: &ServerName) {
    let (identity, otk) = b.hand_out_one_time_key().await.expect("claim");
    a.create_olm_session(b_name, &identity, &otk)
        .await
        .expect("session");
}

#[tokio::test]
async fn olm_carries_a_share_and_megolm_decrypts_once() {
    let clock = Arc::new(Hand(AtomicU64::new(1_000_000)));
    let (a, b) = (store(clock.clone()), store(clock.clone()));
    let (na, nb) = (name("a"), name("b"));
    olm_pair(&a, &b, &nb).await;

    let sealed = a
        .seal(&room(), &readers(&["b"]), "shared", 1, b"hello")
        .await
        .expect("seal");
    assert_eq!(sealed.shares.len(), 1);
    // The share goes under Olm; b starts its session from the pre-key message.
    let share = serde_json::to_vec(&sealed.shares[0].1).expect("json");
    let olm = a.olm_encrypt(&nb, &share).await.expect("olm");
    assert_eq!(olm.kind, 0);
    let plain = b.olm_decrypt(&na, &olm).await.expect("olm decrypt");
    let share: super::megolm::RoomKeyShare = serde_json::from_slice(&plain).expect("share");
    // A replayed pre-key message does not decrypt twice (its one-time key is gone)... unless
    // the session took it; then it is the session's own replay protection that refuses it.
    assert!(b.olm_decrypt(&na, &olm).await.is_err());
    b.accept_share(&na, &share).await.expect("accept");

    let (r, text) = b
        .open(&na, &sealed.session_id, &sealed.ciphertext)
        .await
        .expect("open");
    assert_eq!((r, text.as_slice()), (room(), &b"hello"[..]));
    // The same message again is a replay.
    assert_eq!(
        b.open(&na, &sealed.session_id, &sealed.ciphertext).await,
        Err(KeyError::Replay)
    );
    // A truncated or altered ciphertext is refused as forged.
    let mut cut = sealed.ciphertext.clone();
    cut.truncate(cut.len() / 2);
    assert!(matches!(
        b.open(&na, &sealed.session_id, &cut).await,
        Err(KeyError::Forged(_))
    ));
    // Unknown session.
    assert_eq!(
        b.open(&na, "nope", &sealed.ciphertext).await,
        Err(KeyError::UnknownSession)
    );
}

#[tokio::test]
async fn out_of_order_messages_decrypt_and_the_session_advances() {
    let clock = Arc::new(Hand(AtomicU64::new(1_000_000)));
    let (a, b) = (store(clock.clone()), store(clock.clone()));
    let na = name("a");
    let first = a
        .seal(&room(), &readers(&["b"]), "shared", 1, b"m0")
        .await
        .expect("seal");
    b.accept_share(&na, &first.shares[0].1)
        .await
        .expect("accept");
    let m1 = a
        .seal(&room(), &readers(&["b"]), "shared", 1, b"m1")
        .await
        .expect("m1");
    let m2 = a
        .seal(&room(), &readers(&["b"]), "shared", 1, b"m2")
        .await
        .expect("m2");
    assert_eq!(m1.session_id, first.session_id);
    assert!(m1.shares.is_empty());
    // m2 before m1 before m0.
    for (m, text) in [(&m2, "m2"), (&m1, "m1"), (&first, "m0")] {
        let (_, plain) = b
            .open(&na, &m.session_id, &m.ciphertext)
            .await
            .expect("open");
        assert_eq!(plain, text.as_bytes());
    }
    // All three decrypted: the session is advanced past them, so none decrypts again even
    // from a store snapshot.
    let epochs = b.received_epochs().await.expect("epochs");
    assert_eq!(epochs[0].2, 3);
    for m in [&first, &m1, &m2] {
        assert!(!decrypt_with_every_held_session(&b, &m.ciphertext).expect("try"));
    }
}

#[tokio::test]
async fn rotation_on_leave_keeps_the_leaver_out() {
    let clock = Arc::new(Hand(AtomicU64::new(1_000_000)));
    let (a, b, c) = (
        store(clock.clone()),
        store(clock.clone()),
        store(clock.clone()),
    );
    let na = name("a");
    let before = a
        .seal(&room(), &readers(&["b", "c"]), "shared", 1, b"both")
        .await
        .expect("seal");
    for (reader, share) in &before.shares {
        let target = if reader.as_str() == "b" { &b } else { &c };
        target.accept_share(&na, share).await.expect("accept");
    }
    // c leaves: a new epoch, shared with b only.
    let after = a
        .seal(&room(), &readers(&["b"]), "shared", 1, b"only b")
        .await
        .expect("seal");
    assert_ne!(after.session_id, before.session_id);
    assert_eq!(after.rotated.map(|r| r.label()), Some("reader_left"));
    assert_eq!(after.shares.len(), 1);
    assert_eq!(after.shares[0].0, name("b"));
    b.accept_share(&na, &after.shares[0].1)
        .await
        .expect("accept");
    assert!(b
        .open(&na, &after.session_id, &after.ciphertext)
        .await
        .is_ok());
    // c holds the ciphertext and every key it was given: it cannot read it.
    assert_eq!(
        c.open(&na, &after.session_id, &after.ciphertext).await,
        Err(KeyError::UnknownSession)
    );
    assert!(!decrypt_with_every_held_session(&c, &after.ciphertext).expect("try"));
    // And a reshare to c is refused: it was never a reader of the new epoch.
    assert_eq!(
        a.reshare(&name("c"), &after.session_id).await,
        Err(KeyError::NotEntitled)
    );
    // b lost its key: it asks again and gets the epoch from where it may read.
    let again = a
        .reshare(&name("b"), &after.session_id)
        .await
        .expect("reshare");
    assert_eq!(again.session_id, after.session_id);
}

#[tokio::test]
async fn a_joiner_gets_the_epoch_from_its_current_index_only() {
    let clock = Arc::new(Hand(AtomicU64::new(1_000_000)));
    let (a, d) = (store(clock.clone()), store(clock.clone()));
    let na = name("a");
    let old = a
        .seal(&room(), &readers(&["b"]), "shared", 1, b"before")
        .await
        .expect("seal");
    let new = a
        .seal(&room(), &readers(&["b", "d"]), "shared", 1, b"after")
        .await
        .expect("seal");
    assert_eq!(
        new.session_id, old.session_id,
        "shared visibility: no rotation"
    );
    assert_eq!(new.shares.len(), 1);
    d.accept_share(&na, &new.shares[0].1).await.expect("accept");
    assert!(d.open(&na, &new.session_id, &new.ciphertext).await.is_ok());
    assert_eq!(
        d.open(&na, &old.session_id, &old.ciphertext).await,
        Err(KeyError::Replay),
        "an index before the share is out of reach"
    );
    // Under joined visibility the joiner starts a new epoch instead.
    let joined = OwnedRoomId::try_from("!j:a").expect("room");
    let first = a
        .seal(&joined, &readers(&["b"]), "joined", 1, b"x")
        .await
        .expect("seal");
    let next = a
        .seal(&joined, &readers(&["b", "d"]), "joined", 1, b"y")
        .await
        .expect("seal");
    assert_ne!(first.session_id, next.session_id);
    assert_eq!(next.rotated.map(|r| r.label()), Some("joiner"));
}

#[tokio::test]
async fn retention_deletes_epochs_sessions_and_keys() {
    let clock = Arc::new(Hand(AtomicU64::new(1_000_000)));
    let (a, b) = (store(clock.clone()), store(clock.clone()));
    let (na, nb) = (name("a"), name("b"));
    olm_pair(&a, &b, &nb).await;
    let sealed = a
        .seal(&room(), &readers(&["b"]), "shared", 1, b"x")
        .await
        .expect("seal");
    let share = serde_json::to_vec(&sealed.shares[0].1).expect("json");
    let olm = a.olm_encrypt(&nb, &share).await.expect("olm");
    b.olm_decrypt(&na, &olm).await.expect("decrypt");
    // An extra one-time key handed out and never used.
    b.hand_out_one_time_key().await.expect("claim");
    b.accept_share(&na, &sealed.shares[0].1)
        .await
        .expect("accept");
    b.hold(&na, "other", "abc").await.expect("hold");

    clock
        .0
        .fetch_add(KeyPolicy::default().retention_ms() + 1, Ordering::Relaxed);
    let gone = b.expire().await.expect("expire");
    assert_eq!(
        a.expire().await.expect("expire").own_epochs,
        1,
        "the sender's epoch too"
    );
    assert_eq!(a.current_epoch(&room()).await.expect("epoch"), None);
    assert_eq!(gone.epochs, 1);
    assert_eq!(gone.olm_sessions, 1);
    assert_eq!(gone.one_time_keys, 1);
    assert_eq!(gone.pending, 1);
    assert!(!decrypt_with_every_held_session(&b, &sealed.ciphertext).expect("try"));
    assert!(b.olm_decrypt(&na, &olm).await.is_err());
}

#[tokio::test]
async fn held_messages_wait_and_are_asked_for() {
    let clock = Arc::new(Hand(AtomicU64::new(1_000_000)));
    let b = store(clock.clone());
    let na = name("a");
    assert!(b.hold(&na, "s1", "c1").await.expect("hold"));
    assert!(b.hold(&na, "s1", "c2").await.expect("hold"));
    assert!(b.due_requests().await.expect("due").is_empty());
    clock.0.fetch_add(
        KeyPolicy::default().ask_after_secs * 1000,
        Ordering::Relaxed,
    );
    let due = b.due_requests().await.expect("due");
    assert_eq!(due.len(), 1);
    assert!(
        b.due_requests().await.expect("due").is_empty(),
        "asked once per wait"
    );
    assert_eq!(
        b.take_held(&na, "s1").await.expect("take"),
        vec!["c1", "c2"]
    );
    assert_eq!(b.held_count().await.expect("count"), 0);
}

#[tokio::test]
async fn requests_are_budgeted() {
    let clock = Arc::new(Hand(AtomicU64::new(1_000_000)));
    let b = store(clock.clone());
    let flood = name("flood");
    let admitted = (0..100).filter(|_| b.admit_request(&flood).is_ok()).count();
    assert_eq!(admitted, super::REQUESTS_PER_MINUTE as usize);
    assert!(b.admit_request(&name("other")).is_ok());
    clock.0.fetch_add(60_000, Ordering::Relaxed);
    assert!(b.admit_request(&flood).is_ok());
}
