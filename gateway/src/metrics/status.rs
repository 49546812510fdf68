//! The operator's status page (`GET /` on the metrics listener): plain HTML with
//! server-rendered SVG charts, no script, no external asset; it reloads itself every sample.
//! It shows only totals and this process's own nodes and gateways by index: never ids,
//! names, contents, or which peer anything went to.

use std::{fmt::Write, sync::atomic::Ordering::Relaxed};

use super::{
    history::{Sample, KEEP, SAMPLE},
    Sources,
};

const W: f64 = 720.0;
const H: f64 = 150.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One line of a chart: its name, colour and values (`None`: no value, a gap).
struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    values: Vec<Option<f64>>,
}

/// An SVG line chart of the last hour (right-aligned: the newest sample at the right edge).
fn chart(title: &str, unit: &str, series: &[Series]) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0_f64, |m, v| m.max(*v));
    let top = if max <= 0.0 { 1.0 } else { max * 1.1 };
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg class=\"chart\" viewBox=\"0 0 {W} {}\" \
         width=\"{W}\" height=\"{}\" role=\"img\" aria-label=\"{}\">\
         <rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" class=\"bg\"/>",
        esc(title),
        H + 20.0,
        H + 20.0,
        esc(title)
    );
    for frac in [0.25, 0.5, 0.75] {
        let y = H - H * frac;
        let _ = write!(
            svg,
            "<line x1=\"0\" x2=\"{W}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"grid\"/>\
             <text x=\"4\" y=\"{:.1}\" class=\"tick\">{:.2} {}</text>",
            y - 2.0,
            top * frac,
            esc(unit)
        );
    }
    for s in series {
        let n = s.values.len();
        let mut points: Vec<String> = vec![];
        let mut lines: Vec<String> = vec![];
        for (i, v) in s.values.iter().enumerate() {
            let x = W * (KEEP - n + i) as f64 / (KEEP.max(2) - 1) as f64;
            match v {
                Some(v) => points.push(format!("{x:.1},{:.1}", H - H * v / top)),
                None if !points.is_empty() => lines.push(std::mem::take(&mut points).join(" ")),
                None => {}
            }
        }
        if !points.is_empty() {
            lines.push(points.join(" "));
        }
        for l in lines {
            let _ = write!(
                svg,
                "<polyline points=\"{l}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>",
                s.colour
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"{}\" class=\"tick\">−60 min</text>\
         <text x=\"{}\" y=\"{}\" class=\"tick\" text-anchor=\"end\">now</text></svg>",
        H + 15.0,
        W - 4.0,
        H + 15.0
    );
    svg.push_str("<div class=\"legend\">");
    for s in series {
        let _ = write!(
            svg,
            "<span><i style=\"background:{}\"></i>{}</span>",
            s.colour,
            esc(s.name)
        );
    }
    svg.push_str("</div></figure>");
    svg
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = String::from("<table><tr>");
    for h in head {
        let _ = write!(t, "<th>{}</th>", esc(h));
    }
    t.push_str("</tr>");
    for r in rows {
        t.push_str("<tr>");
        for c in r {
            let _ = write!(t, "<td>{}</td>", esc(c));
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    t
}

const STYLE: &str =
    "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.3em}h2{font-size:1.05em;margin-top:1.6em}figure{margin:0 0 1em}\
figcaption{font-weight:600;margin-bottom:.3em}.chart .bg{fill:#fff;stroke:#ccc}\
.chart .grid{stroke:#eee}.chart .tick{font-size:10px;fill:#888}\
.legend span{margin-right:1.2em}.legend i{display:inline-block;width:.9em;height:.9em;\
margin-right:.3em;vertical-align:-.1em}table{border-collapse:collapse;margin-bottom:1em}\
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f0f0f0}\
p.note{color:#555;max-width:50em}";

/// The page for `sources` and their `history`.
pub fn render(sources: &Sources, history: &[Sample]) -> String {
    let gateways = sources.gateways();
    let nodes = sources.nodes();
    let dirs = sources.directories();
    let mut body = String::new();
    let has_clients = gateways.iter().any(|g| g.client.is_some());
    if has_clients {
        let real: Vec<Option<f64>> = history.iter().map(|s| Some(s.real_per_s)).collect();
        let cover: Vec<Option<f64>> = history.iter().map(|s| Some(s.cover_per_s)).collect();
        let total: Vec<Option<f64>> = history
            .iter()
            .map(|s| Some(s.real_per_s + s.cover_per_s))
            .collect();
        body.push_str(&chart(
            "Packets sent per second by this process's gateways",
            "/s",
            &[
                Series {
                    name: "total",
                    colour: "#222",
                    values: total,
                },
                Series {
                    name: "cover (loop + drop)",
                    colour: "#9aa",
                    values: cover,
                },
                Series {
                    name: "real",
                    colour: "#e07000",
                    values: real,
                },
            ],
        ));
        body.push_str(
            "<p class=\"note\">The total follows the Poisson schedule whatever the users do: a \
             real packet takes the place of a cover packet, so it stays flat while real and \
             cover trade places. A total that rises with activity would show who is active.</p>",
        );
        let latency: Vec<Option<f64>> = history.iter().map(|s| s.latency_s).collect();
        body.push_str(&chart(
            "Delivery latency (mean of the messages confirmed in each 5 s)",
            "s",
            &[Series {
                name: "latency",
                colour: "#3060c0",
                values: latency,
            }],
        ));
    }
    if !nodes.is_empty() {
        let fwd: Vec<Option<f64>> = history.iter().map(|s| Some(s.forwarded_per_s)).collect();
        let drop: Vec<Option<f64>> = history.iter().map(|s| Some(s.dropped_per_s)).collect();
        let queued: Vec<Option<f64>> = history.iter().map(|s| Some(s.queued as f64)).collect();
        body.push_str(&chart(
            "Packets forwarded and dropped per second by this process's nodes",
            "/s",
            &[
                Series {
                    name: "forwarded",
                    colour: "#208040",
                    values: fwd,
                },
                Series {
                    name: "dropped",
                    colour: "#c03030",
                    values: drop,
                },
            ],
        ));
        body.push_str(&chart(
            "Packets waiting in the nodes' queues",
            "",
            &[Series {
                name: "queued",
                colour: "#805090",
                values: queued,
            }],
        ));
        let rows: Vec<Vec<String>> = nodes
            .iter()
            .map(|n| {
                let g = n.probe.gauges();
                vec![
                    n.label.clone(),
                    g.links_in.to_string(),
                    g.links_out.to_string(),
                    n.stats.link_errors.load(Relaxed).to_string(),
                    n.stats.links_refused.load(Relaxed).to_string(),
                    g.ingress_queue.to_string(),
                    g.delay_queue.to_string(),
                    g.link_queue.to_string(),
                ]
            })
            .collect();
        body.push_str("<h2>Links and queues</h2>");
        body.push_str(&table(
            &[
                "node",
                "links in",
                "links out",
                "link errors",
                "links refused",
                "ingress queue",
                "delay queue",
                "link queue",
            ],
            &rows,
        ));
    }
    if !gateways.is_empty() {
        let rows: Vec<Vec<String>> = gateways
            .iter()
            .map(|g| {
                let (out, inn, rejected) = g.peering.as_ref().map_or((0, 0, 0), |p| {
                    (
                        p.messages_out(),
                        p.messages_in(),
                        p.drops().values().sum::<u64>(),
                    )
                });
                let (delivered, failed) = g.client.as_ref().map_or((0, 0), |c| {
                    (
                        c.stats.delivered.load(Relaxed),
                        c.stats.failed.load(Relaxed),
                    )
                });
                vec![
                    g.label.clone(),
                    out.to_string(),
                    inn.to_string(),
                    rejected.to_string(),
                    delivered.to_string(),
                    failed.to_string(),
                ]
            })
            .collect();
        body.push_str("<h2>Peering</h2>");
        body.push_str(&table(
            &[
                "gateway",
                "messages to peers",
                "messages from peers",
                "rejected",
                "delivered",
                "failed",
            ],
            &rows,
        ));
    }
    if !dirs.is_empty() {
        let rows: Vec<Vec<String>> = dirs
            .iter()
            .map(|d| {
                let g = d.probe.gauges();
                vec![
                    d.label.clone(),
                    g.epoch.to_string(),
                    format!("{} of {}", g.signatures, g.threshold),
                    g.nodes.to_string(),
                    g.gateways.to_string(),
                ]
            })
            .collect();
        body.push_str("<h2>Directory</h2>");
        body.push_str(&table(
            &[
                "authority",
                "epoch",
                "signatures",
                "nodes",
                "gateways (peers)",
            ],
            &rows,
        ));
    }
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{}\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>mixgate status</title><style>{STYLE}</style></head>\
         <body data-samples=\"{}\"><h1>mixgate status</h1>\
         <p class=\"note\">The last hour, sampled every {} s ({} samples so far). \
         Prometheus metrics: <a href=\"/metrics\">/metrics</a>.</p>{body}</body></html>",
        SAMPLE.as_secs(),
        history.len(),
        SAMPLE.as_secs(),
        history.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full hour of samples: the page's weight stays small, it has no script and links
    /// nothing outside itself.
    #[test]
    fn a_full_hour_renders_without_scripts_or_external_assets() {
        let sources = Sources::default();
        let history: Vec<Sample> = (0..KEEP)
            .map(|i| Sample {
                t: i as f64 * 5.0,
                real_per_s: (i % 7) as f64,
                cover_per_s: 10.0 - (i % 7) as f64,
                latency_s: (i % 3 == 0).then_some(1.5),
                delivered: 1,
                forwarded_per_s: 30.0,
                dropped_per_s: 0.0,
                queued: i % 5,
                links: 4,
            })
            .collect();
        let page = render(&sources, &history);
        assert!(page.contains("data-samples=\"720\""));
        assert!(!page.contains("<script"));
        assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("src="));
        // No sources registered: no charts, only the header.
        assert!(!page.contains("<polyline"));
        // The charts of a process with gateways and nodes (7 series over 4 charts), full hour.
        let v = |f: fn(&Sample) -> f64| history.iter().map(|s| Some(f(s))).collect::<Vec<_>>();
        let series = |n: usize| {
            (0..n)
                .map(|_| Series {
                    name: "x",
                    colour: "#000",
                    values: v(|s| s.real_per_s),
                })
                .collect::<Vec<_>>()
        };
        let charts: usize = [3, 1, 2, 1]
            .iter()
            .map(|n| chart("title", "/s", &series(*n)).len())
            .sum();
        assert!(charts < 200_000, "{charts} bytes of charts");
        eprintln!(
            "status page: {} bytes without sources; charts of a full hour: {charts} bytes",
            page.len()
        );
    }

    #[test]
    fn gaps_in_a_series_split_the_line() {
        let svg = chart(
            "t",
            "s",
            &[Series {
                name: "a",
                colour: "#000",
                values: vec![Some(1.0), Some(2.0), None, Some(1.0), Some(3.0)],
            }],
        );
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
    }
}
