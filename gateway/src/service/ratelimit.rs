//! Fixed-window rate limits per key: per client address (login, registration and every
//! password check) and per account (every password check).

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::error::{ApiError, ApiResult};

/// Allows `limit` attempts per key (by default a client address) per window.
pub struct RateLimiter<K = IpAddr> {
    limit: u32,
    window: Duration,
    seen: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// A limiter of `limit` attempts per `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt for `key` (an address, an account); fails with M_LIMIT_EXCEEDED
    /// when over the limit. `None` (no known address) is not limited.
    pub fn check(&self, key: Option<K>) -> ApiResult<()> {
        let Some(ip) = key else { return Ok(()) };
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 100_000 {
            seen.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let entry = seen.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 > self.limit {
            let retry = self.window.saturating_sub(now.duration_since(entry.0));
            return Err(ApiError::limit_exceeded(retry.as_millis().max(1) as u64));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address() {
        let rl = RateLimiter::new(2, Duration::from_secs(60));
        let a = Some(IpAddr::from([127, 0, 0, 1]));
        let b = Some(IpAddr::from([127, 0, 0, 2]));
        assert!(rl.check(a).is_ok());
        assert!(rl.check(a).is_ok());
        let err = rl.check(a).expect_err("limited");
        assert_eq!(err.errcode, "M_LIMIT_EXCEEDED");
        assert!(rl.check(b).is_ok());
    }
}
