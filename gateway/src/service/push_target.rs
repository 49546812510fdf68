//! Where a push gateway may be: the check of an HTTP pusher's `data.url` when it is set, and
//! the address check push delivery must apply to the addresses it connects to.
//!
//! The spec: `url` MUST be an HTTPS URL with the path `/_matrix/push/v1/notify`. A pusher
//! naming a loopback or private address would turn push delivery into a tool for reaching
//! the gateway's own network (server-side request forgery), so such hosts are refused unless
//! the operator listed them in `push_allowed_private_hosts` (then plain `http` is accepted for
//! them too: a local push gateway, tests). A host name is checked again at delivery: it may
//! resolve to a private address ([`is_private_addr`]).

use std::net::IpAddr;

use serde_json::Value;
use url::{Host, Url};

use crate::{
    config::GatewayConfig,
    error::{ApiError, ApiResult},
};

/// The only path a push gateway URL may have.
pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

/// Checks a pusher as set by a client: an `http` pusher needs a valid `data.url` (400
/// `M_INVALID_PARAM` otherwise); other kinds (`email`) have no URL.
pub fn check_pusher(config: &GatewayConfig, pusher: &Value) -> ApiResult<()> {
    if pusher.get("kind").and_then(Value::as_str) != Some("http") {
        return Ok(());
    }
    let url = pusher
        .get("data")
        .and_then(|d| d.get("url"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid_param("An http pusher needs data.url"))?;
    check_url(config, url).map(|_| ())
}

/// Parses and checks a push gateway URL.
pub fn check_url(config: &GatewayConfig, url: &str) -> ApiResult<Url> {
    let bad = |why: &str| ApiError::invalid_param(format!("Invalid pusher url: {why}"));
    let parsed = Url::parse(url).map_err(|_| bad("not a URL"))?;
    if parsed.path() != NOTIFY_PATH || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("the path must be /_matrix/push/v1/notify"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("credentials are not allowed"));
    }
    let host = parsed.host().ok_or_else(|| bad("no host"))?;
    let host_text = match &host {
        Host::Domain(d) => d.to_ascii_lowercase(),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => ip.to_string(),
    };
    let allowed = config
        .push_allowed_private_hosts
        .iter()
        .any(|h| h.trim_matches(['[', ']']).eq_ignore_ascii_case(&host_text));
    match parsed.scheme() {
        "https" => {}
        "http" if allowed => {}
        _ => return Err(bad("the scheme must be https")),
    }
    if allowed {
        return Ok(parsed);
    }
    let private = match host {
        Host::Ipv4(ip) => is_private_addr(IpAddr::V4(ip)),
        Host::Ipv6(ip) => is_private_addr(IpAddr::V6(ip)),
        Host::Domain(d) => {
            let d = d.to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
    };
    if private {
        return Err(bad(
            "loopback and private hosts are refused unless the operator allows them",
        ));
    }
    Ok(parsed)
}

/// Whether `ip` is loopback, private, link-local, shared (CGNAT), unspecified, broadcast or
/// otherwise not a public address a push gateway may be on.
pub fn is_private_addr(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            let [a, b, ..] = v.octets();
            v.is_loopback()
                || v.is_private()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_broadcast()
                || v.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || a >= 224
        }
        IpAddr::V6(v) => {
            if let Some(v4) = v.to_ipv4_mapped() {
                return is_private_addr(IpAddr::V4(v4));
            }
            let first = v.segments()[0];
            v.is_loopback()
                || v.is_unspecified()
                || v.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(is_private_addr(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["1.1.1.1", "2606:4700::1111"] {
            assert!(!is_private_addr(ip.parse().expect("ip")), "{ip}");
        }
    }
}
