//! What one shard's logs share: I/O statistics, the open segment files, and the
//! bound on space allocated ahead of their data. A broker shard makes one and opens
//! every log it owns with it; a log opened alone gets its own.

use std::rc::Rc;

use crate::files::OpenFiles;
use crate::space::SpaceAccount;
use crate::stats::IoStats;

/// Default bound on segment files open at once, per shard (`log.open.files.max`).
pub const OPEN_FILES_MAX_DEFAULT: usize = 1024;
/// Default bound on bytes allocated past the data, per shard
/// (`log.preallocate.max.bytes`).
pub const PREALLOCATED_MAX_BYTES_DEFAULT: u64 = 1 << 30;

#[derive(Clone)]
pub struct LogShared {
    pub stats: Rc<IoStats>,
    pub files: Rc<OpenFiles>,
    pub space: Rc<SpaceAccount>,
}

impl LogShared {
    pub fn new(open_files_max: usize, preallocated_max_bytes: u64) -> Self {
        Self {
            stats: Rc::default(),
            files: OpenFiles::new(open_files_max),
            space: SpaceAccount::new(preallocated_max_bytes),
        }
    }
}

impl Default for LogShared {
    fn default() -> Self {
        Self::new(OPEN_FILES_MAX_DEFAULT, PREALLOCATED_MAX_BYTES_DEFAULT)
    }
}
