//! PNG line plots (plotters, bitmap backend; text in DejaVu Sans from the system's fonts).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontStyle;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn register_font() -> bool {
    match std::fs::read(FONT) {
        Ok(bytes) => {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        }
        Err(_) => false,
    }
}

/// Two panels side by side: entropy (bits) and best-guess probability, one line per series.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    entropy: &[(String, Vec<(f64, f64)>)],
    best: &[(String, Vec<(f64, f64)>)],
) {
    if !register_font() {
        eprintln!("no font at {FONT}: plot {} skipped", path.display());
        return;
    }
    let root = BitMapBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).expect("fill");
    let root = root.titled(title, ("sans-serif", 24)).expect("title");
    let (left, right) = root.split_horizontally(600);
    let colors = [BLUE, RED, GREEN, MAGENTA];
    let x_max = entropy
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(0.0, f64::max);
    let x_min = entropy
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(f64::MAX, f64::min);
    let best_max = best
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(0.01, f64::max)
        * 1.2;
    type Panel<'a, A> = (
        &'a A,
        &'a [(String, Vec<(f64, f64)>)],
        &'a str,
        f64,
        SeriesLabelPosition,
    );
    let panels: [Panel<'_, DrawingArea<_, _>>; 2] = [
        (
            &left,
            entropy,
            "sender entropy (bits; max 9.97)",
            10.0,
            SeriesLabelPosition::LowerRight,
        ),
        (
            &right,
            best,
            "adversary's best-guess probability",
            best_max,
            SeriesLabelPosition::UpperRight,
        ),
    ];
    for (area, series, y_label, y_max, pos) in panels {
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x_min..x_max, 0.0..y_max)
            .expect("chart");
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(("sans-serif", 14))
            .draw()
            .expect("mesh");
        for (i, (name, pts)) in series.iter().enumerate() {
            let c = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                .expect("line")
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c));
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
                .expect("points");
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .position(pos)
            .draw()
            .expect("legend");
    }
    root.present().expect("write png");
}
