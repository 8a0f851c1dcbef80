//! A test-only fault layer under the log: tests make a directory's segment writes or
//! fdatasyncs fail with a chosen errno, to show what the log and the broker above it
//! do with a failing disk. Compiled only for this crate's tests and with the
//! `fault-injection` feature (which the broker's tests turn on); otherwise the
//! checks are empty functions the compiler removes.

use std::io;
use std::path::Path;

/// Which operation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOp {
    /// Data writes to segment files.
    Write,
    /// fdatasync of segment files.
    Sync,
}

#[cfg(any(test, feature = "fault-injection"))]
mod active {
    use super::FaultOp;
    use std::cell::RefCell;
    use std::io;
    use std::path::{Path, PathBuf};

    thread_local! {
        /// Per executor thread: a log belongs to one executor.
        static FAULTS: RefCell<Vec<(PathBuf, FaultOp, i32)>> = const { RefCell::new(Vec::new()) };
    }

    /// From now on, `op` on files under `dir` fails with `errno` (on this thread).
    pub fn inject(dir: &Path, op: FaultOp, errno: i32) {
        FAULTS.with(|f| f.borrow_mut().push((dir.to_path_buf(), op, errno)));
    }

    /// Removes every fault injected under `dir` (on this thread).
    pub fn clear(dir: &Path) {
        FAULTS.with(|f| f.borrow_mut().retain(|(d, _, _)| !d.starts_with(dir)));
    }

    pub(crate) fn injected(path: &Path, op: FaultOp) -> Option<io::Error> {
        FAULTS.with(|f| {
            f.borrow()
                .iter()
                .find(|(d, o, _)| *o == op && path.starts_with(d))
                .map(|(_, _, errno)| io::Error::from_raw_os_error(*errno))
        })
    }
}

#[cfg(any(test, feature = "fault-injection"))]
pub use active::{clear, inject};

/// The error injected for `op` on `path`, if any.
#[inline]
pub(crate) fn injected(path: &Path, op: FaultOp) -> Option<io::Error> {
    #[cfg(any(test, feature = "fault-injection"))]
    {
        active::injected(path, op)
    }
    #[cfg(not(any(test, feature = "fault-injection")))]
    {
        let _ = (path, op);
        None
    }
}
