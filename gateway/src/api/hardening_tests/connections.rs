//! Flaw 9: slow clients and connection floods are cut off by the HTTP listener.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::config::{GatewayConfig, RegistrationMode};

/// Whether the server closed `stream` within `wait` (EOF or reset on read).
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // A response (e.g. 408) before closing is fine: keep reading until EOF.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn slow_headers_and_connection_floods_are_cut_off() {
    let config = GatewayConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        memory_only: true,
        server_name: Some("example.org".into()),
        registration: RegistrationMode::Open,
        header_read_timeout_secs: 1,
        max_connections_per_ip: 2,
        ..GatewayConfig::default()
    };
    let running = crate::serve::start(config).await.expect("start");
    let addr = running.addr;

    // Headers trickled in never complete: the connection is closed after the timeout.
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    assert!(
        closed_within(&mut slow, Duration::from_secs(5)).await,
        "slow client not cut off"
    );

    // Two idle connections are allowed; a third from the same address is closed at once.
    let mut a = TcpStream::connect(addr).await.expect("connect");
    let _b = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(addr).await.expect("connect");
    assert!(closed_within(&mut third, Duration::from_millis(500)).await);
    // A normal request on an allowed connection is answered.
    a.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), a.read_to_end(&mut response))
        .await
        .expect("answered")
        .expect("read");
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    running.abort();
}
