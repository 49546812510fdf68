//! Delivery over lossy links: every link of the network (node to node, gateway to provider
//! and back) drops 10% of its data frames, duplicates and reorders others and now and then
//! resets; every message, from 1 B to 64 KiB, still arrives exactly once and is confirmed.
//! No timing assertions: the waits only guard against hangs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::time::timeout;
use transport::client::{MemoryOutbox, Outcome};
use transport::link::{FaultSpec, LinkFaults};

const WAIT: Duration = Duration::from_secs(120);

fn message(tag: u32, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    blake3::Hasher::new()
        .update(&tag.to_be_bytes())
        .finalize_xof()
        .fill(&mut v);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_arrives_once_over_lossy_links() {
    // Faults act on what each end sends, so every frame crosses exactly one fault plan.
    let spec = FaultSpec {
        drop: 0.10,
        duplicate: 0.05,
        reorder: 0.05,
        delay: 0.05,
        max_delay: Duration::from_millis(5),
        reset: 0.0005,
    };
    let faults = Arc::new(LinkFaults::new(spec, FaultSpec::default(), 11));
    let mut cfg = net_cfg(fast_params(), 2, 2);
    cfg.seed = seed("loss", 0);
    cfg.link.faults = Some(faults.clone());
    // The default mailbox: a lost poll answer is offered again when its short lease ends;
    // fragments the receiver holds are kept by its receipts.
    let net = TestNet::start(cfg).await.unwrap();
    let a = client(&net, 0, 0, Arc::new(MemoryOutbox::default())).await;
    let mut b = client(&net, 1, 1, Arc::new(MemoryOutbox::default())).await;

    let sizes = [1usize, 1000, 1551, 10_000, 65_536];
    let msgs: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| message(i as u32, n))
        .collect();
    let mut handles = vec![];
    for m in &msgs {
        handles.push(a.send(&b.address(), m.clone()).await.unwrap());
    }
    let mut got = vec![];
    let outcomes = async {
        let mut v = vec![];
        for h in handles {
            v.push(h.outcome().await);
        }
        v
    };
    let receive = async {
        while got.len() < msgs.len() {
            let r = b.recv().await.expect("client stopped");
            got.push(r.bytes);
        }
    };
    let (outcomes, ()) = timeout(WAIT, async { tokio::join!(outcomes, receive) })
        .await
        .expect("delivery over lossy links timed out");
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
    // Nothing more arrives: no duplicate reached the application.
    let extra = timeout(Duration::from_secs(2), b.recv()).await;
    assert!(extra.is_err(), "a message arrived twice");
    let got_set: HashSet<&Vec<u8>> = got.iter().collect();
    assert_eq!(got_set.len(), got.len());
    assert_eq!(got_set, msgs.iter().collect::<HashSet<_>>());

    // The faults really happened, and the network's defences saw the duplicates.
    let count = |c| LinkFaults::count(c);
    assert!(
        count(&faults.dropped) > 20,
        "dropped {}",
        count(&faults.dropped)
    );
    assert!(count(&faults.duplicated) > 5);
    assert!(count(&faults.reordered) > 5);
    let sa = a.stats();
    let sb = b.stats();
    eprintln!(
        "faults: seen {} dropped {} duplicated {} reordered {} delayed {} resets {}; \
         replays dropped {}; mailbox items offered again {}; sender retransmits {} resends {}; \
         receiver duplicates {}",
        count(&faults.seen),
        count(&faults.dropped),
        count(&faults.duplicated),
        count(&faults.reordered),
        count(&faults.delayed),
        count(&faults.resets),
        net.total("dropped_replay"),
        net.total("offered_again"),
        sa.get("retransmits"),
        sa.get("resends"),
        sb.get("duplicates"),
    );
    assert!(
        net.total("dropped_replay") > 0,
        "duplicated packets reach the replay filter"
    );
    assert!(
        net.total("offered_again") > 0,
        "lost poll answers are offered again"
    );
}
