//! The in-process network test: directory, 3 mix layers × 2 nodes, 2 providers, 4 clients on
//! loopback. Messages of 1 B – 64 KiB are delivered exactly once despite a mix node killed
//! mid-run, a provider restarted with empty memory after it had acknowledged messages, and a
//! receiver that was offline; bad input is dropped and counted. `Delivered` means the
//! recipient confirmed, so every wait for outcomes runs beside the receivers. No timing
//! assertions: every wait is bounded and only guards against hangs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use transport::client::{Address, Client, MemoryOutbox, Outcome, Received, SendHandle};
use transport::directory::fetch_document;
use transport::link::{connect, Frame, FrameKind, LinkKeypair};
use transport::packet::{create_forward, create_surb, RouteHop, SecretKey, HEADER_SIZE};
use transport::util::now_ms;

const WAIT: Duration = Duration::from_secs(90);

fn message(tag: u32, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let mut h = blake3::Hasher::new();
    h.update(&tag.to_be_bytes());
    h.finalize_xof().fill(&mut v);
    if len >= 4 {
        v[..4].copy_from_slice(&tag.to_be_bytes());
    }
    v
}

/// A client on provider 1 that confirms messages explicitly (at-least-once mode).
async fn receiver(net: &TestNet, i: usize, outbox: Arc<MemoryOutbox>) -> Client {
    let mut cfg = client_cfg(net, i, 1, outbox);
    cfg.auto_confirm = false;
    Client::start(cfg).await.unwrap()
}

async fn collect(c: &mut Client, n: usize) -> Vec<Received> {
    let mut out = vec![];
    while out.len() < n {
        let r = timeout(WAIT, c.recv())
            .await
            .expect("receive timed out")
            .expect("client stopped");
        // Receivers c and d confirm after "storing" (auto_confirm off); others ignore it.
        c.confirm(r.id);
        out.push(r);
    }
    out
}

async fn queue_all(from: &Client, to: &Address, msgs: &[Vec<u8>]) -> Vec<SendHandle> {
    let mut handles = Vec::with_capacity(msgs.len());
    for m in msgs {
        handles.push(from.send(to, m.clone()).await.unwrap());
    }
    handles
}

async fn all_delivered(handles: Vec<SendHandle>) {
    for h in handles {
        let o = timeout(WAIT, h.outcome()).await.expect("outcome timed out");
        assert_eq!(o, Outcome::Delivered);
    }
}

fn check_exactly(got: &[Received], want: &[Vec<u8>]) {
    let got_set: HashSet<&Vec<u8>> = got.iter().map(|r| &r.bytes).collect();
    assert_eq!(got_set.len(), got.len(), "duplicate delivery");
    let want_set: HashSet<&Vec<u8>> = want.iter().collect();
    assert_eq!(got_set, want_set);
}

async fn wait_counter(net: &TestNet, name: &str, at_least: u64) -> u64 {
    for _ in 0..200 {
        let v = net.total(name);
        if v >= at_least {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    net.total(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_delivers_exactly_once_through_failures() {
    let mut net = start_net(fast_params(), 2, 2).await;
    let obs: Vec<Arc<MemoryOutbox>> = (0..4).map(|_| Arc::new(MemoryOutbox::default())).collect();
    let a = client(&net, 0, 0, obs[0].clone()).await;
    let b = client(&net, 1, 0, obs[1].clone()).await;
    let mut c = receiver(&net, 2, obs[2].clone()).await;
    let mut d = receiver(&net, 3, obs[3].clone()).await;
    let (ca, da) = (c.address(), d.address());

    // 1. Sizes from 1 B to 64 KiB, two senders, two receivers, plus one the other way.
    let sizes = [1usize, 1000, 1550, 1551, 10_000, 65_536];
    let to_c: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, n)| message(i as u32, *n))
        .collect();
    let to_d: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, n)| message(100 + i as u32, *n))
        .collect();
    let to_a = vec![message(200, 3000)];
    let mut a = a;
    let aa = a.address();
    let (h1, h2, h3) = tokio::join!(
        queue_all(&a, &ca, &to_c),
        queue_all(&b, &da, &to_d),
        queue_all(&c, &aa, &to_a)
    );
    let (gc, gd, ga, (), (), ()) = tokio::join!(
        collect(&mut c, to_c.len()),
        collect(&mut d, to_d.len()),
        collect(&mut a, 1),
        all_delivered(h1),
        all_delivered(h2),
        all_delivered(h3)
    );
    check_exactly(&gc, &to_c);
    check_exactly(&gd, &to_d);
    check_exactly(&ga, &to_a);

    // 1b. A recipient whose provider is not in the directory: the send fails, nothing hangs.
    let nowhere = Address {
        provider: [0xaa; 16],
        ..ca.clone()
    };
    let h = a.send(&nowhere, b"lost".to_vec()).await.unwrap();
    assert_eq!(timeout(WAIT, h.outcome()).await.unwrap(), Outcome::Failed);

    // 2. A mix node dies mid-run: retransmission on fresh paths still delivers.
    let msgs: Vec<_> = (0..6)
        .map(|i| message(300 + i, 2000 + 500 * i as usize))
        .collect();
    let handles = queue_all(&a, &ca, &msgs).await;
    net.mixes[0].stop();
    let (got, ()) = tokio::join!(collect(&mut c, msgs.len()), all_delivered(handles));
    check_exactly(&got, &msgs);

    // 3. The receivers' provider restarts and, like a real provider, forgets everything in
    // its mailboxes, including packets it had acknowledged. The receiver is offline while
    // the provider stores them, so the provider restart is what loses them; the senders'
    // end-to-end confirmations make them come again.
    drop(c);
    let msgs: Vec<_> = (0..4)
        .map(|i| message(400 + i, 700 + 2000 * i as usize))
        .collect();
    let acks_before = a.stats().get("acks");
    let handles = queue_all(&a, &ca, &msgs).await;
    let store = net.providers[1].mailboxes.clone().unwrap();
    // 2 + 3 + 5 + 6 fragments (data and parity): wait until the provider acknowledged all.
    let frags = 16;
    for _ in 0..3000 {
        if a.stats().get("acks") >= acks_before + frags {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(a.stats().get("acks") >= acks_before + frags);
    let lost = store.len(&ca.mailbox);
    eprintln!("provider restarts holding {lost} acknowledged packets for c");
    net.restart_provider(1).await.unwrap();
    let fresh = net.providers[1].mailboxes.clone().unwrap();
    assert!(
        !Arc::ptr_eq(&store, &fresh),
        "the restarted provider has a new store"
    );
    drop(store);
    let mut c = receiver(&net, 2, obs[2].clone()).await;
    let (got, ()) = tokio::join!(collect(&mut c, msgs.len()), all_delivered(handles));
    check_exactly(&got, &msgs);
    assert!(
        a.stats().get("resends") > 0,
        "lost messages were sent again"
    );

    // 4. The receiver is offline; its provider holds the messages until it polls again.
    drop(d);
    let msgs: Vec<_> = (0..3).map(|i| message(500 + i, 5000)).collect();
    let handles = queue_all(&b, &da, &msgs).await;
    let store = net.providers[1].mailboxes.clone().unwrap();
    for _ in 0..600 {
        if store.len(&da.mailbox) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(store.len(&da.mailbox) > 0);
    let mut d = receiver(&net, 3, obs[3].clone()).await;
    assert_eq!(d.address(), da);
    let (got, ()) = tokio::join!(collect(&mut d, msgs.len()), all_delivered(handles));
    check_exactly(&got, &msgs);

    // 4b. The receiver crashes half-way through a 64 KiB message: fragments it had taken but
    // not acknowledged are offered again, and the restarted receiver gets the message once.
    let big = vec![message(550, 65_536)];
    let h = b.send(&da, big[0].clone()).await.unwrap();
    for _ in 0..400 {
        if d.stats().get("fragments") >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let completed_before_crash = d.stats().get("received") > msgs.len() as u64;
    eprintln!(
        "receiver crashed after {} fragments (message complete before crash: {completed_before_crash})",
        d.stats().get("fragments")
    );
    drop(d);
    // Whether or not it was complete, it was never confirmed: the restarted receiver gets it
    // (from the provider or from the sender's next transmission) exactly once.
    let mut d = receiver(&net, 3, obs[3].clone()).await;
    let (got, ()) = tokio::join!(collect(&mut d, 1), all_delivered(vec![h]));
    check_exactly(&got, &big);

    // 5. Request / response over the reply blocks the request carried.
    let req = a.request(&ca, b"ping".to_vec(), 3000, WAIT);
    let answer = async {
        let r = collect(&mut c, 1).await.pop().unwrap();
        assert_eq!(r.bytes, b"ping");
        c.respond(r.reply.expect("reply token"), message(600, 3000))
            .unwrap();
    };
    let (resp, ()) = tokio::join!(req, answer);
    assert_eq!(resp.unwrap(), message(600, 3000));

    // 6. Bad input: dropped and counted, nothing else disturbed.
    let sd = fetch_document(net.directory, None).await.unwrap();
    let doc = sd.verify(&[net.authority], 1, now_ms()).unwrap();
    let hop = |id| {
        let n = doc.node(id).unwrap();
        RouteHop {
            id: n.id,
            public: n.mix_key,
            delay_us: 0,
        }
    };
    let alive = |l: u8| doc.layer(l).find(|n| n.id != net.mixes[0].id).unwrap().id;
    let route = vec![
        hop(&net.providers[0].id),
        hop(&alive(1)),
        hop(&alive(2)),
        hop(&alive(3)),
        hop(&net.providers[1].id),
    ];
    let mut rng = rand::thread_rng();
    let back: Vec<RouteHop> = route.iter().rev().cloned().collect();
    let (ack, _) = create_surb(&mut rng, &back, &[9; 16]).unwrap();
    let good = create_forward(&mut rng, &route, &ca.mailbox, &ca.key, Some(&ack), b"x").unwrap();
    // A second packet (same header would count as a replay) with one payload bit flipped.
    let (ack2, _) = create_surb(&mut rng, &back, &[9; 16]).unwrap();
    let good2 = create_forward(&mut rng, &route, &ca.mailbox, &ca.key, Some(&ack2), b"y").unwrap();
    let mut tagged = good2.as_bytes().to_vec();
    tagged[HEADER_SIZE + 900] ^= 4;
    let mut wrong_version = good.as_bytes().to_vec();
    wrong_version[0] = 9;
    let mut forged = vec![1u8; good.as_bytes().len()];
    forged[1..]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i * 31) as u8);
    let fake = RouteHop {
        id: [0xee; 16],
        public: SecretKey::random().public(),
        delay_us: 0,
    };
    let unknown = create_forward(
        &mut rng,
        &[route[0].clone(), fake],
        &[1; 16],
        &ca.key,
        None,
        b"",
    )
    .unwrap();
    let before: Vec<u64> = [
        "dropped_replay",
        "dropped_tagged",
        "dropped_malformed",
        "dropped_bad_mac",
        "dropped_unknown_hop",
        "links_refused",
    ]
    .iter()
    .map(|n| net.total(n))
    .collect();
    let p0 = doc.node(&net.providers[0].id).unwrap();
    let sock = TcpStream::connect(&p0.address).await.unwrap();
    let (mut tx, _rx) = connect(sock, &LinkKeypair::random(), &p0.link_key, &link_cfg())
        .await
        .unwrap();
    for p in [
        good.as_bytes().to_vec(),
        good.as_bytes().to_vec(),
        tagged,
        wrong_version,
        forged,
        unknown.as_bytes().to_vec(),
    ] {
        tx.send(&Frame::new(FrameKind::Packet, &p)).await.unwrap();
    }
    // Garbage on a Noise link to a mix, and a peer that stalls in the handshake.
    let mix = doc.node(&alive(2)).unwrap();
    let mut g = TcpStream::connect(&mix.address).await.unwrap();
    g.write_all(&[0x55; 300]).await.unwrap();
    let mut stall = TcpStream::connect(&mix.address).await.unwrap();
    stall.write_all(&[1; 10]).await.unwrap();
    assert!(wait_counter(&net, "dropped_replay", before[0] + 1).await > before[0]);
    assert!(wait_counter(&net, "dropped_tagged", before[1] + 1).await > before[1]);
    assert!(wait_counter(&net, "dropped_malformed", before[2] + 1).await > before[2]);
    assert!(wait_counter(&net, "dropped_bad_mac", before[3] + 1).await > before[3]);
    assert!(wait_counter(&net, "dropped_unknown_hop", before[4] + 1).await > before[4]);
    assert!(wait_counter(&net, "links_refused", before[5] + 2).await >= before[5] + 2);

    // Traffic kept flowing: one more message after all that.
    let last = vec![message(700, 100)];
    let handles = queue_all(&b, &ca, &last).await;
    let (got, ()) = tokio::join!(collect(&mut c, 1), all_delivered(handles));
    check_exactly(&got, &last);

    let stats: Vec<_> = [
        "stored",
        "acks_sent",
        "relayed",
        "loops_received",
        "dropped_replay",
        "dropped_tagged",
        "dropped_malformed",
        "dropped_bad_mac",
        "dropped_unknown_hop",
        "links_refused",
        "dropped_overload",
    ]
    .iter()
    .map(|n| (*n, net.total(n)))
    .collect();
    eprintln!("node counters: {stats:?}");
    eprintln!("client a: {:?}", a.stats().snapshot());
    drop(stall);
}
