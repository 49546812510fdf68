//! The metrics listener: `GET /metrics` (Prometheus text).

use std::{net::SocketAddr, sync::Arc};

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use tokio::task::JoinHandle;

use super::Metrics;

/// The metrics listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address cannot be bound.
    #[error("{origin}: key `metrics_listen`: cannot listen on {addr}: {source}")]
    Bind {
        /// Where the address came from (a config file, or `--metrics`).
        origin: String,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running metrics listener; stops when dropped.
pub struct MetricsServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn scrape(State(m): State<Arc<Metrics>>) -> axum::response::Response {
    // Counting accounts, rooms and events walks storage: off the async workers, so a scrape
    // never holds up the gateway.
    match tokio::task::spawn_blocking(move || m.render()).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Binds `addr` and serves `metrics` there. `origin` names where the address came from, for
/// the error (the config file, or `--metrics`).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    origin: &str,
) -> Result<MetricsServer, MetricsError> {
    let bind_err = |source| MetricsError::Bind {
        origin: origin.to_owned(),
        addr,
        source,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("metrics listener stopped: {e}");
        }
    });
    tracing::info!(%addr, "metrics listening (GET /metrics)");
    Ok(MetricsServer { addr, task })
}
