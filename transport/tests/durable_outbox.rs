//! The durable outbox on `storage/`: messages accepted by `send` survive a sender crash and
//! are delivered exactly once by the restarted sender, including a message the recipient
//! already had (its duplicate is dropped and confirmed again). No timing assertions: every
//! wait is bounded and only guards against hangs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::time::timeout;
use transport::client::{Client, MemoryOutbox, Outbox, Outcome, StorageOutbox};

const WAIT: Duration = Duration::from_secs(90);

/// Opens the sender's store, retrying while a dropped client's tasks still hold the old one.
async fn open_outbox(dir: &Path) -> Arc<StorageOutbox> {
    for _ in 0..200 {
        if let Ok(db) = storage::Db::open(dir) {
            return Arc::new(StorageOutbox::open(db).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("data folder still locked");
}

async fn sender(net: &TestNet, outbox: Arc<StorageOutbox>, unreachable: Option<String>) -> Client {
    let mut cfg = client_cfg(net, 0, 0, Arc::new(MemoryOutbox::default()));
    cfg.outbox = outbox;
    cfg.provider_address_override = unreachable;
    Client::start(cfg).await.unwrap()
}

/// Drops a client and waits until its outbox handle is the last one left.
async fn crash(client: Client, outbox: Arc<StorageOutbox>) {
    drop(client);
    for _ in 0..200 {
        if Arc::strong_count(&outbox) == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("client tasks did not stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_survives_sender_crash_and_delivers_exactly_once() {
    let net = start_net(fast_params(), 2, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let mut rcfg = client_cfg(&net, 1, 1, Arc::new(MemoryOutbox::default()));
    rcfg.auto_confirm = false;
    let mut bob = Client::start(rcfg).await.unwrap();
    let to = bob.address();

    // 1. The sender cannot reach its provider (a closed loopback port): it accepts three
    // messages, durably, and crashes before any of them left.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let ob = open_outbox(dir.path()).await;
    let s1 = sender(&net, ob.clone(), Some(closed)).await;
    let msgs: Vec<Vec<u8>> = (0..3u8)
        .map(|i| vec![i; 500 + 3000 * usize::from(i)])
        .collect();
    for m in &msgs {
        s1.send(&to, m.clone()).await.unwrap();
    }
    assert_eq!(ob.list().unwrap().len(), 3);
    crash(s1, ob).await;

    // 2. A new sender on the same data folder resends them; bob gets each once.
    let ob = open_outbox(dir.path()).await;
    let mut s2 = sender(&net, ob.clone(), None).await;
    let resumed = s2.take_resumed();
    assert_eq!(resumed.len(), 3);
    let mut got = HashSet::new();
    while got.len() < msgs.len() {
        let r = timeout(WAIT, bob.recv()).await.unwrap().unwrap();
        bob.confirm(r.id);
        assert!(got.insert(r.bytes), "duplicate delivery");
    }
    assert_eq!(got, msgs.iter().cloned().collect());
    for h in resumed {
        assert_eq!(
            timeout(WAIT, h.outcome()).await.unwrap(),
            Outcome::Delivered
        );
    }
    assert!(ob.list().unwrap().is_empty());

    // 3. Bob receives a fourth message but confirms only after the sender crashed, so the
    // sender never learns it arrived and its successor sends it again.
    let fourth = b"the fourth message".to_vec();
    s2.send(&to, fourth.clone()).await.unwrap();
    let r = timeout(WAIT, bob.recv()).await.unwrap().unwrap();
    assert_eq!(r.bytes, fourth);
    crash(s2, ob).await;
    bob.confirm(r.id);
    let dups_before = bob.stats().get("duplicates");
    let ob = open_outbox(dir.path()).await;
    let mut s3 = sender(&net, ob.clone(), None).await;
    let resumed = s3.take_resumed();
    assert_eq!(resumed.len(), 1);
    // Delivered means bob confirmed the resent copy, which he dropped as a duplicate.
    assert_eq!(
        timeout(WAIT, resumed.into_iter().next().unwrap().outcome())
            .await
            .unwrap(),
        Outcome::Delivered
    );
    assert!(bob.stats().get("duplicates") > dups_before);
    assert!(ob.list().unwrap().is_empty());

    // Nothing else reached bob: the next message he receives is a fresh one.
    let last = b"last".to_vec();
    let h = s3.send(&to, last.clone()).await.unwrap();
    let r = timeout(WAIT, bob.recv()).await.unwrap().unwrap();
    bob.confirm(r.id);
    assert_eq!(r.bytes, last);
    assert_eq!(
        timeout(WAIT, h.outcome()).await.unwrap(),
        Outcome::Delivered
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_survives_requester_crash() {
    let net = start_net(fast_params(), 2, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let mut bob = client(&net, 1, 1, Arc::new(MemoryOutbox::default())).await;
    let to = bob.address();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };

    // The requester cannot reach its provider; its request is durable, then it crashes.
    let ob = open_outbox(dir.path()).await;
    let s1 = sender(&net, ob.clone(), Some(closed)).await;
    let h = s1
        .send_request(&to, b"backfill please".to_vec(), 3000, WAIT)
        .await
        .unwrap();
    let first_id = h.id;
    drop(h);
    assert_eq!(ob.list().unwrap().len(), 1);
    crash(s1, ob).await;

    // The restarted requester re-issues it under a new id; bob answers; the response reaches
    // the resumed handle and the request leaves the outbox.
    let ob = open_outbox(dir.path()).await;
    let mut s2 = sender(&net, ob.clone(), None).await;
    let mut resumed = s2.take_resumed_requests();
    assert_eq!(resumed.len(), 1);
    let h = resumed.pop().unwrap();
    assert_ne!(h.id, first_id);
    let answer = vec![7u8; 3000];
    let serve = async {
        let r = timeout(WAIT, bob.recv()).await.unwrap().unwrap();
        assert_eq!(r.bytes, b"backfill please");
        bob.respond(r.reply.expect("reply token"), answer.clone())
            .unwrap();
    };
    let (resp, ()) = tokio::join!(h.response(), serve);
    assert_eq!(resp.unwrap(), answer);
    assert!(ob.list().unwrap().is_empty());
}
