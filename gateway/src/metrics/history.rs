//! The last hour of a process's traffic for the status page: every [`SAMPLE`] a sampler reads
//! the same counters the metrics endpoint reads and keeps the per-second rates in a ring of
//! [`KEEP`] samples. Only totals over the whole process are kept (no per-peer figures).

use std::{
    collections::VecDeque,
    sync::{atomic::Ordering::Relaxed, Arc, Mutex},
    time::{Duration, Instant},
};

use super::Sources;

/// Time between samples.
pub const SAMPLE: Duration = Duration::from_secs(5);
/// Samples kept: one hour.
pub const KEEP: usize = 720;

/// Cumulative counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    real: u64,
    cover: u64,
    delivered: u64,
    latency_sum: f64,
    latency_count: u64,
    forwarded: u64,
    dropped: u64,
}

/// Rates and gauges over one sample interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub t: f64,
    /// Real packets sent per second by this process's gateways.
    pub real_per_s: f64,
    /// Cover packets (loop and drop cover) sent per second by them.
    pub cover_per_s: f64,
    /// Mean delivery latency of messages confirmed in the interval (seconds), if any.
    pub latency_s: Option<f64>,
    /// Messages confirmed in the interval.
    pub delivered: u64,
    /// Packets forwarded per second by this process's mix nodes and providers.
    pub forwarded_per_s: f64,
    /// Packets dropped per second by them (every reason).
    pub dropped_per_s: f64,
    /// Packets waiting in their queues.
    pub queued: usize,
    /// Their open links (in + out).
    pub links: usize,
}

/// The ring of samples.
#[derive(Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

fn totals(sources: &Sources) -> (Totals, usize, usize) {
    let mut t = Totals::default();
    for g in sources.gateways() {
        if let Some(c) = &g.client {
            t.real += c.stats.sent_real.load(Relaxed);
            t.cover += c.stats.sent_cover.load(Relaxed) + c.stats.sent_loops.load(Relaxed);
            t.delivered += c.stats.delivered.load(Relaxed);
            let l = c.latency.snapshot();
            t.latency_sum += l.sum_secs;
            t.latency_count += l.count;
        }
    }
    let (mut queued, mut links) = (0, 0);
    for n in sources.nodes() {
        let s = &n.stats;
        t.forwarded += s.relayed.load(Relaxed);
        t.dropped += s.dropped_malformed.load(Relaxed)
            + s.dropped_bad_mac.load(Relaxed)
            + s.dropped_replay.load(Relaxed)
            + s.dropped_tagged.load(Relaxed)
            + s.dropped_unknown_hop.load(Relaxed)
            + s.dropped_overload.load(Relaxed)
            + s.dropped_peer_full.load(Relaxed)
            + s.dropped_quota.load(Relaxed);
        let g = n.probe.gauges();
        queued += g.ingress_queue + g.delay_queue + g.link_queue;
        links += g.links_in + g.links_out;
    }
    (t, queued, links)
}

impl History {
    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    fn push(&self, s: Sample) {
        let mut q = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == KEEP {
            q.pop_front();
        }
        q.push_back(s);
    }

    /// Samples `sources` every [`SAMPLE`] until the returned task is aborted.
    pub fn spawn_sampler(self: &Arc<Self>, sources: Arc<Sources>) -> tokio::task::JoinHandle<()> {
        let history = self.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(SAMPLE);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last: Option<(Instant, Totals)> = None;
            loop {
                tick.tick().await;
                let now = Instant::now();
                let (t, queued, links) = totals(&sources);
                if let Some((then, p)) = last {
                    let dt = now.duration_since(then).as_secs_f64().max(0.001);
                    let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
                    let count = t.latency_count.saturating_sub(p.latency_count);
                    history.push(Sample {
                        t: now.duration_since(start).as_secs_f64(),
                        real_per_s: rate(t.real, p.real),
                        cover_per_s: rate(t.cover, p.cover),
                        latency_s: (count > 0)
                            .then(|| (t.latency_sum - p.latency_sum).max(0.0) / count as f64),
                        delivered: t.delivered.saturating_sub(p.delivered),
                        forwarded_per_s: rate(t.forwarded, p.forwarded),
                        dropped_per_s: rate(t.dropped, p.dropped),
                        queued,
                        links,
                    });
                }
                last = Some((now, t));
            }
        })
    }
}
