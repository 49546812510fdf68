//! Unit and property tests of the packet format.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use proptest::prelude::*;
use std::collections::HashSet;

pub(crate) struct Net {
    pub keys: Vec<SecretKey>,
    pub route: Vec<RouteHop>,
}

pub(crate) fn net(n: usize) -> Net {
    let keys: Vec<SecretKey> = (0..n)
        .map(|i| SecretKey::from_bytes([i as u8 + 1; 32]))
        .collect();
    let route = keys
        .iter()
        .enumerate()
        .map(|(i, k)| RouteHop {
            id: [i as u8 + 100; 16],
            public: k.public(),
            delay_us: 1000 * i as u32,
        })
        .collect();
    Net { keys, route }
}

/// Runs a packet through all hops; returns what the last hop delivered.
fn run(net: &Net, mut bytes: Vec<u8>) -> Result<(MailboxId, Delivered), PacketError> {
    let mut seen = HashSet::new();
    for (i, k) in net.keys.iter().enumerate() {
        match process(k, &bytes, &mut |t| seen.insert(*t))? {
            Processed::Relay {
                next,
                delay_us,
                packet,
            } => {
                assert_eq!(next, net.route[i + 1].id);
                assert_eq!(delay_us, net.route[i].delay_us);
                bytes = packet.as_bytes().to_vec();
            }
            Processed::Deliver { mailbox, delivered } => {
                assert_eq!(i, net.keys.len() - 1);
                return Ok((mailbox, delivered));
            }
        }
    }
    panic!("no delivery")
}

#[test]
fn sizes() {
    assert_eq!(HOP_LEN, 69);
    assert_eq!(HEADER_SIZE, 394);
    assert_eq!(PACKET_SIZE, 2442);
    assert_eq!(SURB_SIZE, 442);
    assert_eq!(BODY_SIZE, 1574);
    assert_eq!(REPLY_BODY_SIZE, 2032);
}

#[test]
fn forward_all_lengths_with_ack() {
    let mut rng = rand::thread_rng();
    let recipient = SecretKey::from_bytes([9; 32]);
    for n in 1..=MAX_HOPS {
        let net = net(n);
        let (ack, ack_secret) = create_surb(&mut rng, &net.route, &[7; 16]).unwrap();
        let body = vec![0xab; BODY_SIZE];
        let p = create_forward(
            &mut rng,
            &net.route,
            &[5; 16],
            &recipient.public(),
            Some(&ack),
            &body,
        )
        .unwrap();
        let (mb, d) = run(&net, p.as_bytes().to_vec()).unwrap();
        assert_eq!(mb, [5; 16]);
        let got_ack = d.take_ack().unwrap().unwrap();
        assert_eq!(got_ack, ack);
        assert_eq!(&d.open_forward(&recipient).unwrap()[..], &body[..]);
        // Wrong recipient key fails.
        assert!(d.open_forward(&SecretKey::from_bytes([8; 32])).is_err());
        // The ack travels back and opens.
        let (first, ap) = got_ack.into_packet(b"ack!").unwrap();
        assert_eq!(first, net.route[0].id);
        let (mb2, d2) = run(&net, ap.as_bytes().to_vec()).unwrap();
        assert_eq!(mb2, [7; 16]);
        assert_eq!(d2.surb_id, ack_secret.id);
        assert!(d2.take_ack().unwrap().is_none());
        let body2 = ack_secret.open(&d2.payload).unwrap();
        assert_eq!(&body2[..4], b"ack!");
        assert!(body2[4..].iter().all(|b| *b == 0));
    }
}

#[test]
fn replay_is_refused() {
    let net = net(3);
    let r = SecretKey::from_bytes([9; 32]);
    let p = create_forward(
        &mut rand::thread_rng(),
        &net.route,
        &[1; 16],
        &r.public(),
        None,
        b"x",
    )
    .unwrap();
    let mut f = ReplayFilter::new(1000, 1e-6);
    assert!(process(&net.keys[0], p.as_bytes(), &mut |t| f.check_and_insert(t)).is_ok());
    assert_eq!(
        process(&net.keys[0], p.as_bytes(), &mut |t| f.check_and_insert(t)).unwrap_err(),
        PacketError::Replay
    );
}

#[test]
fn bad_input_is_refused() {
    let net = net(3);
    let r = SecretKey::from_bytes([9; 32]);
    let p = create_forward(
        &mut rand::thread_rng(),
        &net.route,
        &[1; 16],
        &r.public(),
        None,
        b"x",
    )
    .unwrap();
    let b = p.as_bytes().to_vec();
    let mut ok = |_: &[u8; TAG_LEN]| true;
    assert_eq!(
        process(&net.keys[0], &b[..100], &mut ok).unwrap_err(),
        PacketError::WrongLength(100)
    );
    let mut long = b.clone();
    long.push(0);
    assert!(matches!(
        process(&net.keys[0], &long, &mut ok),
        Err(PacketError::WrongLength(_))
    ));
    let mut v = b.clone();
    v[0] = 2;
    assert_eq!(
        process(&net.keys[0], &v, &mut ok).unwrap_err(),
        PacketError::WrongVersion(2)
    );
    for pos in [40, 60, HEADER_SIZE - 1] {
        let mut m = b.clone();
        m[pos] ^= 1;
        assert_eq!(
            process(&net.keys[0], &m, &mut ok).unwrap_err(),
            PacketError::BadMac
        );
    }
    // Wrong node key.
    assert_eq!(
        process(&net.keys[1], &b, &mut ok).unwrap_err(),
        PacketError::BadMac
    );
    // Low-order alpha.
    let mut z = b.clone();
    z[1..33].fill(0);
    assert_eq!(
        process(&net.keys[0], &z, &mut ok).unwrap_err(),
        PacketError::BadKey
    );
}

#[test]
fn tagged_payload_breaks_the_packet() {
    let net = net(5);
    let mut rng = rand::thread_rng();
    let r = SecretKey::from_bytes([9; 32]);
    let (ack, _) = create_surb(&mut rng, &net.route, &[7; 16]).unwrap();
    let p = create_forward(
        &mut rng,
        &net.route,
        &[5; 16],
        &r.public(),
        Some(&ack),
        b"hello",
    )
    .unwrap();
    let mut b = p.as_bytes().to_vec();
    b[HEADER_SIZE + 500] ^= 0x01;
    let (_, d) = run(&net, b).unwrap();
    assert_eq!(d.take_ack().unwrap_err(), PacketError::BadPayload);
    assert_eq!(d.open_forward(&r).unwrap_err(), PacketError::BadPayload);
}

#[test]
fn tagged_reply_fails_to_open() {
    let net = net(4);
    let mut rng = rand::thread_rng();
    let (surb, secret) = create_surb(&mut rng, &net.route, &[7; 16]).unwrap();
    let (_, p) = surb.into_packet(b"reply").unwrap();
    let mut b = p.as_bytes().to_vec();
    b[PACKET_SIZE - 1] ^= 0x80;
    let (_, d) = run(&net, b).unwrap();
    assert_eq!(
        secret.open(&d.payload).unwrap_err(),
        PacketError::BadPayload
    );
}

#[test]
fn too_long_routes_and_bodies() {
    let net6 = net(6);
    let r = SecretKey::from_bytes([9; 32]);
    let mut rng = rand::thread_rng();
    assert_eq!(
        create_forward(&mut rng, &net6.route, &[1; 16], &r.public(), None, b"").unwrap_err(),
        PacketError::BadRoute(6)
    );
    assert!(create_forward(&mut rng, &[], &[1; 16], &r.public(), None, b"").is_err());
    let net3 = net(3);
    assert_eq!(
        create_forward(
            &mut rng,
            &net3.route,
            &[1; 16],
            &r.public(),
            None,
            &[0; BODY_SIZE + 1]
        )
        .unwrap_err(),
        PacketError::BodyTooLong(BODY_SIZE + 1)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn process_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..PACKET_SIZE + 10)) {
        let k = SecretKey::from_bytes([1; 32]);
        let _ = process(&k, &bytes, &mut |_| true);
    }

    #[test]
    fn process_full_size_garbage(mut bytes in proptest::collection::vec(any::<u8>(), PACKET_SIZE..=PACKET_SIZE)) {
        bytes[0] = VERSION;
        let k = SecretKey::from_bytes([1; 32]);
        let r = process(&k, &bytes, &mut |_| true);
        prop_assert!(matches!(r, Err(PacketError::BadMac) | Err(PacketError::BadKey)));
    }

    #[test]
    fn routing_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        if let Ok(c) = RoutingCommand::decode(&bytes) {
            prop_assert_eq!(&c.encode()[..], &bytes[..HOP_LEN]);
        }
    }

    #[test]
    fn surb_and_delivered_parsers(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let _ = Surb::from_bytes(&bytes);
        if let Ok(d) = Delivered::from_bytes(&bytes) {
            let _ = d.take_ack();
        }
    }
}

/// Fixed randomness for one forward packet over `n` hops and its `m`-hop reply block.
fn fixed_randomness(n: usize, m: usize, salt: u8) -> (ForwardSecrets, SurbRandomness) {
    let key = |i: usize| SecretKey::from_bytes([salt ^ (i as u8 * 7 + 3); 32]);
    let fwd = ForwardSecrets {
        hops: (0..n).map(key).collect(),
        surb_id: [salt; 16],
    };
    let ack = SurbRandomness {
        eph: (10..10 + m).map(key).collect(),
        id: [salt ^ 0x55; 16],
        seed: [salt ^ 0xaa; 32],
    };
    (fwd, ack)
}

#[test]
fn builder_writes_the_same_bytes_as_the_ladder() {
    let builder = PacketBuilder::new(3);
    let recipient = SecretKey::from_bytes([77; 32]);
    for (n, m) in [(1, 1), (4, 4), (5, 5), (5, 3)] {
        let fwd_net = net(n);
        let back_net = net(m);
        let (fwd, ack) = fixed_randomness(n, m, n as u8 * 16 + m as u8);
        let (surb, secret) =
            create_surb_with(&back_net.route, &[5; 16], &ack.eph, ack.id, ack.seed).unwrap();
        let want = create_forward_with(
            &fwd_net.route,
            &[6; 16],
            &recipient.public(),
            Some(&surb),
            b"same bytes",
            &fwd,
        )
        .unwrap();
        let back = AckRoute {
            route: &back_net.route,
            mailbox: &[5; 16],
        };
        let (got, got_secret) = builder
            .forward_acked_with(
                &fwd_net.route,
                &[6; 16],
                &recipient.public(),
                back,
                b"same bytes",
                &fwd,
                &ack,
            )
            .unwrap();
        assert_eq!(got, want, "{n} hops with a {m}-hop SURB-ACK");
        assert_eq!(got_secret.id, secret.id);
        // The packet still travels: every hop opens it, the recipient reads it, and the
        // acknowledgement it carries comes back to the sender.
        let (_, delivered) = run(&fwd_net, got.as_bytes().to_vec()).unwrap();
        assert_eq!(
            &delivered.open_forward(&recipient).unwrap()[..10],
            b"same bytes"
        );
        let (first, reply) = delivered
            .take_ack()
            .unwrap()
            .unwrap()
            .into_packet(b"ack")
            .unwrap();
        assert_eq!(first, back_net.route[0].id);
        let (_, back_delivered) = run(&back_net, reply.as_bytes().to_vec()).unwrap();
        assert_eq!(
            &got_secret.open(&back_delivered.payload).unwrap()[..3],
            b"ack"
        );
    }
}

#[test]
fn builder_surb_and_forward_work_end_to_end() {
    let builder = PacketBuilder::default();
    let n = net(4);
    let recipient = SecretKey::random();
    let mut rng = rand::thread_rng();
    let p = builder
        .forward(
            &mut rng,
            &n.route,
            &[1; 16],
            &recipient.public(),
            None,
            b"hi",
        )
        .unwrap();
    let (_, d) = run(&n, p.as_bytes().to_vec()).unwrap();
    assert_eq!(&d.open_forward(&recipient).unwrap()[..2], b"hi");
    let (surb, secret) = builder.surb(&mut rng, &n.route, &[2; 16]).unwrap();
    let (_, reply) = surb.into_packet(b"back").unwrap();
    let (mailbox, d) = run(&n, reply.as_bytes().to_vec()).unwrap();
    assert_eq!(mailbox, [2; 16]);
    assert_eq!(&secret.open(&d.payload).unwrap()[..4], b"back");
    // Four node keys and nothing else were tabulated (the recipient's too).
    assert_eq!(builder.tables().len(), 5);
}

#[test]
fn builder_refuses_a_bad_hop_key() {
    let builder = PacketBuilder::default();
    let mut n = net(3);
    n.route[1].public = [0; 32];
    let mut rng = rand::thread_rng();
    let r = builder.forward(
        &mut rng,
        &n.route,
        &[1; 16],
        &SecretKey::random().public(),
        None,
        b"",
    );
    assert_eq!(r.unwrap_err(), PacketError::BadKey);
}
