//! Sending one notification to a push gateway over HTTP(S).
//!
//! Host names are resolved by [`GuardedResolver`], which drops loopback and private addresses
//! (`push_target::is_private_addr`) unless the operator allowed the host, so a pusher cannot
//! make the gateway reach its own network through DNS. Every request has a timeout; redirects
//! are not followed.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::Value;

use crate::service::push_target::is_private_addr;

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The push gateway took it; these pushkeys it rejected (to be removed).
    Delivered {
        /// Rejected pushkeys.
        rejected: Vec<String>,
    },
    /// Try again later (network error, timeout, 5xx, 429).
    Retry(String),
    /// Never going to work (another 4xx): give up on this notification.
    Refused(String),
}

/// Resolves names like the system does, minus private addresses of hosts not allowed.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allowed: Arc<Vec<String>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let allowed = self.allowed.iter().any(|h| h.eq_ignore_ascii_case(&host));
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allowed || !is_private_addr(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// An HTTP client for push gateways.
#[derive(Debug, Clone)]
pub struct Deliverer {
    client: reqwest::Client,
}

impl Deliverer {
    /// A client with `timeout` per request; `allowed_private` hosts may resolve to private
    /// addresses.
    pub fn new(timeout: Duration, allowed_private: Vec<String>) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver {
                allowed: Arc::new(allowed_private),
            }))
            .build()?;
        Ok(Self { client })
    }

    /// Posts `body` to `url` and classifies the answer.
    pub async fn send(&self, url: &str, body: &Value) -> Outcome {
        let res = match self.client.post(url).json(body).send().await {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(format!("request failed: {e}")),
        };
        let status = res.status();
        if status.is_success() {
            // An unparsable body still acknowledges delivery; it only rejects nothing.
            let rejected = res
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v.get("rejected").cloned())
                .and_then(|r| serde_json::from_value::<Vec<String>>(r).ok())
                .unwrap_or_default();
            Outcome::Delivered { rejected }
        } else if status.is_server_error() || status.as_u16() == 429 {
            Outcome::Retry(format!("push gateway answered {status}"))
        } else {
            Outcome::Refused(format!("push gateway answered {status}"))
        }
    }
}
