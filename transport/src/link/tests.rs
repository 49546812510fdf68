#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

fn cfg() -> LinkConfig {
    LinkConfig {
        handshake_timeout: Duration::from_millis(500),
        frame_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(5),
        rekey_frames: 7,
        rekey_interval: Duration::from_secs(60),
    }
}

async fn listener() -> (TcpListener, std::net::SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

#[tokio::test]
async fn frames_roundtrip_with_rekey() {
    let (l, addr) = listener().await;
    let server = LinkKeypair::random();
    let client = LinkKeypair::random();
    let cpub = client.public;
    let s2 = server.clone();
    let h = tokio::spawn(async move {
        let (sock, _) = l.accept().await.unwrap();
        let (peer, _tx, mut rx) = accept(sock, &s2, |k| *k == cpub, &cfg()).await.unwrap();
        assert_eq!(peer, cpub);
        let mut got = vec![];
        for _ in 0..50 {
            got.push(rx.recv().await.unwrap());
        }
        got
    });
    let sock = TcpStream::connect(addr).await.unwrap();
    let (mut tx, _rx) = connect(sock, &client, &server.public, &cfg())
        .await
        .unwrap();
    for i in 0..50u8 {
        tx.send(&Frame::new(FrameKind::Packet, &[i; 10]))
            .await
            .unwrap();
    }
    let got = h.await.unwrap();
    for (i, f) in got.iter().enumerate() {
        assert_eq!(f.kind, FrameKind::Packet);
        assert_eq!(f.body[0], i as u8);
    }
}

#[tokio::test]
async fn garbage_and_wrong_keys_are_refused() {
    let (l, addr) = listener().await;
    let server = LinkKeypair::random();
    let good = LinkKeypair::random();
    let gpub = good.public;
    let s2 = server.clone();
    let h = tokio::spawn(async move {
        let mut results = vec![];
        for _ in 0..4 {
            let (sock, _) = l.accept().await.unwrap();
            results.push(
                accept(sock, &s2, |k| *k == gpub, &cfg())
                    .await
                    .map(|(p, _, _)| p),
            );
        }
        results
    });
    // 1. garbage handshake bytes
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0x42; 200]).await.unwrap();
    // 2. unauthorised key
    let sock = TcpStream::connect(addr).await.unwrap();
    let stranger = LinkKeypair::random();
    assert!(connect(sock, &stranger, &server.public, &cfg())
        .await
        .is_err());
    // 3. a peer that stalls in the handshake
    let _stall = TcpStream::connect(addr).await.unwrap();
    // 4. the good peer still gets through (this test server is sequential, so it waits for
    // the stalled handshake to time out first; real nodes serve each connection in its own task)
    let sock = TcpStream::connect(addr).await.unwrap();
    let patient = LinkConfig {
        handshake_timeout: Duration::from_secs(5),
        ..cfg()
    };
    connect(sock, &good, &server.public, &patient)
        .await
        .unwrap();
    let r = h.await.unwrap();
    assert!(matches!(r[0], Err(LinkError::Noise(_))));
    assert!(matches!(r[1], Err(LinkError::Unauthorized)));
    assert!(matches!(r[2], Err(LinkError::Timeout(_))));
    assert_eq!(*r[3].as_ref().unwrap(), gpub);
}

#[tokio::test]
async fn wrong_server_key_fails() {
    let (l, addr) = listener().await;
    let server = LinkKeypair::random();
    let s2 = server.clone();
    let h = tokio::spawn(async move {
        let (sock, _) = l.accept().await.unwrap();
        accept(sock, &s2, |_| true, &cfg()).await.map(|(p, _, _)| p)
    });
    let sock = TcpStream::connect(addr).await.unwrap();
    let other = LinkKeypair::random();
    assert!(connect(sock, &LinkKeypair::random(), &other.public, &cfg())
        .await
        .is_err());
    assert!(h.await.unwrap().is_err());
}

/// After a good handshake: a stall mid-frame times out, and a garbage frame is refused.
#[tokio::test]
async fn stall_and_garbage_after_handshake() {
    for garbage in [false, true] {
        let (l, addr) = listener().await;
        let server = LinkKeypair::random();
        let s2 = server.clone();
        let h = tokio::spawn(async move {
            let (sock, _) = l.accept().await.unwrap();
            let (_, _tx, mut rx) = accept(sock, &s2, |_| true, &cfg()).await.unwrap();
            let first = rx.recv().await.unwrap();
            assert_eq!(first.kind, FrameKind::Poll);
            rx.recv().await
        });
        let sock = TcpStream::connect(addr).await.unwrap();
        let (mut tx, _rx) = connect(sock, &LinkKeypair::random(), &server.public, &cfg())
            .await
            .unwrap();
        tx.send(&Frame::new(FrameKind::Poll, &[])).await.unwrap();
        // Reach into the socket: write raw bytes the link layer would never produce.
        let raw = if garbage {
            vec![7u8; FRAME_WIRE]
        } else {
            vec![7u8; 100]
        };
        tx.raw_write_for_test(&raw).await;
        let r = tokio::time::timeout(Duration::from_secs(3), h)
            .await
            .unwrap()
            .unwrap();
        if garbage {
            assert!(matches!(r, Err(LinkError::Noise(_))), "{r:?}");
        } else {
            assert!(matches!(r, Err(LinkError::Timeout(_))), "{r:?}");
        }
    }
}
