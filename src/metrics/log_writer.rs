//! The daemon's log writer: stderr, where a failed write loses the line instead of
//! the process. tracing-subscriber reports a failed write with `eprintln!`, which
//! panics when stderr itself fails, so a log file on a full disk (or a closed pipe)
//! used to bring the broker down with the very condition it should be reporting.
//! Lost lines are counted and exported as `ringlog_log_lines_dropped_total`.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes that failed since the process started (one per lost line or part of one).
static LINES_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log writes that failed since start.
pub fn log_lines_dropped() -> u64 {
    LINES_DROPPED.load(Ordering::Relaxed)
}

/// `MakeWriter` for tracing-subscriber: stderr, never failing.
#[derive(Clone, Copy, Debug, Default)]
pub struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(write_or_count(&mut io::stderr(), buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LossyStderr {
    type Writer = LossyStderr;

    fn make_writer(&'a self) -> Self::Writer {
        LossyStderr
    }
}

/// Writes all of `buf` to `out`, or counts it as dropped; says it took it all.
fn write_or_count(out: &mut impl Write, buf: &[u8]) -> usize {
    if out.write_all(buf).is_err() {
        LINES_DROPPED.fetch_add(1, Ordering::Relaxed);
    }
    buf.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_is_counted_and_reported_as_done() {
        let before = log_lines_dropped();
        assert_eq!(write_or_count(&mut Full, b"a line\n"), 7);
        assert!(log_lines_dropped() > before);
        let mut ok = Vec::new();
        assert_eq!(write_or_count(&mut ok, b"kept\n"), 5);
        assert_eq!(ok, b"kept\n");
    }
}
