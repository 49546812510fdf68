//! Helpers that write read-at-scrape-time values through prometheus-client's encoders.

use std::fmt;

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
};
use transport::latency::LatencySnapshot;

/// One label pair.
pub type Label<'a> = (&'a str, &'a str);

/// Writes a counter family: one sample per label set. `name` has no `_total` (added by the
/// encoder).
pub fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Vec<Label>, u64)],
) -> fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut me = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in samples {
        ConstCounter::new(*v).encode(me.encode_family(labels)?)?;
    }
    Ok(())
}

/// Writes a gauge family: one sample per label set.
pub fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Vec<Label>, i64)],
) -> fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut me = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in samples {
        ConstGauge::new(*v).encode(me.encode_family(labels)?)?;
    }
    Ok(())
}

/// Writes a histogram family from latency snapshots.
pub fn histograms(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Vec<Label>, LatencySnapshot)],
) -> fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut me = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, s) in samples {
        me.encode_family(labels)?
            .encode_histogram::<NoLabelSet>(s.sum_secs, s.count, &s.buckets, None)?;
    }
    Ok(())
}

/// A count as a gauge value (saturating).
pub fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
