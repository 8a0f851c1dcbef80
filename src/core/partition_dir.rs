//! A partition directory's identity, and removing the directories of deleted
//! topics.
//!
//! Each topic incarnation has a random id (Kafka's topic id, KIP-516), written into
//! its partitions' directories as `partition.metadata` (Kafka's file name and
//! format: `version: 0` then `topic_id: <id>`). A directory whose file names another
//! id belongs to a deleted incarnation of the same name, whatever step of the
//! deletion a crash interrupted: it is removed before the partition opens, so a
//! re-created topic never serves the deleted one's data. A directory without the
//! file was written before topic ids existed and is adopted.
//!
//! Deleted directories are first renamed to a short hidden name in the data
//! directory (`.delete-<nanos>-<n>`; appending a suffix to a 249-character topic's
//! directory name would pass the file system's 255-byte limit), then removed; a
//! start-up sweep removes any a crash left behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{info, warn};

/// The identity file in each partition directory.
pub const PARTITION_METADATA: &str = "partition.metadata";
/// Prefix of a deleted directory waiting to be removed.
pub const DELETE_PREFIX: &str = ".delete-";
/// The suffix older versions appended to a deleted directory's name.
const LEGACY_DELETE_SUFFIX: &str = ".delete";

/// The identity file's text for `topic_id`.
pub fn format(topic_id: &str) -> String {
    format!("version: 0\ntopic_id: {topic_id}\n")
}

/// The topic id a `partition.metadata` text names, if it is well formed.
pub fn parse(text: &str) -> Option<&str> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "version: 0" {
        return None;
    }
    let id = lines.next()?.trim().strip_prefix("topic_id:")?.trim();
    (!id.is_empty()).then_some(id)
}

/// What a partition directory holds, for the incarnation with `topic_id`.
#[derive(Debug, PartialEq, Eq)]
pub enum DirState {
    /// No directory, or one without a readable identity: use (and mark) it.
    Unmarked,
    /// This incarnation's.
    Ours,
    /// A deleted incarnation's: remove it first.
    Stale(String),
}

/// Reads the identity of `dir`.
pub fn check(dir: &Path, topic_id: &str) -> DirState {
    match std::fs::read_to_string(dir.join(PARTITION_METADATA)) {
        Ok(text) => match parse(&text) {
            Some(id) if id == topic_id => DirState::Ours,
            Some(id) => DirState::Stale(id.to_string()),
            None => DirState::Unmarked,
        },
        Err(_) => DirState::Unmarked,
    }
}

/// Writes this incarnation's identity into `dir` (atomically: a temporary file then
/// a rename). Not fsynced: a directory that loses it after a crash was this
/// incarnation's (stale ones were removed before it was created) and is marked
/// again at the next open.
pub fn mark(dir: &Path, topic_id: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!("{PARTITION_METADATA}.tmp"));
    std::fs::write(&tmp, format(topic_id))?;
    std::fs::rename(&tmp, dir.join(PARTITION_METADATA))
}

/// Renames `dir` to a short hidden name in `data_dir`, then removes it. Returns
/// whether it is gone (or never existed).
pub fn remove(data_dir: &Path, dir: &Path) -> bool {
    if !dir.exists() {
        return true;
    }
    let doomed = doomed_name(data_dir);
    if let Err(e) = std::fs::rename(dir, &doomed) {
        warn!(dir = %dir.display(), error = %e, "cannot rename a deleted partition's directory");
        return false;
    }
    if let Err(e) = std::fs::remove_dir_all(&doomed) {
        // The start-up sweep removes it.
        warn!(dir = %doomed.display(), error = %e, "cannot remove a deleted partition's directory");
    }
    true
}

fn doomed_name(data_dir: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = crate::time::now_nanos();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    data_dir.join(format!("{DELETE_PREFIX}{nanos:x}-{n}"))
}

/// The topic and partition a data-directory entry is named for (`<topic>-<n>`).
pub fn parse_dir_name(name: &str) -> Option<(&str, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    if topic.is_empty() || partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((topic, partition.parse().ok()?))
}

/// Whether the metadata names partition `n` of a topic.
pub type KnownPartition<'a> = &'a dyn Fn(&str, i32) -> bool;

/// At start-up: removes deleted directories a crash left behind, and, when
/// `is_partition` is given (the metadata was read from its file, so it is the
/// truth), every partition directory it does not name.
pub fn sweep(data_dir: &Path, is_partition: Option<KnownPartition<'_>>) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if !path.is_dir() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(DELETE_PREFIX) || name.ends_with(LEGACY_DELETE_SUFFIX) {
            info!(dir = %path.display(), "removing the directory of a deleted topic");
            if let Err(err) = std::fs::remove_dir_all(&path) {
                warn!(dir = %path.display(), error = %err, "cannot remove");
            }
            continue;
        }
        let orphan = match (is_partition, parse_dir_name(&name)) {
            (Some(known), Some((topic, p))) => !known(topic, p),
            _ => false,
        };
        if orphan {
            info!(dir = %path.display(), "removing the directory of a partition the metadata does not name (a deletion a crash interrupted)");
            remove(data_dir, &path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_files_round_trip_and_bad_ones_are_unmarked() {
        assert_eq!(parse(&format("abc123")), Some("abc123"));
        for bad in [
            "",
            "version: 1\ntopic_id: x\n",
            "version: 0\n",
            "version: 0\ntopic_id: \n",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check(dir.path(), "a"), DirState::Unmarked);
        mark(dir.path(), "a").unwrap();
        assert_eq!(check(dir.path(), "a"), DirState::Ours);
        assert_eq!(check(dir.path(), "b"), DirState::Stale("a".into()));
    }

    #[test]
    fn directory_names_parse_at_the_last_dash() {
        assert_eq!(parse_dir_name("my-topic-12"), Some(("my-topic", 12)));
        assert_eq!(
            parse_dir_name("__consumer_offsets-0"),
            Some(("__consumer_offsets", 0))
        );
        for bad in ["lost+found", "t-", "-3", "t-x"] {
            assert_eq!(parse_dir_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_249_character_topics_directory_is_removed_and_the_sweep_finishes_the_rest() {
        let data = tempfile::tempdir().unwrap();
        let long = format!("{}-0", "t".repeat(249));
        let dir = data.path().join(&long);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("00000000000000000000.log"), b"old").unwrap();
        assert!(remove(data.path(), &dir));
        assert!(!dir.exists());
        // Leftovers: a renamed directory, a legacy one, an orphan; a known partition stays.
        for name in [".delete-1-0", "old-0.delete", "gone-3", "kept-0"] {
            std::fs::create_dir(data.path().join(name)).unwrap();
        }
        sweep(data.path(), Some(&|t: &str, p: i32| t == "kept" && p == 0));
        let left: Vec<String> = std::fs::read_dir(data.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["kept-0"]);
    }
}
