//! What hybrid post-quantum links cost against classical ones: a whole Noise handshake (both
//! ends, in memory, no sockets) and one 2 459-byte frame sealed and opened, for
//! `Noise_IK_25519_AESGCM_SHA256` and `Noise_IKhfs_25519+MLKEM1024_AESGCM_SHA256`.
//!
//! `cargo bench -p transport --bench links`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;
use transport::link::{LinkKeypair, FRAME_PLAIN, FRAME_WIRE, NOISE_PARAMS, NOISE_PARAMS_PQ};

fn handshake(
    params: &str,
    a: &LinkKeypair,
    b: &LinkKeypair,
) -> (snow::TransportState, snow::TransportState) {
    let pq = params == NOISE_PARAMS_PQ;
    let mut i = transport::link::noise_builder(pq)
        .local_private_key(&a.secret)
        .unwrap()
        .remote_public_key(&b.public)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut r = transport::link::noise_builder(pq)
        .local_private_key(&b.secret)
        .unwrap()
        .build_responder()
        .unwrap();
    let mut m = [0u8; 4096];
    let mut pl = [0u8; 4096];
    let n = i.write_message(&[], &mut m).unwrap();
    r.read_message(&m[..n], &mut pl).unwrap();
    let n = r.write_message(&[], &mut m).unwrap();
    i.read_message(&m[..n], &mut pl).unwrap();
    (
        i.into_transport_mode().unwrap(),
        r.into_transport_mode().unwrap(),
    )
}

fn links(c: &mut Criterion) {
    let (a, b) = (LinkKeypair::random(), LinkKeypair::random());
    let mut g = c.benchmark_group("link");
    for (name, params) in [("classical", NOISE_PARAMS), ("hybrid_pq", NOISE_PARAMS_PQ)] {
        g.bench_function(format!("handshake/{name}"), |bn| {
            bn.iter(|| handshake(black_box(params), &a, &b))
        });
        let (mut i, mut r) = handshake(params, &a, &b);
        let plain = [7u8; FRAME_PLAIN];
        let mut wire = [0u8; FRAME_WIRE];
        let mut out = [0u8; FRAME_PLAIN];
        g.bench_function(format!("frame/{name}"), |bn| {
            bn.iter(|| {
                let n = i.write_message(black_box(&plain), &mut wire).unwrap();
                r.read_message(&wire[..n], &mut out).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    targets = links
}
criterion_main!(benches);
