//! Packet benchmarks: per-hop processing and creation, against Nym's `sphinx-packet` 0.8 and
//! the floor of one X25519 operation.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use sphinx_packet::constants::{
    DESTINATION_ADDRESS_LENGTH, IDENTIFIER_LENGTH, NODE_ADDRESS_LENGTH,
};
use sphinx_packet::header::delays;
use sphinx_packet::packet::builder::SphinxPacketBuilder;
use sphinx_packet::route::{Destination, DestinationAddressBytes, Node, NodeAddressBytes};
use sphinx_packet::SphinxPacket;
use std::hint::black_box;
use std::time::Duration;
use transport::packet::*;

/// A client's real route: three mix layers and the recipient's provider (the sender's own
/// provider relays submitted packets without a layer). Nym's real routes are also 4 hops.
const HOPS: usize = 4;
const NYM_PAYLOAD: usize = 2048 + 17;

fn our_route(hops: usize) -> (Vec<SecretKey>, Vec<RouteHop>) {
    let keys: Vec<SecretKey> = (0..hops).map(|_| SecretKey::random()).collect();
    let route = keys
        .iter()
        .enumerate()
        .map(|(i, k)| RouteHop {
            id: [i as u8; 16],
            public: k.public(),
            delay_us: 10_000,
        })
        .collect();
    (keys, route)
}

fn nym_route(
    hops: usize,
) -> (
    x25519_v3::StaticSecret,
    Vec<Node>,
    Destination,
    Vec<delays::Delay>,
) {
    let mut first = None;
    let route: Vec<Node> = (0..hops)
        .map(|i| {
            let sk = x25519_v3::StaticSecret::random();
            let pk = x25519_v3::PublicKey::from(&sk);
            if i == 0 {
                first = Some(sk);
            }
            Node::new(
                NodeAddressBytes::from_bytes([i as u8; NODE_ADDRESS_LENGTH]),
                pk,
            )
        })
        .collect();
    let d = delays::generate_from_average_duration(route.len(), Duration::from_millis(10));
    let dest = Destination::new(
        DestinationAddressBytes::from_bytes([3u8; DESTINATION_ADDRESS_LENGTH]),
        [4u8; IDENTIFIER_LENGTH],
    );
    (first.expect("first"), route, dest, d)
}

fn nym_packet(route: &[Node], dest: &Destination, d: &[delays::Delay]) -> SphinxPacket {
    SphinxPacketBuilder::new()
        .with_payload_size(NYM_PAYLOAD)
        .build_packet(vec![13u8; 1000], route, dest, d)
        .unwrap()
}

fn hop(c: &mut Criterion) {
    let mut g = c.benchmark_group("hop");
    let (keys, route) = our_route(HOPS);
    let recipient = SecretKey::random();
    let mut rng = rand::thread_rng();
    let p = create_forward(
        &mut rng,
        &route,
        &[9; 16],
        &recipient.public(),
        None,
        &[13u8; 1000],
    )
    .unwrap();
    let bytes = p.as_bytes().to_vec();
    g.bench_function("mixgate", |b| {
        b.iter(|| process(&keys[0], black_box(&bytes), &mut |_| true).unwrap())
    });
    let (nsk, nroute, ndest, nd) = nym_route(HOPS);
    let np = nym_packet(&nroute, &ndest, &nd).to_bytes();
    g.bench_function("nym_sphinx_packet", |b| {
        b.iter(|| {
            SphinxPacket::from_bytes(black_box(&np))
                .unwrap()
                .process(&nsk)
                .unwrap()
        })
    });
    let a = SecretKey::random();
    let peer = SecretKey::random().public();
    g.bench_function("x25519_floor", |b| {
        b.iter(|| a.dh(black_box(&peer)).unwrap())
    });
    let da = x25519_dalek::StaticSecret::random_from_rng(rand::thread_rng());
    let dp = x25519_dalek::PublicKey::from(peer);
    g.bench_function("x25519_dalek", |b| {
        b.iter(|| da.diffie_hellman(black_box(&dp)))
    });
    g.finish();
}

/// Builds a Nym packet and, as Nym clients do for SURB-ACKs, a second whole packet for the
/// acknowledgement.
fn nym_packet_with_ack(
    fwd: (&[Node], &Destination, &[delays::Delay]),
    back: (&[Node], &Destination, &[delays::Delay]),
) -> (SphinxPacket, SphinxPacket) {
    let ack = SphinxPacketBuilder::new()
        .with_payload_size(NYM_PAYLOAD)
        .build_packet(vec![1u8; 64], back.0, back.1, back.2)
        .unwrap();
    (nym_packet(fwd.0, fwd.1, fwd.2), ack)
}

fn create(c: &mut Criterion) {
    let mut g = c.benchmark_group("create");
    let (_, route) = our_route(HOPS);
    let (_, route5) = our_route(5);
    let (_, back4) = our_route(HOPS);
    let (_, back5) = our_route(5);
    let recipient = SecretKey::random().public();
    let mut rng = rand::thread_rng();
    let builder = PacketBuilder::default();
    let body = [13u8; 1000];
    // The packet every send and every loop builds: 5 hops from the sender's provider to the
    // recipient, i.e. 5 key layers (3 mixes, the recipient's provider, the recipient's
    // end-to-end layer), carrying its SURB-ACK over 3 mixes + the sender's provider.
    g.bench_function("mixgate", |b| {
        b.iter(|| {
            let back = AckRoute {
                route: &back4,
                mailbox: &[8; 16],
            };
            builder
                .forward_acked(
                    &mut rng,
                    &route,
                    &[9; 16],
                    &recipient,
                    back,
                    black_box(&body),
                )
                .unwrap()
        })
    });
    // The same with a Montgomery ladder per agreement (no key tables): what the tables gain.
    g.bench_function("mixgate_ladder", |b| {
        b.iter(|| {
            let (ack, _s) = create_surb(&mut rng, &back4, &[8; 16]).unwrap();
            create_forward(
                &mut rng,
                &route,
                &[9; 16],
                &recipient,
                Some(&ack),
                black_box(&body),
            )
            .unwrap()
        })
    });
    // The most the format carries: 5 onion hops plus the end-to-end layer (6 key layers),
    // with a 5-hop SURB-ACK. No route the client builds is this long.
    g.bench_function("mixgate_5_onion_hops", |b| {
        b.iter(|| {
            let back = AckRoute {
                route: &back5,
                mailbox: &[8; 16],
            };
            builder
                .forward_acked(
                    &mut rng,
                    &route5,
                    &[9; 16],
                    &recipient,
                    back,
                    black_box(&body),
                )
                .unwrap()
        })
    });
    g.bench_function("mixgate_no_ack", |b| {
        b.iter(|| {
            builder
                .forward(
                    &mut rng,
                    &route,
                    &[9; 16],
                    &recipient,
                    None,
                    black_box(&body),
                )
                .unwrap()
        })
    });
    // Nym: a 5-hop packet (5 key layers) and, as Nym clients build SURB-ACKs, a whole 4-hop
    // packet for the acknowledgement.
    let (_, nroute5, ndest5, nd5) = nym_route(5);
    let (_, nback4, nbdest4, nbd4) = nym_route(HOPS);
    g.bench_function("nym_sphinx_packet", |b| {
        b.iter(|| {
            nym_packet_with_ack(
                (black_box(&nroute5), &ndest5, &nd5),
                (&nback4, &nbdest4, &nbd4),
            )
        })
    });
    g.bench_function("nym_sphinx_packet_no_ack", |b| {
        b.iter(|| nym_packet(black_box(&nroute5), &ndest5, &nd5))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = hop, create
}
criterion_main!(benches);
