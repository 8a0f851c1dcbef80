//! Plots with `plotters` (SVG): latency by percentile on a log-scaled percentile axis,
//! as HdrHistogram's plotter draws it (x = log10(1 / (1 - percentile)), so 90 %, 99 %,
//! 99.9 % ... are equally spaced), above throughput over time.

use std::path::Path;

use plotters::prelude::*;

use crate::summary::{Percentiles, Summary};

/// Highest percentile the x axis shows: 99.9999 %.
const X_MAX: f64 = 6.0;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{0}: only SVG plots are built (give a path ending in .svg)")]
    Format(String),
    #[error("drawing {path}: {reason}")]
    Draw { path: String, reason: String },
}

/// A named latency curve: (x, milliseconds) points.
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A named throughput series: (seconds, records/s) points.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// The x coordinate of a percentile (0..100) on the log-scaled axis.
pub fn percentile_x(percentile: f64) -> f64 {
    let q = (percentile / 100.0).clamp(0.0, 1.0);
    if q >= 1.0 {
        X_MAX
    } else {
        (1.0 / (1.0 - q)).log10().min(X_MAX)
    }
}

/// The axis label of x: "90%", "99.9%", ...
fn x_label(x: &f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let digits = (x.round() as i32 - 2).max(0) as usize;
    format!("{p:.digits$}%")
}

pub fn curve(label: &str, p: &Percentiles) -> Curve {
    Curve {
        label: label.to_string(),
        points: p
            .distribution
            .iter()
            .map(|&(pct, us)| (percentile_x(pct), us as f64 / 1000.0))
            .collect(),
    }
}

/// The curves and throughput of one run.
pub fn run_plot(path: &Path, s: &Summary) -> Result<(), PlotError> {
    let mut curves = Vec::new();
    if let Some(p) = &s.latency_us.produce {
        curves.push(curve("produce (send -> ack)", p));
    }
    if let Some(p) = &s.latency_us.e2e {
        curves.push(curve("end to end (send -> consume)", p));
    }
    let series = vec![timeline("records/s", s)];
    let title = format!(
        "ringlog-bench {}",
        s.config.workload.as_deref().unwrap_or("custom run")
    );
    draw(path, &title, &curves, &series)
}

/// Every run's curves and throughput in one image.
pub fn compare_plot(path: &Path, labels: &[String], runs: &[Summary]) -> Result<(), PlotError> {
    let mut curves = Vec::new();
    let mut series = Vec::new();
    for (label, s) in labels.iter().zip(runs) {
        if let Some(p) = &s.latency_us.produce {
            curves.push(curve(&format!("{label} produce"), p));
        }
        if let Some(p) = &s.latency_us.e2e {
            curves.push(curve(&format!("{label} e2e"), p));
        }
        series.push(timeline(label, s));
    }
    draw(path, "ringlog-bench compare", &curves, &series)
}

fn timeline(label: &str, s: &Summary) -> Series {
    Series {
        label: label.to_string(),
        points: s
            .timeline
            .iter()
            .map(|p| (p.t_s, p.records_per_s))
            .collect(),
    }
}

fn draw(path: &Path, title: &str, curves: &[Curve], series: &[Series]) -> Result<(), PlotError> {
    let shown = path.display().to_string();
    if path.extension().and_then(|e| e.to_str()) != Some("svg") {
        return Err(PlotError::Format(shown));
    }
    let fail = |e: &dyn std::fmt::Display| PlotError::Draw {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let root = SVGBackend::new(path, (1000, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| fail(&e))?;
    let (top, bottom) = root.split_vertically(560);

    let y_max = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.05;
    let x_max = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max)
        .ceil()
        .min(X_MAX);
    let mut chart = ChartBuilder::on(&top)
        .caption("latency by percentile", ("sans-serif", 16))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&x_label)
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| fail(&e))?;
    for (i, c) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                c.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| fail(&e))?
            .label(c.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    if !curves.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| fail(&e))?;
    }

    let t_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let r_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("throughput over time", ("sans-serif", 16))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..r_max)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("records/s")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| fail(&e))?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| fail(&e))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::sample_summary;

    #[test]
    fn percentiles_map_to_equally_spaced_decades() {
        assert_eq!(percentile_x(0.0), 0.0);
        assert!((percentile_x(90.0) - 1.0).abs() < 1e-9);
        assert!((percentile_x(99.0) - 2.0).abs() < 1e-9);
        assert!((percentile_x(99.9) - 3.0).abs() < 1e-6);
        assert_eq!(percentile_x(100.0), X_MAX);
        assert_eq!(x_label(&0.0), "0%");
        assert_eq!(x_label(&2.0), "99%");
        assert_eq!(x_label(&3.0), "99.9%");
        assert_eq!(x_label(&5.0), "99.999%");
    }

    #[test]
    fn a_run_plot_is_an_svg_with_its_curves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.svg");
        run_plot(&path, &sample_summary()).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("latency by percentile"));
        assert!(svg.contains("produce (send -&gt; ack)") || svg.contains("produce (send -> ack)"));
        assert!(svg.contains("<polyline"), "curves are drawn");
        let err = run_plot(&dir.path().join("run.png"), &sample_summary()).unwrap_err();
        assert!(err.to_string().contains(".svg"), "{err}");
    }

    #[test]
    fn a_compare_plot_holds_every_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cmp.svg");
        let runs = [sample_summary(), sample_summary()];
        compare_plot(&path, &["first".into(), "second".into()], &runs).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("first produce") && svg.contains("second produce"));
    }
}
