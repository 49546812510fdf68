//! Connection limits of the client-server HTTP listener: a header-read timeout and a cap on
//! open connections per client address, so clients that trickle their headers (one byte a
//! second) or open connections by the thousand cannot tie the gateway up.
//!
//! [`serve`] replaces `axum::serve`: it accepts connections itself, refuses (closes) a
//! connection from an address that already has `max_connections_per_ip` open, and serves each
//! with hyper's `header_read_timeout`, which closes a connection whose request headers are not
//! complete in time. The peer address reaches handlers as axum's `ConnectInfo`, as before.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{extract::ConnectInfo, Router};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::net::TcpListener;

use crate::config::GatewayConfig;

/// The limits [`serve`] applies.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// Most connections open at once from one address.
    pub max_connections_per_ip: usize,
}

impl HttpLimits {
    /// The limits configured (`header_read_timeout_secs`, `max_connections_per_ip`).
    pub fn from_config(config: &GatewayConfig) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
            max_connections_per_ip: config.max_connections_per_ip,
        }
    }
}

type Counts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One open connection counted against its address; released when dropped.
struct Slot {
    counts: Counts,
    ip: IpAddr,
}

impl Slot {
    fn take(counts: &Counts, ip: IpAddr, max: usize) -> Option<Self> {
        let mut map = counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Self {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until the task is dropped, with `limits`.
pub async fn serve(listener: TcpListener, app: Router, limits: HttpLimits) -> std::io::Result<()> {
    let counts: Counts = Arc::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = Slot::take(&counts, peer.ip(), limits.max_connections_per_ip) else {
            tracing::debug!(peer = %peer.ip(), "too many connections from one address; closed");
            drop(stream);
            continue;
        };
        let service = tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            },
        );
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let io = TokioIo::new(stream);
            if let Err(e) = builder
                .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
                .await
            {
                tracing::debug!(peer = %peer, error = %e, "connection ended");
            }
        });
    }
}
