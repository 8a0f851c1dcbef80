//! HdrHistogram's percentile-distribution text (`.hgrm`), the format
//! `HistogramLogAnalyzer` and the HdrHistogram plotter read. Values are written in
//! milliseconds, as the plotter labels its axis.

use std::io::{self, Write};

use hdrhistogram::Histogram;

/// Writes `h` (recorded in microseconds) as a percentile distribution.
pub fn write(h: &Histogram<u64>, out: &mut impl Write) -> io::Result<()> {
    const SCALE: f64 = 1000.0;
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / SCALE;
        if q < 1.0 {
            writeln!(
                out,
                "{value:12.3} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            )?;
        } else {
            writeln!(out, "{value:12.3} {q:2.12} {total:10}")?;
        }
    }
    let mean = if h.is_empty() { 0.0 } else { h.mean() / SCALE };
    let stdev = if h.is_empty() { 0.0 } else { h.stdev() / SCALE };
    writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
    )?;
    writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / SCALE,
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        h.distinct_values()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_and_climb_to_the_max() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 100).unwrap();
        }
        let mut buf = Vec::new();
        write(&h, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let mut rows = 0;
        let mut last = (0.0f64, 0.0f64, 0u64);
        for line in text
            .lines()
            .skip(2)
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert!(cols.len() == 4 || cols.len() == 3, "{line}");
            let value: f64 = cols[0].parse().unwrap();
            let q: f64 = cols[1].parse().unwrap();
            let total: u64 = cols[2].parse().unwrap();
            assert!(value >= last.0 && q >= last.1 && total >= last.2, "{line}");
            last = (value, q, total);
            rows += 1;
        }
        assert!(rows > 30);
        assert_eq!(last.1, 1.0);
        assert_eq!(last.2, 1000);
        assert!((last.0 - 100.0).abs() < 0.1, "max 100 ms, got {}", last.0);
        assert!(text.contains("#[Max     =      100.0"), "{text}");
        assert!(text.contains("Total count    =         1000"), "{text}");
    }
}
