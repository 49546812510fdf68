//! Fake nodes for load and flood tests: keys registered with a real directory so a real mix
//! node accepts their links (senders) and forwards to them (a sink), and packets whose
//! arrival at the sink can be told apart by the ephemeral key `α₁` the mix exposes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use rand::{Rng, SeedableRng};
use tokio::net::{TcpListener, TcpStream};
use transport::directory::{
    fetch_document, node_id, register, DirectoryConfig, DirectoryServer, EpochKey, Registration,
    Role, SignedRegistration, TrafficParams,
};
use transport::link::{accept, connect, FrameKind, LinkConfig, LinkKeypair, LinkSender};
use transport::node::{Node, NodeConfig, NodeStats};
use transport::packet::{create_forward_with, ForwardSecrets, Packet, RouteHop, SecretKey};
use transport::util::now_ms;

/// Epoch length used by these networks.
pub const EPOCH_MS: u64 = 3_600_000;

/// Starts a directory on loopback; returns its address and authority key.
pub async fn start_directory(params: TrafficParams) -> (SocketAddr, [u8; 32]) {
    let dir = DirectoryServer::bind(DirectoryConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        authority_seed: [9; 32],
        params,
        epoch_ms: EPOCH_MS,
        grace_ms: EPOCH_MS / 6,
        allowed: None,
        peers: vec![],
        threshold: 1,
    })
    .await
    .unwrap();
    let a = (dir.local_addr().unwrap(), dir.authority());
    tokio::spawn(dir.run());
    a
}

/// A fake node: identity, link and mix keys.
pub struct Fake {
    pub identity: SigningKey,
    pub link: LinkKeypair,
    pub mix: SecretKey,
}

impl Fake {
    pub fn new(i: u8) -> Self {
        Fake {
            identity: SigningKey::from_bytes(&[i; 32]),
            link: LinkKeypair::random(),
            mix: SecretKey::random(),
        }
    }

    pub fn id(&self) -> [u8; 16] {
        node_id(&self.identity.verifying_key().to_bytes())
    }

    /// This node as a route hop (delay 0).
    pub fn hop(&self) -> RouteHop {
        RouteHop {
            id: self.id(),
            public: self.mix.public(),
            delay_us: 0,
        }
    }

    pub async fn register(&self, dir: SocketAddr, role: Role, address: String) {
        let epoch = now_ms() / EPOCH_MS;
        let key = self.mix.public();
        let reg = Registration {
            identity: self.identity.verifying_key().to_bytes(),
            role,
            address,
            link_key: self.link.public,
            mix_keys: vec![
                EpochKey { epoch, key },
                EpochKey {
                    epoch: epoch + 1,
                    key,
                },
            ],
        };
        register(
            dir,
            &SignedRegistration::sign(&reg, &self.identity).unwrap(),
        )
        .await
        .unwrap();
    }
}

/// Waits until the directory lists node `id`; returns it as a route hop and its link key.
pub async fn listed(dir: SocketAddr, authority: [u8; 32], id: [u8; 16]) -> (RouteHop, [u8; 32]) {
    loop {
        let d = fetch_document(dir, None).await.unwrap();
        let d = d.verify(&[authority], 1, now_ms()).unwrap();
        if let Some(n) = d.node(&id) {
            let hop = RouteHop {
                id,
                public: n.mix_key,
                delay_us: 0,
            };
            return (hop, n.link_key);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One prepared packet: its bytes, the α₁ the sink will see, the chosen delay.
pub struct Prepared {
    pub packet: Packet,
    pub alpha1: [u8; 32],
    pub delay_us: u32,
}

/// Builds `n` two-hop packets (`mix` with an Exp(μ) delay, then `sink`) on two threads.
pub fn prepare(n: usize, mix: &RouteHop, sink: &RouteHop, mu_ms: f64, seed: u64) -> Vec<Prepared> {
    let threads = 2;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 16 + t as u64);
                    let recipient = SecretKey::random().public();
                    (0..n.div_ceil(threads))
                        .map(|_| {
                            let delay_us = if mu_ms > 0.0 {
                                let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
                                (-u.ln() * mu_ms * 1000.0).min(60e6) as u32
                            } else {
                                0
                            };
                            let route = [
                                RouteHop {
                                    delay_us,
                                    ..mix.clone()
                                },
                                sink.clone(),
                            ];
                            let secrets = ForwardSecrets::random(&mut rng, 2);
                            let alpha1 = secrets.hops[1].public();
                            let packet = create_forward_with(
                                &route,
                                &[0; 16],
                                &recipient,
                                None,
                                &[],
                                &secrets,
                            )
                            .unwrap();
                            Prepared {
                                packet,
                                alpha1,
                                delay_us,
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<Prepared> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.truncate(n);
        all
    })
}

/// What a sink saw.
#[derive(Default)]
pub struct SinkLog {
    /// α₁ → packet index, for the packets being measured.
    pub index: HashMap<[u8; 32], usize>,
    /// Arrival time per packet index (ns since the base instant; 0 = not seen).
    pub arrivals: Vec<u64>,
    /// Packets received, measured or not.
    pub received: u64,
}

impl SinkLog {
    /// Starts measuring `packets` (forgets the previous set).
    pub fn expect(&mut self, packets: &[Prepared]) {
        self.index = packets
            .iter()
            .enumerate()
            .map(|(i, p)| (p.alpha1, i))
            .collect();
        self.arrivals = vec![0; packets.len()];
        self.received = 0;
    }

    /// How many of the measured packets arrived.
    pub fn arrived(&self) -> usize {
        self.arrivals.iter().filter(|&&a| a != 0).count()
    }
}

/// Accepts links on `listener` and logs every packet frame.
pub async fn run_sink(
    listener: TcpListener,
    key: LinkKeypair,
    log: Arc<Mutex<SinkLog>>,
    base: Instant,
) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let key = key.clone();
        let log = log.clone();
        tokio::spawn(async move {
            let cfg = LinkConfig::default();
            let Ok((_, _tx, mut rx)) = accept(sock, &key, |_| true, &cfg).await else {
                return;
            };
            while let Ok(f) = rx.recv().await {
                if f.kind != FrameKind::Packet {
                    continue;
                }
                let t = (base.elapsed().as_nanos() as u64).max(1);
                let mut a = [0u8; 32];
                a.copy_from_slice(&f.body[1..33]);
                let mut l = log.lock().unwrap();
                l.received += 1;
                if let Some(&i) = l.index.get(&a) {
                    l.arrivals[i] = t;
                }
            }
        });
    }
}

/// Starts a sink listener for `fake`, registered as a layer-2 mix.
pub async fn start_sink(fake: &Fake, dir: SocketAddr, log: Arc<Mutex<SinkLog>>, base: Instant) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(run_sink(l, fake.link.clone(), log, base));
    fake.register(dir, Role::Mix { layer: 2 }, addr).await;
}

/// Opens a link from `me` to the node at `addr`, retrying until the node's document lists us.
pub async fn open_link(addr: SocketAddr, me: &LinkKeypair, node_link: &[u8; 32]) -> LinkSender {
    for _ in 0..200 {
        if let Ok(s) = TcpStream::connect(addr).await {
            if let Ok((tx, rx)) = connect(s, me, node_link, &LinkConfig::default()).await {
                // The node never writes on this link; keep the read half open.
                std::mem::forget(rx);
                return tx;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("node never accepted the link");
}

/// CPU time of one thread, read from any thread.
pub struct ThreadClock(libc::clockid_t);

impl ThreadClock {
    /// The calling thread's clock.
    pub fn current() -> Self {
        let mut id: libc::clockid_t = 0;
        // SAFETY: pthread_self is valid for the calling thread; id is a valid out pointer.
        unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
        ThreadClock(id)
    }

    /// CPU seconds used so far.
    pub fn seconds(&self) -> f64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid out pointer.
        unsafe { libc::clock_gettime(self.0, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    }
}

/// Runs a node alone on a new thread named `mixnode` with a current-thread runtime, so all
/// its work (links, worker, delays, polls) is on one core. Returns its id, address, counters
/// and the thread's CPU clock.
pub fn node_thread(cfg: NodeConfig) -> ([u8; 16], SocketAddr, Arc<NodeStats>, ThreadClock) {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawn = std::thread::Builder::new().name("mixnode".into());
    let _ = spawn.spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let node = Node::bind(cfg, None).await.unwrap();
            tx.send((
                node.id(),
                node.local_addr().unwrap(),
                node.stats(),
                ThreadClock::current(),
            ))
            .unwrap();
            node.run().await.unwrap();
        });
    });
    rx.recv().unwrap()
}
