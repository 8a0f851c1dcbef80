//! Producer-state snapshot files in a partition directory: `<offset:020>.snapshot`
//! (Kafka's name and idea), each the idempotent producers' state with every batch
//! below `offset` in it (`ProducerState::encode`). A partition writes one after a
//! segment roll, when no idempotent batch is being appended, and at a clean close;
//! at first use it loads the newest one at or below the log end and replays only
//! the batches after it. The newest two are kept.
//!
//! Written through a temporary file and a rename, not fsynced: a snapshot lost or
//! torn by a crash fails its checksum or is missing, and the partition falls back
//! to an older one (or to the log), which is correct, only slower.

use std::path::{Path, PathBuf};

use glommio::io::BufferedFile;
use tracing::{debug, warn};

use crate::core::producer_state::ProducerState;

const SUFFIX: &str = ".snapshot";
/// Snapshots kept per partition.
const SNAPSHOTS_KEPT: usize = 2;

fn path_for(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SUFFIX}"))
}

/// Offsets of the snapshots in `dir`, oldest first.
pub fn list(dir: &Path) -> Vec<i64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut offsets: Vec<i64> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(SUFFIX)?;
            (stem.len() == 20).then(|| stem.parse().ok())?
        })
        .collect();
    offsets.sort_unstable();
    offsets
}

/// The newest readable snapshot at or below `max_offset`: its offset and state.
pub async fn load_newest(
    dir: &Path,
    offsets: &[i64],
    max_offset: i64,
) -> Option<(i64, ProducerState)> {
    for &offset in offsets.iter().rev().filter(|o| **o <= max_offset) {
        let path = path_for(dir, offset);
        let read = async {
            let f = BufferedFile::open(&path).await?;
            let len = f.file_size().await?;
            let data = f
                .read_at(0, usize::try_from(len).unwrap_or(usize::MAX))
                .await?;
            let _ = f.close().await;
            Ok::<_, glommio::GlommioError<()>>(data.to_vec())
        };
        match read
            .await
            .map_err(|e| e.to_string())
            .and_then(|b| ProducerState::decode(&b))
        {
            Ok((at, state)) if at == offset => return Some((at, state)),
            Ok((at, _)) => {
                warn!(file = %path.display(), at, "producer snapshot names another offset; ignored")
            }
            Err(e) => {
                warn!(file = %path.display(), error = %e, "producer snapshot unreadable; ignored")
            }
        }
    }
    None
}

/// At a partition's open, before anything reads them: removes the snapshots
/// above the recovered log end. Such a snapshot counts batches a crash lost, and
/// once the log grows past it again (with what the leader sends, which may
/// differ) it would be loaded as if it described them.
pub fn discard_above_at_open(dir: &Path, log_end: i64) {
    for offset in list(dir).into_iter().filter(|o| *o > log_end) {
        let path = path_for(dir, offset);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                debug!(file = %path.display(), log_end, "producer state snapshot past the log end removed")
            }
            Err(e) => {
                warn!(file = %path.display(), error = %e, "cannot remove a producer state snapshot past the log end")
            }
        }
    }
}

/// Removes the snapshots above `offset` (all of them with `None`): the log they
/// describe was cut back below them, and a snapshot of batches that are no longer
/// there must never be loaded. `offsets` is the partition's list, kept up to date.
pub async fn remove_above(dir: &Path, offsets: &mut Vec<i64>, offset: Option<i64>) {
    let keep = |o: &i64| offset.is_some_and(|max| *o <= max);
    for o in offsets.iter().filter(|o| !keep(o)) {
        let path = path_for(dir, *o);
        if let Err(e) = glommio::io::remove(&path).await {
            warn!(file = %path.display(), error = %e, "cannot remove a producer state snapshot past the log end");
        }
    }
    offsets.retain(keep);
}

/// Writes the snapshot of `state` at `offset` and removes all but the newest
/// `SNAPSHOTS_KEPT`; `offsets` is the partition's list, kept up to date.
pub async fn write(dir: &Path, offsets: &mut Vec<i64>, offset: i64, state: &ProducerState) {
    let path = path_for(dir, offset);
    let tmp = dir.join(format!("{offset:020}{SUFFIX}.tmp"));
    let bytes = state.encode(offset);
    let written = async {
        let f = BufferedFile::create(&tmp).await?;
        f.write_at(bytes, 0).await?;
        f.close().await?;
        glommio::io::rename(&tmp, &path).await
    };
    if let Err(e) = written.await {
        warn!(file = %path.display(), error = %e, "cannot write a producer state snapshot");
        return;
    }
    debug!(file = %path.display(), producers = state.len(), "producer state snapshot written");
    if !offsets.contains(&offset) {
        offsets.push(offset);
        offsets.sort_unstable();
    }
    while offsets.len() > SNAPSHOTS_KEPT {
        let old = offsets.remove(0);
        let _ = glommio::io::remove(path_for(dir, old)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_snapshots(offsets: &[i64]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for o in offsets {
            std::fs::write(path_for(dir.path(), *o), b"x").unwrap();
        }
        dir
    }

    #[test]
    fn snapshots_past_the_recovered_log_end_are_removed_at_open() {
        let dir = with_snapshots(&[100, 200, 300]);
        discard_above_at_open(dir.path(), 200);
        assert_eq!(list(dir.path()), [100, 200]);
        discard_above_at_open(dir.path(), 50);
        assert_eq!(list(dir.path()), Vec::<i64>::new());
    }

    #[test]
    fn a_cut_back_removes_the_snapshots_above_it_or_all_of_them() {
        crate::sync::run_on_executor(|| async {
            let dir = with_snapshots(&[100, 200, 300]);
            let mut offsets = list(dir.path());
            remove_above(dir.path(), &mut offsets, Some(250)).await;
            assert_eq!(offsets, [100, 200]);
            assert_eq!(list(dir.path()), [100, 200]);
            remove_above(dir.path(), &mut offsets, None).await;
            assert!(offsets.is_empty());
            assert!(list(dir.path()).is_empty());
        });
    }
}
