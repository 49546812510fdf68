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
