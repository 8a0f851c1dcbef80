//! The leader-epoch cache: for every leader epoch that wrote to this log, the first
//! offset it wrote (Kafka's `LeaderEpochFileCache`, KIP-101/279).
//!
//! A follower asks the leader where its last epoch ends; the leader answers from
//! this cache, and the follower truncates what the leader does not have. The cache
//! follows the log: an epoch enters it when the first batch stamped with it is
//! appended, truncating the log's end removes the epochs that started past the new
//! end, and retention moves the earliest epoch's start up to the log start.
//!
//! The checkpoint (`leader-epoch-checkpoint`, Kafka's text format: version line,
//! count line, then `epoch start_offset` lines) is rewritten atomically whenever the
//! cache changes. A new epoch is written down *before* its first batch is appended,
//! so after a crash the checkpoint may name an epoch whose batch never made it to
//! disk; opening the log drops entries that start at or past the log end.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The checkpoint's file name inside a partition directory.
pub const EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// Version of the checkpoint's text format (Kafka's is 0).
const EPOCH_CHECKPOINT_VERSION: u32 = 0;
/// Entries a checkpoint may hold before it is refused as damaged.
pub const EPOCH_ENTRIES_MAX: usize = 1 << 20;
/// No epoch (Kafka's UNDEFINED_EPOCH).
pub const UNDEFINED_EPOCH: i32 = -1;
/// No offset (Kafka's UNDEFINED_EPOCH_OFFSET).
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// One leader epoch and the first offset it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Leader epochs in increasing order of both epoch and start offset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch that wrote to the log.
    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset`; true if the cache changed.
    /// An epoch at or below the latest is already known (a later batch of the same
    /// leader, or a stale one) and changes nothing; entries starting at or past
    /// `start_offset` are superseded (the log was rewritten there).
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        if self.latest().is_some_and(|l| epoch <= l.epoch) {
            return false;
        }
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// The log was cut at `end_offset`: epochs that started at or past it go.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        before != self.entries.len()
    }

    /// The log now starts at `log_start`: epochs wholly before it go, and the one
    /// covering it starts there.
    pub fn truncate_from_start(&mut self, log_start: i64) -> bool {
        let covering = self
            .entries
            .iter()
            .rposition(|e| e.start_offset <= log_start);
        let Some(i) = covering else {
            return false;
        };
        let changed = i > 0 || self.entries[i].start_offset != log_start;
        self.entries.drain(..i);
        self.entries[0].start_offset = log_start;
        changed
    }

    /// Where `requested` ends in this log, as Kafka's OffsetForLeaderEpoch answers:
    /// `(epoch, end offset)` where `epoch` is the largest known epoch at or below
    /// `requested` and the end offset is the start of the next known epoch (the log
    /// end for the latest). Unknown (`UNDEFINED_EPOCH`, `UNDEFINED_EPOCH_OFFSET`)
    /// when `requested` is undefined or newer than every known epoch; for a
    /// `requested` older than every known epoch, `requested` and the earliest start.
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if self.latest().is_some_and(|l| l.epoch == requested) {
            return (requested, log_end);
        }
        let Some(higher) = self.entries.iter().find(|e| e.epoch > requested) else {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        };
        match self.entries.iter().rev().find(|e| e.epoch <= requested) {
            Some(floor) => (floor.epoch, higher.start_offset),
            None => (requested, higher.start_offset),
        }
    }

    /// Kafka's text format.
    pub fn encode(&self) -> String {
        let mut out = format!("{EPOCH_CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            out.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        out
    }

    /// Parses a checkpoint; `Err` names what is wrong. Entries must increase in
    /// both epoch and offset.
    pub fn decode(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        let version = lines.next().ok_or("empty checkpoint")?;
        if version.trim() != EPOCH_CHECKPOINT_VERSION.to_string() {
            return Err(format!("unknown checkpoint version {version:?}"));
        }
        let count: usize = lines
            .next()
            .ok_or("no entry count")?
            .trim()
            .parse()
            .map_err(|e| format!("entry count: {e}"))?;
        if count > EPOCH_ENTRIES_MAX {
            return Err(format!("{count} entries exceed {EPOCH_ENTRIES_MAX}"));
        }
        let mut cache = EpochCache::default();
        for i in 0..count {
            let line = lines.next().ok_or(format!("entry {i} missing"))?;
            let mut parts = line.split_whitespace();
            let (Some(epoch), Some(offset), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("entry {i}: {line:?} is not `epoch offset`"));
            };
            let epoch: i32 = epoch.parse().map_err(|e| format!("entry {i}: {e}"))?;
            let start_offset: i64 = offset.parse().map_err(|e| format!("entry {i}: {e}"))?;
            let ordered = cache
                .latest()
                .is_none_or(|l| epoch > l.epoch && start_offset >= l.start_offset);
            if epoch < 0 || start_offset < 0 || !ordered {
                return Err(format!("entry {i}: ({epoch}, {start_offset}) out of order"));
            }
            cache.entries.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return Err("bytes after the last entry".into());
        }
        Ok(cache)
    }
}

/// The checkpoint's path in a partition directory.
pub fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join(EPOCH_CHECKPOINT_FILE)
}

/// Reads a partition's checkpoint: empty when there is none; a damaged one is
/// reported and read as empty (the epochs of later appends are still recorded, and
/// a follower asking about an older epoch then truncates to what the leader says).
pub fn load(dir: &Path) -> Result<EpochCache, String> {
    match std::fs::read_to_string(checkpoint_path(dir)) {
        Ok(text) => EpochCache::decode(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(EpochCache::default()),
        Err(e) => Err(e.to_string()),
    }
}

/// Replaces the checkpoint atomically: temporary file, fsync, rename, directory
/// fsync. Leader changes are rare, so this small synchronous write is not on the
/// per-batch path.
pub fn store(dir: &Path, cache: &EpochCache) -> std::io::Result<()> {
    let path = checkpoint_path(dir);
    let tmp = dir.join(format!("{EPOCH_CHECKPOINT_FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(cache.encode().as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let mut c = EpochCache::default();
        for &(e, o) in entries {
            assert!(c.assign(e, o));
        }
        c
    }

    #[test]
    fn assign_keeps_only_newer_epochs_and_supersedes_rewritten_starts() {
        let mut c = cache(&[(0, 0), (2, 10)]);
        assert!(!c.assign(2, 15), "same epoch: already known");
        assert!(!c.assign(1, 20), "older epoch: stale");
        assert!(!c.assign(-1, 20), "undefined");
        assert!(c.assign(5, 8), "rewritten from 8");
        assert_eq!(c.entries(), &cache(&[(0, 0), (5, 8)]).entries);
    }

    #[test]
    fn end_offset_for_answers_as_kafka() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert_eq!(c.end_offset_for(-1, 40), (-1, -1));
        assert_eq!(c.end_offset_for(4, 40), (4, 40), "latest: log end");
        assert_eq!(c.end_offset_for(3, 40), (3, 25));
        assert_eq!(c.end_offset_for(2, 40), (1, 10), "unknown: the floor epoch");
        assert_eq!(c.end_offset_for(0, 40), (0, 0), "older than all");
        assert_eq!(c.end_offset_for(9, 40), (-1, -1), "newer than all");
        assert_eq!(EpochCache::default().end_offset_for(0, 5), (-1, -1));
    }

    #[test]
    fn truncation_from_either_end() {
        let mut c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert!(c.truncate_from_end(25));
        assert_eq!(
            c.latest(),
            Some(EpochEntry {
                epoch: 3,
                start_offset: 10
            })
        );
        assert!(!c.truncate_from_end(30));
        let mut c = cache(&[(1, 0), (3, 10), (4, 25)]);
        assert!(c.truncate_from_start(12));
        assert_eq!(c.entries(), &cache(&[(3, 12), (4, 25)]).entries);
        assert!(!c.truncate_from_start(5), "before the earliest: nothing");
        assert!(c.truncate_from_start(30));
        assert_eq!(c.entries(), &cache(&[(4, 30)]).entries);
    }

    #[test]
    fn the_checkpoint_round_trips_and_refuses_damage() {
        let c = cache(&[(0, 0), (7, 100)]);
        assert_eq!(c.encode(), "0\n2\n0 0\n7 100\n");
        assert_eq!(EpochCache::decode(&c.encode()), Ok(c));
        for bad in [
            "",
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\n1\n0\n",
            "0\n2\n3 10\n2 20\n",
            "0\n1\n0 0\nextra\n",
            "0\n99999999999\n",
        ] {
            assert!(EpochCache::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn store_and_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()), Ok(EpochCache::default()));
        let c = cache(&[(2, 5)]);
        store(dir.path(), &c).expect("store");
        assert_eq!(load(dir.path()), Ok(c));
    }
}
