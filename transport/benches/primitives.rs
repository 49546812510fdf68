//! The costs a sender's packet is made of, for the floor analysis in `transport/README.md`:
//! ephemeral key generation, one agreement by ladder and by table, the batched conversion, and
//! the symmetric parts of a layer.
//!
//! `cargo bench -p transport --bench primitives`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;
use transport::packet::primitives::*;
use transport::packet::*;

fn floors(c: &mut Criterion) {
    let mut g = c.benchmark_group("floor");
    let node = SecretKey::random();
    let e = SecretKey::random();
    let eb = e.to_bytes();
    let np = node.public();
    g.bench_function("keygen", |b| {
        b.iter(|| SecretKey::from_bytes(black_box(eb)))
    });
    g.bench_function("agree_ladder", |b| b.iter(|| e.dh(black_box(&np)).unwrap()));
    let tables = KeyTables::default();
    tables.prepare(&np).unwrap();
    g.bench_function("agree_table", |b| {
        b.iter(|| tables.agree_all(&[(&e, black_box(&np))]).unwrap())
    });
    let nine: Vec<(&SecretKey, &[u8; 32])> = (0..9).map(|_| (&e, &np)).collect();
    g.bench_function("agree_table_x9", |b| {
        b.iter(|| tables.agree_all(black_box(&nine)).unwrap())
    });
    g.bench_function("table_build", |b| {
        b.iter(|| KeyTables::new(1).prepare(black_box(&np)).unwrap())
    });
    let keys = [[1u8; 32], [2u8; 32], [3u8; 32], [4u8; 32]];
    let mut block = [7u8; PAYLOAD_SIZE];
    g.bench_function("lioness_2048", |b| {
        b.iter(|| lioness_encrypt(&keys, black_box(&mut block)))
    });
    let mut beta = [0u8; BETA_LEN + HOP_LEN];
    g.bench_function("header_stream", |b| {
        b.iter(|| xor_stream(&eb, black_box(&mut beta)))
    });
    g.bench_function("hop_keys", |b| {
        b.iter(|| HopKeys::derive(black_box(&eb), &eb, &np))
    });
    g.bench_function("header_mac", |b| {
        b.iter(|| header_mac(&eb, VERSION, &np, black_box(&beta[..BETA_LEN])))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = floors
}
criterion_main!(benches);
