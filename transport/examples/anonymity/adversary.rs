//! The global passive observer's inference, with the mixes it controls.
//!
//! It sees every link event with its time: which gateway submitted a packet to its provider
//! (relayed at once to the first mix), and every packet entering and leaving every mix. It
//! knows μ. At an honest mix it weighs each earlier input `i` as the origin of an output at
//! time `t` by the delay density `exp(−(t − tᵢ)/μ)`, normalised over the inputs; a mix it
//! controls tells it the true input. Chaining this through the layers gives its posterior over
//! the senders of a message it sees delivered (sender anonymity), and over the providers a
//! message it saw sent went to (receiver anonymity; polls are constant, so within a provider
//! every gateway is equally likely).

use crate::model::{Origin, World};

/// Inputs whose weight is below this fraction of the output's total are not followed.
const PRUNE: f64 = 1e-4;
/// Delays beyond this many μ are not considered.
const WINDOW: f64 = 12.0;
/// Paths (chains of candidates through the layers) less likely than this are not followed.
/// Dropping them concentrates the posterior, so entropies come out slightly *lower* than
/// the full computation would give: the observer is, if anything, credited too much.
const MIN_PATH: f64 = 1e-7;

/// Weights of the candidate inputs of the output of trip `e` at `layer` (normalised).
fn back_candidates(w: &World, layer: usize, e: usize) -> Vec<(usize, f64)> {
    let tr = &w.trips[e];
    let m = tr.mixes[layer];
    if w.bad[layer][m] {
        return vec![(e, 1.0)];
    }
    let t_out = tr.times[layer + 1];
    let mu = w.setup.mu;
    let log = &w.logs[layer][m];
    let hi = log.inputs.partition_point(|(t, _)| *t <= t_out);
    let lo = log
        .inputs
        .partition_point(|(t, _)| *t < t_out - WINDOW * mu);
    let mut c: Vec<(usize, f64)> = log.inputs[lo..hi]
        .iter()
        .map(|(t, j)| (*j, (-(t_out - t) / mu).exp()))
        .collect();
    normalise(&mut c);
    c
}

/// Weights of the candidate outputs of the input of trip `e` at `layer` (normalised).
fn forward_candidates(w: &World, layer: usize, e: usize) -> Vec<(usize, f64)> {
    let tr = &w.trips[e];
    let m = tr.mixes[layer];
    if w.bad[layer][m] {
        return vec![(e, 1.0)];
    }
    let t_in = tr.times[layer];
    let mu = w.setup.mu;
    let log = &w.logs[layer][m];
    let lo = log.outputs.partition_point(|(t, _)| *t < t_in);
    let hi = log
        .outputs
        .partition_point(|(t, _)| *t <= t_in + WINDOW * mu);
    let mut c: Vec<(usize, f64)> = log.outputs[lo..hi]
        .iter()
        .map(|(t, j)| (*j, (-(t - t_in) / mu).exp()))
        .collect();
    normalise(&mut c);
    c
}

fn normalise(c: &mut Vec<(usize, f64)>) {
    let sum: f64 = c.iter().map(|x| x.1).sum();
    if sum <= 0.0 {
        c.clear();
        return;
    }
    for x in c.iter_mut() {
        x.1 /= sum;
    }
    c.retain(|x| x.1 >= PRUNE);
}

/// Adds the sender posterior of the output of trip `e` at `layer`, times `weight`, to `acc`
/// (index `gateways` collects mass that points at mixes' own cover).
fn senders(w: &World, layer: usize, e: usize, weight: f64, acc: &mut [f64]) {
    for (j, p) in back_candidates(w, layer, e) {
        let wj = weight * p;
        if wj < MIN_PATH {
            continue;
        }
        if layer == 0 {
            let k = match w.trips[j].origin {
                Origin::Gateway(g) => g,
                Origin::Mix => w.setup.gateways,
            };
            acc[k] += wj;
        } else {
            senders(w, layer - 1, j, wj, acc);
        }
    }
}

/// Adds the destination-provider posterior of the input of trip `e` at `layer`.
fn destinations(w: &World, layer: usize, e: usize, weight: f64, acc: &mut [f64]) {
    for (j, p) in forward_candidates(w, layer, e) {
        let wj = weight * p;
        if wj < MIN_PATH {
            continue;
        }
        if layer + 1 == w.setup.layers {
            acc[w.trips[j].dest_provider] += wj;
        } else {
            destinations(w, layer + 1, j, wj, acc);
        }
    }
}

/// What the observer is left with about one message.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    /// Shannon entropy of its posterior, bits.
    pub entropy: f64,
    /// Its best guess's probability.
    pub best: f64,
    /// Whether the best guess is right.
    pub right: bool,
}

fn entropy(p: &[f64]) -> f64 {
    let s: f64 = p.iter().sum();
    p.iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| {
            let q = x / s;
            -q * q.log2()
        })
        .sum()
}

/// Sender anonymity of real message `e` (seen arriving at its provider).
pub fn sender_anonymity(w: &World, e: usize) -> Verdict {
    let mut acc = vec![0.0; w.setup.gateways + 1];
    senders(w, w.setup.layers - 1, e, 1.0, &mut acc);
    let s: f64 = acc.iter().sum();
    let (arg, max) = acc[..w.setup.gateways]
        .iter()
        .enumerate()
        .fold((0, 0.0), |b, (i, &x)| if x > b.1 { (i, x) } else { b });
    Verdict {
        entropy: entropy(&acc),
        best: if s > 0.0 { max / s } else { 0.0 },
        right: w.trips[e].origin == Origin::Gateway(arg),
    }
}

/// Receiver anonymity of real message `e` (seen leaving its sender).
pub fn receiver_anonymity(w: &World, e: usize) -> Verdict {
    let st = &w.setup;
    let mut acc = vec![0.0; st.providers];
    destinations(w, 0, e, 1.0, &mut acc);
    let s: f64 = acc.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    // Gateways per provider; within one, polls make them indistinguishable.
    let n = |b: usize| {
        (0..st.gateways)
            .filter(|g| g % st.providers == b)
            .count()
            .max(1) as f64
    };
    let mut h = 0.0;
    let mut best = (0usize, 0.0f64);
    for (b, &x) in acc.iter().enumerate() {
        let q = x / s;
        if q > 0.0 {
            h += -q * q.log2() + q * n(b).log2();
        }
        if q / n(b) > best.1 {
            best = (b, q / n(b));
        }
    }
    let tr = &w.trips[e];
    Verdict {
        entropy: h,
        best: best.1,
        right: best.0 == tr.dest_provider && n(best.0) <= 1.0,
    }
}
