//! Persistence of cluster metadata: one JSON file replaced atomically (write to a
//! temporary file, fsync it, rename over the old one, fsync the directory), so a crash
//! leaves either the old or the new metadata, never a mix.
//!
//! Runs on the coordination executor only, with std file calls: metadata changes are
//! rare and that executor serves no data path.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::metadata::ClusterMetadata;

/// File name of the metadata in the data directory.
pub const METADATA_FILE: &str = "cluster-metadata.json";

/// Metadata file I/O failed or its content is unreadable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt metadata file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Loads the metadata of `data_dir`, or `None` if it has none yet.
pub fn load(data_dir: &Path) -> Result<Option<ClusterMetadata>, StoreError> {
    let path = data_dir.join(METADATA_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", &path)(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            path,
            reason: e.to_string(),
        })
}

/// Replaces the metadata of `data_dir` atomically and durably.
pub fn save(data_dir: &Path, metadata: &ClusterMetadata) -> Result<(), StoreError> {
    let path = data_dir.join(METADATA_FILE);
    let text = serde_json::to_vec_pretty(metadata).map_err(|e| StoreError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    write_atomically(&path, &text)
}

/// Writes `bytes` to `path` through a fsynced temporary file and a rename, then
/// fsyncs the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    f.write_all(bytes).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("fsync", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io("rename", path))?;
    sync_dir(dir)
}

/// fsyncs a directory so a rename or unlink in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metadata::{BrokerId, BrokerInfo};

    #[test]
    fn save_then_load_round_trips_and_garbage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let mut md = ClusterMetadata::new(
            "c".into(),
            vec![BrokerInfo {
                id: BrokerId(0),
                host: "h".into(),
                port: 1,
                shards: 1,
                kafka: None,
            }],
        );
        let t = md.plan_topic("t", 2, 1, BTreeMap::new()).unwrap();
        md.add_topic(t);
        save(dir.path(), &md).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(md));
        fs::write(dir.path().join(METADATA_FILE), b"{not json").unwrap();
        assert!(matches!(load(dir.path()), Err(StoreError::Corrupt { .. })));
    }
}
