//! Per-operation CPU time (thread CPU clock, so other processes on a loaded machine do not
//! inflate it), printed for the README. Ignored by default; run in release:
//!
//! `cargo test --release -p transport --test cpu_cost -- --ignored --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use transport::packet::*;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // clock_gettime only writes into the struct we own.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn per_op_us(n: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    (0..5)
        .map(|_| {
            let t = thread_cpu_ns();
            for _ in 0..n {
                f();
            }
            (thread_cpu_ns() - t) as f64 / f64::from(n) / 1000.0
        })
        .fold(f64::MAX, f64::min)
}

#[test]
#[ignore]
fn cpu_cost() {
    let keys: Vec<SecretKey> = (0..5).map(|_| SecretKey::random()).collect();
    let route: Vec<RouteHop> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| RouteHop {
            id: [i as u8; 16],
            public: k.public(),
            delay_us: 1000,
        })
        .collect();
    let recipient = SecretKey::random().public();
    let mut rng = rand::thread_rng();
    let p = create_forward(
        &mut rng,
        &route[..4],
        &[9; 16],
        &recipient,
        None,
        &[1; 1000],
    )
    .unwrap();
    let bytes = p.as_bytes().to_vec();
    let peer = SecretKey::random().public();
    let a = SecretKey::random();
    let x = per_op_us(2000, || {
        a.dh(&peer).unwrap();
    });
    let kg = per_op_us(2000, || {
        let _ = SecretKey::from_bytes([7; 32]);
    });
    let hop = per_op_us(2000, || {
        process(&keys[0], &bytes, &mut |_| true).unwrap();
    });
    let c4 = per_op_us(500, || {
        create_forward(
            &mut rng,
            &route[..4],
            &[9; 16],
            &recipient,
            None,
            &[1; 1000],
        )
        .unwrap();
    });
    let c5 = per_op_us(500, || {
        create_forward(&mut rng, &route, &[9; 16], &recipient, None, &[1; 1000]).unwrap();
    });
    let surb = per_op_us(500, || {
        create_surb(&mut rng, &route[..4], &[8; 16]).unwrap();
    });
    // What a client builds for every packet: the forward packet with its SURB-ACK, through
    // the builder's key tables.
    let builder = PacketBuilder::default();
    let back = AckRoute {
        route: &route[..4],
        mailbox: &[8; 16],
    };
    let acked = |fwd: &[RouteHop], back: AckRoute<'_>, rng: &mut rand::rngs::ThreadRng| {
        builder
            .forward_acked(rng, fwd, &[9; 16], &recipient, back, &[1; 1000])
            .unwrap();
    };
    let client = per_op_us(500, || acked(&route[..4], back, &mut rng));
    let back5 = AckRoute {
        route: &route,
        mailbox: &[8; 16],
    };
    let max = per_op_us(500, || acked(&route, back5, &mut rng));
    eprintln!(
        "thread CPU µs/op (best of 5): x25519 {x:.1}, keygen {kg:.1}, hop {hop:.1} ({:.2}× x25519), create 4-hop {c4:.1}, create 5-hop {c5:.1}, surb 4-hop {surb:.1}; with tables: client packet + SURB-ACK {client:.1}, 5-hop packet + 5-hop SURB-ACK {max:.1}",
        hop / x
    );
}
