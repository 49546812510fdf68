//! CS API metrics: requests by endpoint group and status, latency, open sync connections.
//!
//! The group comes from the route *template* axum matched (`/_matrix/client/v3/rooms/{room_id}/
//! send/…` → `client/rooms/send`), never from the request's path, so user ids, room ids and
//! other input never become label values and the label set stays bounded.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::Response,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

/// Labels of a finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Which gateway of this process ("0" for a lone gateway).
    pub gateway: String,
    /// Endpoint group (see [`endpoint_group`]).
    pub group: String,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// Which gateway of this process.
    pub gateway: String,
    /// Endpoint group.
    pub group: String,
}

/// Labels of per-gateway gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayLabel {
    /// Which gateway of this process.
    pub gateway: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~4 min: long-polling `/sync` requests end up in the last buckets.
    Histogram::new(exponential_buckets(0.001, 2.5, 14))
}

/// The CS API families, shared by every gateway of a process.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<GroupLabels, Histogram, fn() -> Histogram>,
    sync_connections: Family<GatewayLabel, Gauge>,
}

impl HttpMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            sync_connections: Family::default(),
        };
        registry.register(
            "mixgate_http_requests",
            "Client-server API requests by endpoint group and status",
            m.requests.clone(),
        );
        registry.register(
            "mixgate_http_request_duration_seconds",
            "Client-server API request latency until the response head, by endpoint group",
            m.latency.clone(),
        );
        registry.register(
            "mixgate_sync_connections",
            "Open /sync and sliding-sync requests (long polls in progress)",
            m.sync_connections.clone(),
        );
        m
    }
}

/// State of the tracking middleware of one gateway.
#[derive(Clone)]
pub struct Tracker {
    metrics: HttpMetrics,
    gateway: String,
}

impl Tracker {
    /// Tracks requests of the gateway labelled `gateway`.
    pub fn new(metrics: HttpMetrics, gateway: String) -> Arc<Self> {
        Arc::new(Self { metrics, gateway })
    }
}

/// Decrements the sync gauge when the request ends, also when the client goes away and the
/// handler's future is dropped.
struct SyncGuard(Gauge);

impl Drop for SyncGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The axum middleware (`axum::middleware::from_fn_with_state`): counts and times requests.
pub async fn track(State(t): State<Arc<Tracker>>, req: Request, next: Next) -> Response {
    let group = endpoint_group(req.extensions().get::<MatchedPath>().map(|p| p.as_str()));
    let _sync = (group == "client/sync").then(|| {
        let g = t
            .metrics
            .sync_connections
            .get_or_create(&GatewayLabel {
                gateway: t.gateway.clone(),
            })
            .clone();
        g.inc();
        SyncGuard(g)
    });
    let started = Instant::now();
    let response = next.run(req).await;
    let elapsed = started.elapsed().as_secs_f64();
    t.metrics
        .latency
        .get_or_create(&GroupLabels {
            gateway: t.gateway.clone(),
            group: group.clone(),
        })
        .observe(elapsed);
    t.metrics
        .requests
        .get_or_create(&RequestLabels {
            gateway: t.gateway.clone(),
            group,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Whether a path segment is an API version (`r0`, `v3`, `unstable`, an MSC namespace).
fn is_version(seg: &str) -> bool {
    let numbered = |p: char| {
        seg.strip_prefix(p)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    numbered('r') || numbered('v') || seg == "unstable" || seg.starts_with("org.matrix.")
}

/// The endpoint group of a matched route template: the API (`client`, `media`,
/// `synapse/admin`, …) and up to two literal segments after the version, without
/// parameters. `None` (no route matched) is `unrecognized`.
pub fn endpoint_group(template: Option<&str>) -> String {
    let Some(template) = template else {
        return "unrecognized".into();
    };
    let mut segs = template
        .split('/')
        .filter(|s| !s.is_empty() && !s.starts_with('{') && !s.starts_with(':'));
    let mut parts: Vec<&str> = Vec::with_capacity(3);
    match segs.next() {
        Some("_matrix") => parts.push(segs.next().unwrap_or("matrix")),
        Some("_synapse") => {
            parts.push("synapse");
            if let Some(s) = segs.next() {
                parts.push(s);
            }
        }
        Some(other) => parts.push(other),
        None => return "root".into(),
    }
    let api_len = parts.len();
    for seg in segs {
        if is_version(seg) {
            continue;
        }
        parts.push(seg);
        if parts.len() == api_len + 2 {
            break;
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::endpoint_group;

    #[test]
    fn groups_come_from_templates() {
        let g = |t| endpoint_group(Some(t));
        assert_eq!(
            g("/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}"),
            "client/rooms/send"
        );
        assert_eq!(g("/_matrix/client/r0/sync"), "client/sync");
        assert_eq!(
            g("/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"),
            "client/sync"
        );
        assert_eq!(g("/_matrix/client/versions"), "client/versions");
        assert_eq!(g("/_matrix/media/v3/upload"), "media/upload");
        assert_eq!(
            g("/_synapse/admin/v2/users/{user_id}"),
            "synapse/admin/users"
        );
        assert_eq!(
            g("/_matrix/client/v3/profile/{user_id}/displayname"),
            "client/profile/displayname"
        );
        assert_eq!(endpoint_group(None), "unrecognized");
    }
}
