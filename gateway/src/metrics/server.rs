//! The metrics listener: `GET /metrics` (Prometheus text) and `GET /` (the status page).

use std::{net::SocketAddr, sync::Arc};

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use tokio::task::JoinHandle;

use super::{history::History, Metrics};

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

/// A running metrics listener; stops (with its sampler) when dropped.
pub struct MetricsServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
    sampler: JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
        self.sampler.abort();
    }
}

#[derive(Clone)]
struct Served {
    metrics: Arc<Metrics>,
    history: Arc<History>,
}

async fn status(State(s): State<Served>) -> axum::response::Response {
    // Node and directory probes take short locks; off the async workers all the same.
    let page = tokio::task::spawn_blocking(move || {
        super::status::render(s.metrics.sources(), &s.history.samples())
    })
    .await;
    match page {
        Ok(html) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
                (header::CACHE_CONTROL, "no-store"),
            ],
            html,
        )
            .into_response(),
        Err(_) => http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn scrape(State(s): State<Served>) -> axum::response::Response {
    let m = s.metrics;
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
    let history = Arc::new(History::default());
    let sampler = history.spawn_sampler(metrics.shared_sources());
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/", get(status))
        .with_state(Served { metrics, history });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("metrics listener stopped: {e}");
        }
    });
    tracing::info!(%addr, "metrics listening (GET /metrics, status page at /)");
    Ok(MetricsServer {
        addr,
        task,
        sampler,
    })
}
