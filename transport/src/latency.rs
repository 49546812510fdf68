//! A fixed-bucket latency histogram on atomics, read at scrape time by the metrics endpoint.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Upper bounds of the buckets, in seconds (mixing delays make deliveries take seconds).
pub const BUCKETS_SECS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// Counts of observed durations per bucket, with their sum; lock-free.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last slot is above every bound.
    buckets: [AtomicU64; BUCKETS_SECS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// A consistent-enough copy of a [`LatencyHistogram`] for one scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySnapshot {
    /// `(upper bound in seconds, observations at or below it)`, cumulative, ending with
    /// `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations, in seconds.
    pub sum_secs: f64,
    /// Number of observations.
    pub count: u64,
}

impl LatencyHistogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let idx = BUCKETS_SECS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS_SECS.len());
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The cumulative buckets, sum and count.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut acc = 0;
        let mut buckets = Vec::with_capacity(BUCKETS_SECS.len() + 1);
        for (i, slot) in self.buckets.iter().enumerate() {
            acc += slot.load(Ordering::Relaxed);
            let bound = BUCKETS_SECS.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, acc));
        }
        LatencySnapshot {
            buckets,
            sum_secs: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: acc,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(1500));
        h.observe(Duration::from_secs(1000));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.1, 1));
        assert_eq!(s.buckets[4], (2.0, 2));
        assert_eq!(s.buckets.last().copied(), Some((f64::INFINITY, 3)));
        assert!((s.sum_secs - 1001.55).abs() < 1e-6);
    }
}
