//! The live progress line: rate, produce p99 so far, elapsed and planned time.
//! Only on a terminal; quiet when stderr is a file or a pipe.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::config::RunConfig;

const EVERY: Duration = Duration::from_millis(500);

pub struct Progress {
    enabled: bool,
    planned: Option<Duration>,
    last: Option<(Duration, u64)>,
    printed: bool,
}

impl Progress {
    pub fn new(wanted: bool, config: &RunConfig) -> Self {
        Self {
            enabled: wanted && std::io::stderr().is_terminal(),
            planned: config
                .messages
                .is_none()
                .then(|| Duration::from_secs_f64(config.duration_s)),
            last: None,
            printed: false,
        }
    }

    /// `count`: records done so far; `p99_us`: produce p99 so far (0: unknown).
    pub fn update(&mut self, elapsed: Duration, count: u64, p99_us: u64) {
        if !self.enabled {
            return;
        }
        let (t0, c0) = self.last.unwrap_or_default();
        if elapsed < t0 + EVERY {
            return;
        }
        let rate = (count - c0) as f64 / (elapsed - t0).as_secs_f64();
        self.last = Some((elapsed, count));
        let remaining = self
            .planned
            .map_or(String::new(), |p| format!(" / {:.0} s", p.as_secs_f64()));
        let p99 = if p99_us == 0 {
            "-".to_string()
        } else {
            format!("{:.3} ms", p99_us as f64 / 1000.0)
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r  {:6.1} s{remaining}  {rate:>12.0} records/s  p99 so far {p99:<12}",
            elapsed.as_secs_f64()
        );
        let _ = err.flush();
        self.printed = true;
    }

    pub fn finish(&mut self) {
        if self.printed {
            eprintln!();
        }
    }
}
