//! Anonymity at deployment scale: a simulated network (1 000 gateways, 5 providers, 3 layers
//! of 10 mixes) with the default traffic parameters and sweeps around them, and what a
//! global passive observer, alone or controlling 10% or 20% of the mixes, is left with.
//!
//! `cargo run --release -p transport --example anonymity`
//!
//! Prints markdown tables and writes `transport/docs/anonymity.csv` and the plots
//! `transport/docs/anonymity_*.png`. `MIXGATE_SIM_TARGETS` sets the messages measured per
//! point (default 40), `MIXGATE_SIM_SEED` the seed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod adversary;
mod model;
mod plot;

use std::io::Write;

use model::{Setup, World};

/// The default parameters (`TrafficParams::default`) on the deployment-scale topology.
fn defaults(seed: u64) -> Setup {
    Setup {
        gateways: 1000,
        providers: 5,
        layers: 3,
        per_layer: 10,
        lambda: 4.0,
        loop_rate: 0.5,
        mix_loop: 1.0,
        mu: 0.050,
        real_fraction: 0.1,
        compromised: 0.0,
        seconds: 4.0,
        seed,
    }
}

/// Mean sender entropy, best-guess probability, right-guess rate and receiver entropy.
#[derive(Debug, Clone, Copy)]
struct Point {
    h_sender: f64,
    best_sender: f64,
    right_sender: f64,
    h_receiver: f64,
    best_receiver: f64,
}

fn measure(s: &Setup, targets: usize) -> Point {
    let mut s = s.clone();
    // Long enough that every measured message has a full window of traffic around it.
    s.seconds = (40.0 * s.mu).max(3.0);
    let w = World::generate(&s);
    let margin = 14.0 * s.mu + 0.2;
    let cands: Vec<usize> = w
        .trips
        .iter()
        .enumerate()
        .filter(|(_, t)| t.real && t.times[0] > margin && t.times[0] < s.seconds - margin)
        .map(|(i, _)| i)
        .collect();
    // Long delays mean many candidates per hop: measure fewer messages there.
    let targets = ((targets as f64 * (0.05 / s.mu).min(1.0)).round() as usize).max(10);
    let step = (cands.len() / targets.max(1)).max(1);
    let picked: Vec<usize> = cands.iter().step_by(step).take(targets).copied().collect();
    let n = picked.len().max(1) as f64;
    let mut p = Point {
        h_sender: 0.0,
        best_sender: 0.0,
        right_sender: 0.0,
        h_receiver: 0.0,
        best_receiver: 0.0,
    };
    for &e in &picked {
        let v = adversary::sender_anonymity(&w, e);
        p.h_sender += v.entropy / n;
        p.best_sender += v.best / n;
        p.right_sender += f64::from(u8::from(v.right)) / n;
        let r = adversary::receiver_anonymity(&w, e);
        p.h_receiver += r.entropy / n;
        p.best_receiver += r.best / n;
    }
    p
}

/// One curve: a parameter swept, the others at their defaults.
struct Sweep {
    name: &'static str,
    unit: &'static str,
    values: Vec<f64>,
    set: fn(&mut Setup, f64),
}

fn main() {
    let targets: usize = std::env::var("MIXGATE_SIM_TARGETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let seed: u64 = std::env::var("MIXGATE_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let sweeps = [
        Sweep {
            name: "mu",
            unit: "ms",
            values: vec![5.0, 10.0, 25.0, 50.0, 100.0, 200.0],
            set: |s, v| s.mu = v / 1000.0,
        },
        Sweep {
            name: "lambda",
            unit: "packets/s",
            values: vec![0.5, 1.0, 2.0, 4.0, 8.0],
            set: |s, v| s.lambda = v,
        },
        Sweep {
            name: "loop",
            unit: "packets/s",
            values: vec![0.0, 0.5, 2.0, 4.0],
            set: |s, v| s.loop_rate = v,
        },
    ];
    let compromised = [0.0, 0.1, 0.2];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = std::fs::File::create(dir.join("anonymity.csv")).unwrap();
    writeln!(
        csv,
        "sweep,value,compromised,sender_entropy_bits,sender_best_guess,sender_right_guess,receiver_entropy_bits,receiver_best_guess"
    )
    .unwrap();
    println!("1000 gateways, 5 providers, 3 × 10 mixes; defaults λ = 4/s, loop 0.5/s, mix loops 1/s, μ = 50 ms; {targets} messages per point");
    println!("max entropy: log2(1000) = {:.2} bits", (1000f64).log2());
    for sw in &sweeps {
        println!("\n| {} ({}) | compromised | sender H (bits) | best guess | right guess | receiver H (bits) | mean mixing delay |", sw.name, sw.unit);
        println!("|---|---|---|---|---|---|---|");
        let mut curves: Vec<(f64, Vec<(f64, Point)>)> = Vec::new();
        for &c in &compromised {
            let mut curve = vec![];
            for &v in &sw.values {
                let mut s = defaults(seed);
                (sw.set)(&mut s, v);
                s.compromised = c;
                let p = measure(&s, targets);
                println!(
                    "| {v} | {:.0}% | {:.2} | {:.3} | {:.0}% | {:.2} | {:.0} ms |",
                    c * 100.0,
                    p.h_sender,
                    p.best_sender,
                    p.right_sender * 100.0,
                    p.h_receiver,
                    3.0 * s.mu * 1000.0
                );
                writeln!(
                    csv,
                    "{},{v},{c},{:.4},{:.5},{:.4},{:.4},{:.6}",
                    sw.name,
                    p.h_sender,
                    p.best_sender,
                    p.right_sender,
                    p.h_receiver,
                    p.best_receiver
                )
                .unwrap();
                curve.push((v, p));
            }
            curves.push((c, curve));
        }
        let series: Vec<(String, Vec<(f64, f64)>)> = curves
            .iter()
            .map(|(c, pts)| {
                (
                    format!("{:.0}% mixes compromised", c * 100.0),
                    pts.iter().map(|(v, p)| (*v, p.h_sender)).collect(),
                )
            })
            .collect();
        let best: Vec<(String, Vec<(f64, f64)>)> = curves
            .iter()
            .map(|(c, pts)| {
                (
                    format!("{:.0}% mixes compromised", c * 100.0),
                    pts.iter().map(|(v, p)| (*v, p.best_sender)).collect(),
                )
            })
            .collect();
        plot::lines(
            &dir.join(format!("anonymity_{}.png", sw.name)),
            &format!("Sender anonymity vs {} ({})", sw.name, sw.unit),
            &format!("{} ({})", sw.name, sw.unit),
            &series,
            &best,
        );
    }
}
