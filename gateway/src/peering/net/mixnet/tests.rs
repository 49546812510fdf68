//! Two gateways' [`MixnetNet`]s on a loopback mixnet (`transport::local::LocalMixnet`): they
//! find each other by server name, exchange messages both ways, answer a request, and an
//! unconfirmed message comes again after the receiver restarts on the same data folder.
//! Every wait is bounded and only guards against hangs; nothing asserts on timing.

use std::{path::Path, time::Duration};

use transport::{
    directory::TrafficParams,
    local::{LocalMixnet, LocalMixnetConfig},
};

use super::*;
use crate::config::AuthorityKey;

const WAIT: Duration = Duration::from_secs(60);

pub(super) async fn network() -> (LocalMixnet, NetworkConfig) {
    let net = LocalMixnet::start(LocalMixnetConfig {
        params: TrafficParams {
            lambda_per_s: 40.0,
            loop_per_s: 2.0,
            mix_loop_per_s: 1.0,
            mu_ms: 2.0,
            poll_per_s: 20.0,
            poll_batch: 16,
            ..TrafficParams::default()
        },
        refresh: Duration::from_millis(500),
        ..LocalMixnetConfig::default()
    })
    .await
    .expect("local mixnet");
    let config = NetworkConfig {
        directories: vec![net.directory],
        authorities: vec![AuthorityKey(net.authority)],
        threshold: None,
    };
    (net, config)
}

fn options() -> MixnetOptions {
    MixnetOptions {
        refresh: Duration::from_millis(500),
        ..MixnetOptions::default()
    }
}

/// Opens the data folder's store, retrying while a stopped gateway's tasks still hold it.
async fn open_db(dir: &Path) -> Db {
    for _ in 0..200 {
        if let Ok(db) = Db::open(&dir.join("db")) {
            return db;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("data folder still locked");
}

async fn join(dir: &Path, network: &NetworkConfig) -> (Identity, Arc<MixnetNet>, MixnetInbox) {
    let identity = Identity::load_or_create(dir, None).expect("identity");
    let db = open_db(dir).await;
    let (net, inbox) =
        tokio::time::timeout(WAIT, MixnetNet::start(&identity, db, network, options()))
            .await
            .expect("start in time")
            .expect("join the mixnet");
    (identity, net, inbox)
}

async fn next(inbox: &mut MixnetInbox) -> Inbound {
    tokio::time::timeout(WAIT, inbox.next())
        .await
        .expect("a message in time")
        .expect("network running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_find_each_other_and_talk_both_ways() {
    let (_mixnet, network) = network().await;
    let (a_dir, b_dir) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (a_id, a, mut a_in) = join(a_dir.path(), &network).await;
    let (b_id, b, mut b_in) = join(b_dir.path(), &network).await;

    a.send(b_id.server_name(), b"hello b".to_vec())
        .await
        .expect("a -> b");
    let got = next(&mut b_in).await;
    assert_eq!(got.bytes, b"hello b");
    assert!(got.reply.is_none());
    b.confirm(got.id);

    b.send(a_id.server_name(), b"hello a".to_vec())
        .await
        .expect("b -> a");
    let got = next(&mut a_in).await;
    assert_eq!(got.bytes, b"hello a");
    a.confirm(got.id);

    // A request gets its response on its reply blocks. The responder answers every ping it
    // gets until it is stopped, and the asker asks again with fresh reply blocks when an
    // answer does not come (answers ride reply blocks without acknowledgements, so an
    // overloaded machine can lose one; peering's `ask` does the same).
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let responder = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return b_in,
                req = next(&mut b_in) => {
                    assert_eq!(req.bytes, b"ping");
                    req.reply
                        .expect("a request carries a reply")
                        .send(b"pong".to_vec())
                        .expect("answer");
                }
            }
        }
    });
    let mut answer = Err(NetError::Timeout);
    for _ in 0..3 {
        answer = a
            .request(b_id.server_name(), b"ping".to_vec(), 1024, WAIT / 3)
            .await;
        if !matches!(answer, Err(NetError::Timeout)) {
            break;
        }
    }
    assert_eq!(answer.expect("response"), b"pong");
    stop.send(()).expect("responder running");
    let _b_in = responder.await.expect("responder");

    // A request nobody answers ends in Timeout after its wait.
    assert!(matches!(
        a.request(
            b_id.server_name(),
            b"anyone?".to_vec(),
            1024,
            Duration::from_millis(500)
        )
        .await,
        Err(NetError::Timeout)
    ));

    // Bad input is refused before anything is sent.
    let stranger = crate::identity::server_name_for_key(&[7; 32]);
    assert!(matches!(
        a.send(&stranger, b"?".to_vec()).await,
        Err(NetError::UnknownPeer(_))
    ));
    let not_a_key = ServerName::parse("example.org").expect("name");
    assert!(matches!(
        a.send(&not_a_key, b"?".to_vec()).await,
        Err(NetError::UnknownPeer(_))
    ));
    assert!(matches!(
        a.send(b_id.server_name(), vec![0; MAX_MESSAGE + 1]).await,
        Err(NetError::TooLarge(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_message_comes_again_after_the_receiver_restarts() {
    let (_mixnet, network) = network().await;
    let (a_dir, b_dir) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (_a_id, a, _a_in) = join(a_dir.path(), &network).await;
    let (b_id, b, mut b_in) = join(b_dir.path(), &network).await;
    let b_name = b_id.server_name().to_owned();
    let b_address = b.address();

    a.send(&b_name, b"stored?".to_vec()).await.expect("send");
    let first = next(&mut b_in).await;
    assert_eq!(first.bytes, b"stored?");
    // B "crashes" before storing it: no confirmation.
    drop((b, b_in, b_id));

    let (b_id, b, mut b_in) = join(b_dir.path(), &network).await;
    assert_eq!(b_id.server_name(), b_name, "same identity after a restart");
    assert_eq!(b.address(), b_address, "same mailbox after a restart");
    let again = next(&mut b_in).await;
    assert_eq!(again.bytes, b"stored?");
    b.confirm(again.id);

    // Once confirmed it does not come a third time: the next message is the next one.
    a.send(&b_name, b"after".to_vec()).await.expect("send");
    let after = next(&mut b_in).await;
    assert_eq!(after.bytes, b"after");
}
