//! A voter's durable Raft state: one append-only file of frames,
//! `<data dir>/cluster-metadata/raft.log`.
//!
//! Each frame is `len: u32 LE | crc32c(payload): u32 LE | payload`, the payload a
//! kind byte and then either entries (each `len: u32 LE | protobuf Entry`) or a
//! hard state (protobuf). Replaying the frames in order gives the state: an entries
//! frame whose first index is at or below the last one replaces the log from there
//! (a new leader overwrote an unsynced or uncommitted suffix), a hard-state frame
//! replaces the hard state.
//!
//! Frames are buffered by `append` and `set_hard_state` and written with one
//! `write` and one fdatasync by `sync`, the point where Raft may promise them. A
//! crash can therefore tear only the frames of the last sync, which were promised
//! to nobody: at start the file is cut at the first frame that is incomplete or
//! fails its CRC, with a warning naming the bytes cut.
//!
//! Runs on the coordination executor with std file calls, as `metadata::store`
//! does: its writes are rare and small, and that executor serves no data path.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::{Entry, HardState};
use tracing::warn;

use crate::cluster::quorum::{DurableError, DurableState, RaftDurable};

/// The directory of the metadata log in the data dir (no `-N` suffix: it is not a
/// partition directory).
pub const RAFT_DIR: &str = "cluster-metadata";
pub const RAFT_FILE: &str = "raft.log";
/// Largest frame: one Ready's entries are bounded by raft-rs's message size.
pub const FRAME_BYTES_MAX: usize = 64 << 20;

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const HEADER: usize = 8;

/// The durable Raft state of a voter.
pub struct RaftFile {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
}

/// What opening found besides the state.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub frames: usize,
    /// Bytes cut from the end (a torn last write).
    pub cut_bytes: u64,
}

fn io_err(op: &str, path: &Path, e: std::io::Error) -> DurableError {
    DurableError(format!("{op} {}: {e}", path.display()))
}

impl RaftFile {
    /// Opens (or creates) the log under `data_dir` and replays it.
    pub fn open(data_dir: &Path) -> Result<(Self, DurableState, OpenReport), DurableError> {
        let dir = data_dir.join(RAFT_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
        let path = dir.join(RAFT_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io_err("open", &path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io_err("read", &path, e))?;
        let (state, valid, frames) = replay(&bytes)?;
        let cut_bytes = (bytes.len() - valid) as u64;
        if cut_bytes > 0 {
            warn!(path = %path.display(), valid_bytes = valid, cut_bytes, "metadata log ends in a torn or damaged frame; cutting it there");
            file.set_len(valid as u64)
                .and_then(|_| file.sync_all())
                .map_err(|e| io_err("truncate", &path, e))?;
        }
        crate::metadata::store::sync_dir(&dir).map_err(|e| DurableError(e.to_string()))?;
        crate::metadata::store::sync_dir(data_dir).map_err(|e| DurableError(e.to_string()))?;
        Ok((
            Self {
                path,
                file,
                pending: Vec::new(),
            },
            state,
            OpenReport { frames, cut_bytes },
        ))
    }

    fn frame(&mut self, payload: &[u8]) {
        self.pending
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.pending
            .extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        self.pending.extend_from_slice(payload);
    }
}

impl RaftDurable for RaftFile {
    fn append(&mut self, entries: &[Entry]) -> Result<(), DurableError> {
        let mut payload = vec![KIND_ENTRIES];
        for e in entries {
            let bytes = e
                .write_to_bytes()
                .map_err(|err| DurableError(format!("encode entry {}: {err}", e.index)))?;
            payload.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            payload.extend_from_slice(&bytes);
        }
        if payload.len() > FRAME_BYTES_MAX {
            return Err(DurableError(format!(
                "{} bytes of entries in one frame, above {FRAME_BYTES_MAX}",
                payload.len()
            )));
        }
        self.frame(&payload);
        Ok(())
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), DurableError> {
        let mut payload = vec![KIND_HARD_STATE];
        payload.extend_from_slice(
            &hs.write_to_bytes()
                .map_err(|e| DurableError(format!("encode hard state: {e}")))?,
        );
        self.frame(&payload);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), DurableError> {
        if !self.pending.is_empty() {
            self.file
                .write_all(&self.pending)
                .map_err(|e| io_err("write", &self.path, e))?;
            self.pending.clear();
        }
        self.file
            .sync_data()
            .map_err(|e| io_err("fdatasync", &self.path, e))
    }
}

/// Replays frames; returns the state, the length of the valid prefix and the
/// number of frames in it. A frame that is whole and passes its CRC but does not
/// decode is an error: it was written so, and guessing would lose promised state.
fn replay(bytes: &[u8]) -> Result<(DurableState, usize, usize), DurableError> {
    let mut state = DurableState::default();
    let mut at = 0;
    let mut frames = 0;
    while bytes.len() - at >= HEADER {
        let len =
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        if len == 0 || len > FRAME_BYTES_MAX || bytes.len() - at - HEADER < len {
            break;
        }
        let payload = &bytes[at + HEADER..at + HEADER + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        apply_frame(&mut state, payload)
            .map_err(|e| DurableError(format!("metadata log frame at byte {at}: {e}")))?;
        at += HEADER + len;
        frames += 1;
    }
    Ok((state, at, frames))
}

fn apply_frame(state: &mut DurableState, payload: &[u8]) -> Result<(), String> {
    match payload[0] {
        KIND_ENTRIES => {
            let mut rest = &payload[1..];
            while !rest.is_empty() {
                if rest.len() < 4 {
                    return Err("entry length cut short".into());
                }
                let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if rest.len() - 4 < n {
                    return Err("entry longer than its frame".into());
                }
                let e = Entry::parse_from_bytes(&rest[4..4 + n]).map_err(|e| e.to_string())?;
                let first = state.entries.first().map_or(1, |f| f.index);
                let keep = e
                    .index
                    .checked_sub(first)
                    .ok_or("entry index below the log's first")?;
                if keep > state.entries.len() as u64 {
                    return Err(format!(
                        "entry {} leaves a gap after {}",
                        e.index,
                        state.entries.last().map_or(0, |l| l.index)
                    ));
                }
                state.entries.truncate(keep as usize);
                state.entries.push(e);
                rest = &rest[4 + n..];
            }
            Ok(())
        }
        KIND_HARD_STATE => {
            state.hard_state =
                HardState::parse_from_bytes(&payload[1..]).map_err(|e| e.to_string())?;
            Ok(())
        }
        k => Err(format!("unknown frame kind {k}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    fn hs(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..Default::default()
        }
    }

    #[test]
    fn synced_state_survives_reopen_and_overwrites_replace_the_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, state, report) = RaftFile::open(dir.path()).unwrap();
        assert!(state.entries.is_empty());
        assert_eq!(report, OpenReport::default());
        f.append(&[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")])
            .unwrap();
        f.set_hard_state(&hs(1, 1, 2)).unwrap();
        f.sync().unwrap();
        // A new leader in term 2 replaces index 3 onwards.
        f.append(&[entry(3, 2, b"C"), entry(4, 2, b"D")]).unwrap();
        f.set_hard_state(&hs(2, 3, 3)).unwrap();
        f.sync().unwrap();
        // Not synced: lost on a crash (never written here).
        f.append(&[entry(5, 2, b"E")]).unwrap();
        drop(f);
        let (_f, state, report) = RaftFile::open(dir.path()).unwrap();
        assert_eq!(report.frames, 4);
        let got: Vec<(u64, u64, Vec<u8>)> = state
            .entries
            .iter()
            .map(|e| (e.index, e.term, e.data.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 1, b"a".to_vec()),
                (2, 1, b"b".to_vec()),
                (3, 2, b"C".to_vec()),
                (4, 2, b"D".to_vec())
            ]
        );
        assert_eq!(state.hard_state, hs(2, 3, 3));
    }

    #[test]
    fn a_torn_last_frame_is_cut_and_later_appends_follow_the_valid_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, _, _) = RaftFile::open(dir.path()).unwrap();
        f.append(&[entry(1, 1, b"a")]).unwrap();
        f.sync().unwrap();
        drop(f);
        let path = dir.path().join(RAFT_DIR).join(RAFT_FILE);
        let good = std::fs::metadata(&path).unwrap().len();
        // Half a frame, as a crash in the middle of a write leaves it.
        let mut raw = OpenOptions::new().append(true).open(&path).unwrap();
        raw.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 1, 9]).unwrap();
        drop(raw);
        let (mut f, state, report) = RaftFile::open(dir.path()).unwrap();
        assert_eq!(report.cut_bytes, 10);
        assert_eq!(state.entries.len(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
        f.append(&[entry(2, 1, b"b")]).unwrap();
        f.sync().unwrap();
        drop(f);
        let (_, state, report) = RaftFile::open(dir.path()).unwrap();
        assert_eq!((state.entries.len(), report.cut_bytes), (2, 0));
    }

    #[test]
    fn a_damaged_frame_ends_the_log_and_a_whole_frame_with_bad_content_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, _, _) = RaftFile::open(dir.path()).unwrap();
        f.append(&[entry(1, 1, b"a")]).unwrap();
        f.append(&[entry(2, 1, b"b")]).unwrap();
        f.sync().unwrap();
        drop(f);
        let path = dir.path().join(RAFT_DIR).join(RAFT_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (_, state, report) = RaftFile::open(dir.path()).unwrap();
        assert_eq!(state.entries.len(), 1);
        assert!(report.cut_bytes > 0);
        // A frame whose CRC matches but whose entry leaves a gap was written wrong:
        // refused, never guessed at.
        let mut payload = vec![KIND_ENTRIES];
        let e = entry(7, 1, b"x").write_to_bytes().unwrap();
        payload.extend_from_slice(&(e.len() as u32).to_le_bytes());
        payload.extend_from_slice(&e);
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        let mut raw = OpenOptions::new().append(true).open(&path).unwrap();
        raw.write_all(&frame).unwrap();
        drop(raw);
        let err = RaftFile::open(dir.path()).err().unwrap();
        assert!(err.0.contains("gap"), "{err}");
    }
}
