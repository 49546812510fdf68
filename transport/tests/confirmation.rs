//! End-to-end confirmation semantics: a message its recipient never confirms ends `Failed`
//! after `max_sends` transmissions, yet the recipient's application saw it exactly once.
//! No timing assertions: every wait is bounded and only guards against hangs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::time::timeout;
use transport::client::{Client, MemoryOutbox, Outbox, Outcome};

const WAIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_message_fails_but_arrives_at_most_once() {
    let net = start_net(fast_params(), 2, 2).await;
    let outbox = Arc::new(MemoryOutbox::default());
    let mut scfg = client_cfg(&net, 0, 0, outbox.clone());
    scfg.max_sends = 3;
    let alice = Client::start(scfg).await.unwrap();
    let mut rcfg = client_cfg(&net, 1, 1, Arc::new(MemoryOutbox::default()));
    rcfg.auto_confirm = false;
    let mut bob = Client::start(rcfg).await.unwrap();
    let to = bob.address();

    // Bob's application takes the message but never confirms it.
    let h = alice.send(&to, b"never confirmed".to_vec()).await.unwrap();
    let r = timeout(WAIT, bob.recv()).await.unwrap().unwrap();
    assert_eq!(r.bytes, b"never confirmed");
    assert_eq!(timeout(WAIT, h.outcome()).await.unwrap(), Outcome::Failed);
    assert_eq!(alice.stats().get("resends"), 2);
    assert_eq!(alice.stats().get("confirmations"), 0);
    assert!(
        outbox.list().unwrap().is_empty(),
        "failed messages leave the outbox"
    );

    // The next message bob's application sees is a new one: the resent copies were dropped.
    let h = alice.send(&to, b"marker".to_vec()).await.unwrap();
    let r = timeout(WAIT, bob.recv()).await.unwrap().unwrap();
    assert_eq!(r.bytes, b"marker");
    bob.confirm(r.id);
    assert_eq!(
        timeout(WAIT, h.outcome()).await.unwrap(),
        Outcome::Delivered
    );
    assert!(bob.stats().get("duplicates") > 0);
}

/// A fragment whose packet cannot be built (the recipient's provider is not in the sender's
/// document: it joined after the sender's last refresh) waits between attempts as long as a
/// lost packet would, instead of burning every retry in consecutive send slots; only then
/// does the message fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_provider_fails_only_after_the_retry_waits() {
    let net = start_net(fast_params(), 2, 1).await;
    let mut cfg = client_cfg(&net, 0, 0, Arc::new(MemoryOutbox::default()));
    cfg.max_retries = 2;
    let slack = cfg.ack_slack;
    let alice = Client::start(cfg).await.unwrap();
    let mut to = alice.address();
    to.provider = [0x5a; 16];

    let t0 = tokio::time::Instant::now();
    let h = alice
        .send(&to, b"to a provider we do not know".to_vec())
        .await
        .unwrap();
    assert_eq!(timeout(WAIT, h.outcome()).await.unwrap(), Outcome::Failed);
    // Two waits of at least `ack_slack` each came between the three attempts (at λ = 40/s
    // the three slots alone take about 75 ms).
    assert!(t0.elapsed() >= 2 * slack, "failed after {:?}", t0.elapsed());
    // One attempt per fragment (data and parity), three each.
    assert_eq!(alice.stats().get("build_failures"), 6);
    assert_eq!(alice.stats().get("sent_real"), 0);
}
