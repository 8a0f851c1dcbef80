//! The high-watermark checkpoint of a partition replica (Kafka's
//! `replication-offset-checkpoint`, one small file per partition directory here so
//! it goes with the directory when a topic is deleted).
//!
//! Why: a replica's high watermark lives in memory and is learned again from
//! fetches after a restart. Without a floor, a restarted leader would answer a
//! high watermark of 0 until its followers fetched, and a restarted follower that
//! becomes leader would have nothing better than 0 either: consumers would see the
//! high watermark go backwards. The checkpoint is that floor: every value written
//! was a high watermark this replica held, so every record below it is committed.
//!
//! Format: `0\n<offset>\n<crc32c of the offset's decimal text, hex>\n`. The file is
//! replaced by rename (never half-written); it is not fsynced, as Kafka's periodic
//! checkpoint is not made durable per change: after a power loss an older value or
//! no file is still a valid floor, and a file that does not parse counts as none.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The checkpoint's file name inside a partition directory.
pub const HW_CHECKPOINT_FILE: &str = "high-watermark-checkpoint";

fn path(dir: &Path) -> PathBuf {
    dir.join(HW_CHECKPOINT_FILE)
}

fn encode(hw: i64) -> String {
    let text = hw.to_string();
    format!("0\n{text}\n{:08x}\n", crc32c::crc32c(text.as_bytes()))
}

fn decode(contents: &str) -> Option<i64> {
    let mut lines = contents.lines();
    if lines.next()? != "0" {
        return None;
    }
    let text = lines.next()?;
    let crc = u32::from_str_radix(lines.next()?, 16).ok()?;
    if crc != crc32c::crc32c(text.as_bytes()) || lines.next().is_some() {
        return None;
    }
    text.parse().ok().filter(|hw: &i64| *hw >= 0)
}

/// The checkpointed high watermark, or `None` without a readable one.
pub fn load(dir: &Path) -> Option<i64> {
    std::fs::read_to_string(path(dir))
        .ok()
        .and_then(|c| decode(&c))
}

/// Replaces the checkpoint with `hw` (temporary file, then rename).
pub fn store(dir: &Path, hw: i64) -> std::io::Result<()> {
    let tmp = dir.join(format!("{HW_CHECKPOINT_FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(encode(hw).as_bytes())?;
    }
    std::fs::rename(&tmp, path(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_value_loads_back_and_damage_reads_as_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()), None);
        store(dir.path(), 1234).expect("store");
        assert_eq!(load(dir.path()), Some(1234));
        store(dir.path(), 99).expect("store");
        assert_eq!(load(dir.path()), Some(99));
        assert_eq!(decode(&encode(0)), Some(0));
        let good = encode(5678);
        for bad in [
            "",
            "0\n",
            "1\n5678\n",
            &good.replace("5678", "5679"),
            &good.replace("5678", "567"),
            &format!("{good}extra\n"),
            &encode(-1),
            "\0\0\0\0",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
