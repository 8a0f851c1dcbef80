//! `ringlog-bench compare A.json B.json ...`: runs side by side, each figure with its
//! ratio to the first run's.

use std::fmt::Write as _;

use crate::summary::{Percentiles, Summary};

/// One row of the comparison: a metric and its value in each run (`None` when a run
/// did not measure it).
#[derive(Debug, PartialEq)]
pub struct Row {
    pub metric: String,
    pub values: Vec<Option<f64>>,
}

impl Row {
    /// Each value divided by the first run's; `None` where either is missing or the
    /// first is zero.
    pub fn ratios(&self) -> Vec<Option<f64>> {
        let base = self.values.first().copied().flatten();
        self.values
            .iter()
            .map(|v| match (base, v) {
                (Some(b), Some(v)) if b != 0.0 => Some(v / b),
                _ => None,
            })
            .collect()
    }
}

/// The rows compared: throughput, then each latency percentile in milliseconds.
pub fn rows(runs: &[Summary]) -> Vec<Row> {
    let mut out = vec![
        Row {
            metric: "records/s".into(),
            values: runs
                .iter()
                .map(|r| Some(r.throughput.records_per_s))
                .collect(),
        },
        Row {
            metric: "MB/s".into(),
            values: runs.iter().map(|r| Some(r.throughput.mb_per_s)).collect(),
        },
    ];
    type Pick = fn(&Percentiles) -> u64;
    let picks: [(&str, Pick); 6] = [
        ("p50", |p| p.p50),
        ("p90", |p| p.p90),
        ("p99", |p| p.p99),
        ("p99.9", |p| p.p999),
        ("p99.99", |p| p.p9999),
        ("max", |p| p.max),
    ];
    for (kind, get) in [
        (
            "produce",
            (|s: &Summary| s.latency_us.produce.clone()) as fn(&Summary) -> Option<Percentiles>,
        ),
        ("e2e", |s: &Summary| s.latency_us.e2e.clone()),
    ] {
        let hists: Vec<Option<Percentiles>> = runs.iter().map(get).collect();
        if hists.iter().all(Option::is_none) {
            continue;
        }
        for (name, pick) in picks {
            out.push(Row {
                metric: format!("{kind} {name} ms"),
                values: hists
                    .iter()
                    .map(|h| h.as_ref().map(|p| pick(p) as f64 / 1000.0))
                    .collect(),
            });
        }
    }
    out
}

/// The comparison table as text: a column per run, then a ratio column per later run.
pub fn table(labels: &[String], runs: &[Summary]) -> String {
    let rows = rows(runs);
    let width = labels.iter().map(|l| l.len()).max().unwrap_or(0).max(12);
    let mut s = String::new();
    let _ = write!(s, "{:<20}", "metric");
    for l in labels {
        let _ = write!(s, " {l:>width$}");
    }
    for l in labels.iter().skip(1) {
        let ratio = format!("{l}/{}", labels[0]);
        let _ = write!(s, " {ratio:>width$}");
    }
    s.push('\n');
    let fmt =
        |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    for row in &rows {
        let _ = write!(s, "{:<20}", row.metric);
        let digits = if row.metric.ends_with("ms") { 3 } else { 1 };
        for v in &row.values {
            let _ = write!(s, " {:>width$}", fmt(*v, digits));
        }
        for r in row.ratios().iter().skip(1) {
            let _ = write!(s, " {:>width$}", fmt(*r, 2));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::sample_summary;

    #[test]
    fn ratios_are_to_the_first_run() {
        let a = sample_summary();
        let mut b = sample_summary();
        b.throughput.records_per_s = 2500.0;
        b.throughput.mb_per_s = 2.56;
        if let Some(p) = b.latency_us.produce.as_mut() {
            p.p99 /= 2;
        }
        let rows = rows(&[a.clone(), b]);
        let rec = rows.iter().find(|r| r.metric == "records/s").unwrap();
        assert_eq!(rec.ratios(), vec![Some(1.0), Some(2.5)]);
        let p99 = rows.iter().find(|r| r.metric == "produce p99 ms").unwrap();
        let r = p99.ratios()[1].unwrap();
        assert!((r - 0.5).abs() < 0.01, "{r}");
        assert!(
            rows.iter().all(|r| !r.metric.starts_with("e2e")),
            "no run measured e2e"
        );
    }

    #[test]
    fn a_run_without_a_measure_shows_a_dash_and_no_ratio() {
        let a = sample_summary();
        let mut b = sample_summary();
        b.latency_us.produce = None;
        let rows = rows(&[a.clone(), b.clone()]);
        let p50 = rows.iter().find(|r| r.metric == "produce p50 ms").unwrap();
        assert_eq!(p50.values[1], None);
        assert_eq!(p50.ratios()[1], None);
        let t = table(&["a".into(), "b".into()], &[a, b]);
        let line = t.lines().find(|l| l.starts_with("produce p50 ms")).unwrap();
        assert!(line.trim_end().ends_with('-'), "{line}");
        assert!(t.lines().next().unwrap().contains("b/a"), "{t}");
    }

    #[test]
    fn the_table_parses_back_to_the_figures() {
        let a = sample_summary();
        let mut b = sample_summary();
        b.throughput.records_per_s = 500.0;
        let t = table(&["base".into(), "new".into()], &[a, b]);
        let line = t.lines().find(|l| l.starts_with("records/s")).unwrap();
        let cols: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .map(|c| c.parse().unwrap())
            .collect();
        assert_eq!(cols, vec![1000.0, 500.0, 0.5]);
    }
}
