//! The simulated network: gateways sending Poisson streams through 3 layers of mixes with
//! Exp(μ) delays, as the client and nodes do, and what a global passive observer records.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Shape and parameters of one simulated run.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Gateways (senders and recipients).
    pub gateways: usize,
    /// Providers; gateway `g` uses provider `g % providers`.
    pub providers: usize,
    /// Mix layers.
    pub layers: usize,
    /// Mixes per layer.
    pub per_layer: usize,
    /// λ: each gateway's send stream (a real packet if queued, else loop cover), packets/s.
    pub lambda: f64,
    /// Each gateway's separate loop-cover stream, packets/s.
    pub loop_rate: f64,
    /// Each mix's own loop cover, packets/s.
    pub mix_loop: f64,
    /// μ: mean delay per mix, seconds.
    pub mu: f64,
    /// Fraction of gateways' send-stream packets that are real messages (the rest is cover).
    pub real_fraction: f64,
    /// Fraction of mixes the adversary controls.
    pub compromised: f64,
    /// Simulated seconds.
    pub seconds: f64,
    /// Random seed.
    pub seed: u64,
}

/// Who put a packet into the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A gateway (index).
    Gateway(usize),
    /// A mix's own loop cover (not attributable to any gateway).
    Mix,
}

/// One packet's trip.
#[derive(Debug, Clone)]
pub struct Trip {
    /// Its origin.
    pub origin: Origin,
    /// Whether it is a real message (as opposed to cover).
    pub real: bool,
    /// The provider it ends at.
    pub dest_provider: usize,
    /// The mix of each layer.
    pub mixes: Vec<usize>,
    /// Entry time into each layer's mix, then the exit time of the last one (`layers + 1`).
    pub times: Vec<f64>,
}

/// What the observer sees at one mix: inputs and outputs with times, in time order, as
/// indices into the trip list (the observer cannot see the mapping, only the link events).
#[derive(Debug, Default, Clone)]
pub struct MixLog {
    /// (entry time, trip).
    pub inputs: Vec<(f64, usize)>,
    /// (exit time, trip).
    pub outputs: Vec<(f64, usize)>,
}

/// A simulated run: every trip and the per-mix logs.
pub struct World {
    /// The setup.
    pub setup: Setup,
    /// All trips.
    pub trips: Vec<Trip>,
    /// Logs per layer and mix: `logs[layer][mix]`.
    pub logs: Vec<Vec<MixLog>>,
    /// Which mixes the adversary controls: `bad[layer][mix]`.
    pub bad: Vec<Vec<bool>>,
}

fn exp(rng: &mut StdRng, mean: f64) -> f64 {
    let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    -u.ln() * mean
}

impl World {
    /// Generates traffic for `setup.seconds`.
    pub fn generate(setup: &Setup) -> World {
        let s = setup;
        let mut rng = StdRng::seed_from_u64(s.seed);
        let mut trips = Vec::new();
        let route = |rng: &mut StdRng| -> (Vec<usize>, Vec<f64>) {
            let mixes: Vec<usize> = (0..s.layers)
                .map(|_| rng.gen_range(0..s.per_layer))
                .collect();
            let delays: Vec<f64> = (0..s.layers).map(|_| exp(rng, s.mu)).collect();
            (mixes, delays)
        };
        let mut push = |rng: &mut StdRng, origin, real, dest_provider, t0: f64| {
            let (mixes, delays) = route(rng);
            let mut times = vec![t0];
            for d in delays {
                let last = *times.last().unwrap_or(&t0);
                times.push(last + d);
            }
            trips.push(Trip {
                origin,
                real,
                dest_provider,
                mixes,
                times,
            });
        };
        for g in 0..s.gateways {
            // The send stream: real messages to random recipients, else loop cover.
            let mut t = exp(&mut rng, 1.0 / s.lambda);
            while t < s.seconds {
                let real = rng.gen_bool(s.real_fraction.clamp(0.0, 1.0));
                let r = if real {
                    rng.gen_range(0..s.gateways)
                } else {
                    g
                };
                push(&mut rng, Origin::Gateway(g), real, r % s.providers, t);
                t += exp(&mut rng, 1.0 / s.lambda);
            }
            if s.loop_rate > 0.0 {
                let mut t = exp(&mut rng, 1.0 / s.loop_rate);
                while t < s.seconds {
                    push(&mut rng, Origin::Gateway(g), false, g % s.providers, t);
                    t += exp(&mut rng, 1.0 / s.loop_rate);
                }
            }
        }
        if s.mix_loop > 0.0 {
            let rate = s.mix_loop * (s.layers * s.per_layer) as f64;
            let mut t = exp(&mut rng, 1.0 / rate);
            while t < s.seconds {
                let p = rng.gen_range(0..s.providers);
                push(&mut rng, Origin::Mix, false, p, t);
                t += exp(&mut rng, 1.0 / rate);
            }
        }
        let mut logs = vec![vec![MixLog::default(); s.per_layer]; s.layers];
        for (i, tr) in trips.iter().enumerate() {
            for (l, layer) in logs.iter_mut().enumerate() {
                let m = tr.mixes[l];
                layer[m].inputs.push((tr.times[l], i));
                layer[m].outputs.push((tr.times[l + 1], i));
            }
        }
        for layer in &mut logs {
            for m in layer {
                m.inputs.sort_by(|a, b| a.0.total_cmp(&b.0));
                m.outputs.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
        }
        let total = s.layers * s.per_layer;
        let nbad = (s.compromised * total as f64).round() as usize;
        let mut ids: Vec<usize> = (0..total).collect();
        for i in 0..nbad.min(total) {
            let j = rng.gen_range(i..total);
            ids.swap(i, j);
        }
        let mut bad = vec![vec![false; s.per_layer]; s.layers];
        for &k in &ids[..nbad.min(total)] {
            bad[k / s.per_layer][k % s.per_layer] = true;
        }
        World {
            setup: setup.clone(),
            trips,
            logs,
            bad,
        }
    }
}
