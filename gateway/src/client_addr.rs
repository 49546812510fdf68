//! The client's address, for rate limits: the connection's peer, or, when the peer is a
//! configured reverse proxy (`trusted_proxies`), the address that proxy put in
//! `X-Forwarded-For`. A header from any other peer is ignored, or any client could pick its
//! own rate-limit bucket.

use std::net::IpAddr;

use http::HeaderMap;

/// An IP address or an `address/prefix` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRange {
    net: IpAddr,
    prefix: u8,
}

impl AddrRange {
    /// Parses `10.0.0.1`, `10.0.0.0/8`, `::1` or `fd00::/8`.
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let net: IpAddr = addr.trim().parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { net, prefix })
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| -> u128 {
            match a {
                IpAddr::V4(v) => u128::from(u32::from(v)),
                IpAddr::V6(v) => u128::from(v),
            }
        };
        let (width, ip) = match (self.net, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) => (32u32, ip),
            (IpAddr::V6(_), IpAddr::V6(_)) => (128u32, ip),
            (IpAddr::V6(_), IpAddr::V4(v)) => (128, IpAddr::V6(v.to_ipv6_mapped())),
            (IpAddr::V4(_), IpAddr::V6(v)) => match v.to_ipv4_mapped() {
                Some(v4) => (32, IpAddr::V4(v4)),
                None => return false,
            },
        };
        let shift = width - u32::from(self.prefix);
        let mask = if shift >= 128 { 0 } else { u128::MAX << shift };
        bits(self.net) & mask == bits(ip) & mask
    }
}

/// The client's address: `peer`, unless `peer` is one of `trusted` proxies; then the
/// right-most address of `X-Forwarded-For` that is not itself a trusted proxy (proxies append
/// the address they saw, so entries to its left may be forged by the client).
pub fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[AddrRange],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !is_trusted(*ip))
            .unwrap_or(peer),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ranges() {
        let r = AddrRange::parse("10.0.0.0/8").expect("range");
        assert!(r.contains(ip("10.1.2.3")));
        assert!(!r.contains(ip("11.0.0.1")));
        assert!(r.contains(ip("::ffff:10.0.0.1")));
        let one = AddrRange::parse("::1").expect("one");
        assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
        assert!(AddrRange::parse("0.0.0.0/0")
            .expect("all")
            .contains(ip("1.2.3.4")));
        assert!(AddrRange::parse("10.0.0.0/33").is_none());
        assert!(AddrRange::parse("proxy.lan").is_none());
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted = [AddrRange::parse("127.0.0.1").expect("range")];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.7".parse().expect("header"),
        );
        // From the proxy: the right-most untrusted entry (the left one is client-chosen).
        assert_eq!(
            client_ip(Some(ip("127.0.0.1")), &h, &trusted),
            Some(ip("203.0.113.7"))
        );
        // From anyone else the header is ignored.
        assert_eq!(
            client_ip(Some(ip("198.51.100.1")), &h, &trusted),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(
            client_ip(Some(ip("127.0.0.1")), &HeaderMap::new(), &trusted),
            Some(ip("127.0.0.1"))
        );
    }
}
