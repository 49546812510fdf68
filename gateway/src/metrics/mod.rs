//! Prometheus metrics and the operator's status page, served on their own listener
//! (`--metrics ADDR` / `metrics_listen`), never on the client-server API's.
//!
//! One [`Metrics`] per process: the CS API families ([`http`]) are updated by a middleware;
//! everything else ([`sources`]) is read at scrape time from counters the roles already keep.
//! Labels never carry user ids, room ids or names, message contents or peer identities: the
//! only label values are fixed words, endpoint groups taken from route templates, and the
//! index of a gateway or node inside this process.

pub mod encode;
pub mod history;
pub mod http;
pub mod server;
pub mod sources;
pub mod status;

use std::sync::Arc;

use prometheus_client::registry::Registry;

pub use server::{serve, MetricsError, MetricsServer};
pub use sources::{ClientProbe, DirectorySource, GatewaySource, NodeSource, Sources};

/// The metrics of one process (one registry, every role it runs).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sources: Arc<Sources>,
    http: http::HttpMetrics,
}

impl Metrics {
    /// An empty set: the CS API families and a collector with no sources yet.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let http = http::HttpMetrics::register(&mut registry);
        let sources = Arc::new(Sources::default());
        registry.register_collector(Box::new(sources.clone()));
        Arc::new(Self {
            registry,
            sources,
            http,
        })
    }

    /// Where roles add what they count.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// The same sources, shared (for the status page's sampler).
    pub fn shared_sources(&self) -> Arc<Sources> {
        self.sources.clone()
    }

    /// The middleware state of the gateway labelled `gateway`.
    pub fn tracker(&self, gateway: &str) -> Arc<http::Tracker> {
        http::Tracker::new(self.http.clone(), gateway.to_owned())
    }

    /// Everything in the Prometheus text format (version 0.0.4). Reads storage (account, room
    /// and event counts): call it on a blocking thread.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!("metrics: encoding failed: {e}");
        }
        out
    }
}
