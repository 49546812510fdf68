//! Fault injection for links (tests and measurements only; off unless configured).
//!
//! A [`LinkFaults`] set in [`super::LinkConfig::faults`] makes every link opened with that
//! configuration drop, delay, reorder, duplicate or reset its *data* frames (packets, submits,
//! polls and mailbox answers; rekey frames are never touched, since the Noise nonces of both
//! ends must stay in step). Faults are applied to decrypted frames, above the Noise layer: a
//! dropped frame is never encrypted (sending side) or is discarded after decryption (receiving
//! side), so the link itself stays healthy, as if the packet had been lost by a lossy network
//! under a mixnet that runs over datagrams.
//!
//! Each direction has its own [`FaultSpec`]: `outbound` acts on what this end sends,
//! `inbound` on what it receives. Every link draws its own random stream from `seed` and a
//! per-configuration link counter, so a run is reproducible as long as links are opened in
//! the same order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What happens to the frames of one direction, as independent probabilities per frame.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultSpec {
    /// Probability that a frame is lost.
    pub drop: f64,
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
    /// Probability that a frame is held back and delivered after the next one.
    pub reorder: f64,
    /// Probability that a frame is delayed (the link is held meanwhile, as TCP would be).
    pub delay: f64,
    /// Longest delay; each delayed frame waits a uniform time up to this.
    pub max_delay: Duration,
    /// Probability that the link is closed at this frame (the frame is lost).
    pub reset: f64,
}

impl FaultSpec {
    /// Loss only, with probability `p`.
    pub fn loss(p: f64) -> Self {
        FaultSpec {
            drop: p,
            ..FaultSpec::default()
        }
    }

    /// Whether this spec does nothing.
    pub fn is_clean(&self) -> bool {
        self.drop <= 0.0
            && self.duplicate <= 0.0
            && self.reorder <= 0.0
            && self.delay <= 0.0
            && self.reset <= 0.0
    }
}

/// Fault plan shared by every link opened with one [`super::LinkConfig`], with counters of
/// what it did.
#[derive(Debug, Default)]
pub struct LinkFaults {
    /// Faults on frames this end sends.
    pub outbound: FaultSpec,
    /// Faults on frames this end receives.
    pub inbound: FaultSpec,
    /// Seed of the per-link random streams.
    pub seed: u64,
    links: AtomicU64,
    /// Frames dropped.
    pub dropped: AtomicU64,
    /// Frames duplicated.
    pub duplicated: AtomicU64,
    /// Frames held back behind the next one.
    pub reordered: AtomicU64,
    /// Frames delayed.
    pub delayed: AtomicU64,
    /// Links reset.
    pub resets: AtomicU64,
    /// Data frames that passed through the plan (in either direction).
    pub seen: AtomicU64,
}

impl LinkFaults {
    /// A plan with the same spec in both directions.
    pub fn symmetric(spec: FaultSpec, seed: u64) -> Self {
        LinkFaults {
            outbound: spec,
            inbound: spec,
            seed,
            ..LinkFaults::default()
        }
    }

    /// A plan with separate specs per direction.
    pub fn new(outbound: FaultSpec, inbound: FaultSpec, seed: u64) -> Self {
        LinkFaults {
            outbound,
            inbound,
            seed,
            ..LinkFaults::default()
        }
    }

    /// The random stream of the next link's direction (`0` outbound, `1` inbound).
    pub(super) fn stream(&self, direction: u64) -> StdRng {
        let n = self.links.fetch_add(1, Ordering::Relaxed);
        StdRng::seed_from_u64(self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (direction << 63))
    }

    /// Reads a counter.
    pub fn count(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// What to do with one frame.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Decision {
    pub reset: bool,
    pub drop: bool,
    pub duplicate: bool,
    pub hold: bool,
    pub delay: Option<Duration>,
}

/// One direction of one link: its spec and its random stream.
pub(super) struct FaultState {
    spec: FaultSpec,
    rng: StdRng,
}

impl FaultState {
    /// The outbound (`inbound = false`) or inbound state of a new link, if that direction has
    /// faults.
    pub(super) fn for_link(plan: &LinkFaults, inbound: bool) -> Option<Self> {
        let spec = if inbound { plan.inbound } else { plan.outbound };
        (!spec.is_clean()).then(|| FaultState {
            spec,
            rng: plan.stream(u64::from(inbound)),
        })
    }

    /// Draws the fate of one data frame and counts it in `plan`.
    pub(super) fn decide(&mut self, plan: &LinkFaults) -> Decision {
        let s = self.spec;
        let mut chance = |p: f64| p > 0.0 && self.rng.gen_bool(p.min(1.0));
        let mut d = Decision {
            reset: chance(s.reset),
            drop: chance(s.drop),
            duplicate: chance(s.duplicate),
            hold: chance(s.reorder),
            delay: None,
        };
        if chance(s.delay) && !s.max_delay.is_zero() {
            let us = s.max_delay.as_micros().min(u128::from(u64::MAX)) as u64;
            d.delay = Some(Duration::from_micros(self.rng.gen_range(0..=us)));
        }
        let inc = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        inc(&plan.seen);
        if d.reset {
            inc(&plan.resets);
        } else if d.drop {
            inc(&plan.dropped);
        } else {
            if d.duplicate {
                inc(&plan.duplicated);
            }
            if d.hold {
                inc(&plan.reordered);
            }
            if d.delay.is_some() {
                inc(&plan.delayed);
            }
        }
        d
    }
}
