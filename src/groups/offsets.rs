//! Committed offsets: where a group's commits live, how they are stored as records of
//! the internal topic `__consumer_offsets`, and the in-memory view rebuilt from them.
//!
//! A group's commits go to partition `abs(java_hash(group)) % offsets.topic.num.partitions`
//! (Kafka's rule, so a group maps to the same partition number as in Kafka). Records
//! use Kafka's offset-commit formats, big-endian: key v1 = `version i16 | group str |
//! topic str | partition i32`, value v1 = `version i16 | offset i64 | metadata str |
//! commit_timestamp i64 | expire_timestamp i64` (str = `i16 length | UTF-8`). A record
//! with no value (a tombstone) deletes the key. The log is compacted in spirit: on load
//! the latest record per key wins.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The topic configs `__consumer_offsets` is created with (and given at start-up if
/// an older version created it without): compacted, so loading a group reads each
/// committed offset once instead of the partition's whole history, with segments of
/// `offsets.topic.segment.bytes` and batches at most that size.
pub fn offsets_topic_configs(
    segment_bytes: u64,
    max_batch_bytes: usize,
) -> std::collections::BTreeMap<String, String> {
    let max = (max_batch_bytes as u64).min(segment_bytes);
    [
        ("cleanup.policy", "compact".to_string()),
        ("segment.bytes", segment_bytes.to_string()),
        ("max.message.bytes", max.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Longest commit metadata string accepted (Kafka's `offset.metadata.max.bytes`).
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;

const KEY_VERSION: i16 = 1;
const VALUE_VERSION: i16 = 1;

/// Java's `String.hashCode` (over UTF-16 code units), as Kafka hashes group ids.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of `group` among `partitions`.
pub fn partition_for_group(group: &str, partitions: i32) -> i32 {
    (java_string_hash(group) & 0x7fff_ffff) % partitions.max(1)
}

/// A committed position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// (group, topic, partition).
pub type OffsetKey = (String, String, i32);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("offset record too short")]
    Short,
    #[error("offset record of unknown version {0}")]
    Version(i16),
    #[error("offset record with a string that is not UTF-8")]
    Utf8,
}

fn put_str(b: &mut BytesMut, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    b.put_i16(bytes.len() as i16);
    b.put_slice(bytes);
}

/// Encodes the record key of a commit.
pub fn encode_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::with_capacity(10 + group.len() + topic.len());
    b.put_i16(KEY_VERSION);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

/// Encodes the record value of a commit.
pub fn encode_value(c: &Committed) -> Bytes {
    let mut b = BytesMut::with_capacity(30 + c.metadata.len());
    b.put_i16(VALUE_VERSION);
    b.put_i64(c.offset);
    put_str(&mut b, &c.metadata);
    b.put_i64(c.commit_timestamp);
    b.put_i64(-1);
    b.freeze()
}

/// A bounds-checked reader over record bytes from disk.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Short);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn i16(&mut self) -> Result<i16, RecordError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn str(&mut self) -> Result<String, RecordError> {
        let n = self.i16()?;
        let n = usize::try_from(n).map_err(|_| RecordError::Short)?;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| RecordError::Utf8)
    }
}

pub fn decode_key(b: &[u8]) -> Result<OffsetKey, RecordError> {
    let mut r = Reader(b);
    match r.i16()? {
        KEY_VERSION => Ok((r.str()?, r.str()?, r.i32()?)),
        v => Err(RecordError::Version(v)),
    }
}

pub fn decode_value(b: &[u8]) -> Result<Committed, RecordError> {
    let mut r = Reader(b);
    match r.i16()? {
        VALUE_VERSION => {
            let offset = r.i64()?;
            let metadata = r.str()?;
            let commit_timestamp = r.i64()?;
            let _expire = r.i64()?;
            Ok(Committed {
                offset,
                metadata,
                commit_timestamp,
            })
        }
        v => Err(RecordError::Version(v)),
    }
}

/// The committed offsets of the groups of one `__consumer_offsets` partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetStore {
    offsets: BTreeMap<OffsetKey, Committed>,
}

impl OffsetStore {
    /// Applies one record of the log, in log order: a value sets the key, a tombstone
    /// deletes it.
    pub fn apply_record(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        let k = decode_key(key)?;
        match value {
            Some(v) => {
                self.offsets.insert(k, decode_value(v)?);
            }
            None => {
                self.offsets.remove(&k);
            }
        }
        Ok(())
    }

    pub fn set(&mut self, key: OffsetKey, c: Committed) {
        self.offsets.insert(key, c);
    }

    pub fn remove(&mut self, key: &OffsetKey) {
        self.offsets.remove(key);
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&Committed> {
        self.offsets
            .get(&(group.to_string(), topic.to_string(), partition))
    }

    /// Every commit of `group`, in (topic, partition) order.
    pub fn of_group(&self, group: &str) -> Vec<(String, i32, Committed)> {
        self.offsets
            .range((group.to_string(), String::new(), i32::MIN)..)
            .take_while(|((g, _, _), _)| g == group)
            .map(|((_, t, p), c)| (t.clone(), *p, c.clone()))
            .collect()
    }

    /// Every commit, in (group, topic, partition) order.
    pub fn iter(&self) -> impl Iterator<Item = (&OffsetKey, &Committed)> {
        self.offsets.iter()
    }

    /// Groups with at least one commit.
    pub fn groups(&self) -> Vec<String> {
        let mut out: Vec<String> = self.offsets.keys().map(|(g, _, _)| g.clone()).collect();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_javas() {
        // Values from Java's "...".hashCode().
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for_group("polygenelubricants", 50), 0);
        for g in ["a", "hello", "my-group", "é-ü", ""] {
            let p = partition_for_group(g, 50);
            assert!((0..50).contains(&p));
        }
    }

    #[test]
    fn records_round_trip_and_replay_keeps_the_latest() {
        let mut store = OffsetStore::default();
        let c = |offset| Committed {
            offset,
            metadata: format!("m{offset}"),
            commit_timestamp: 1_000 + offset,
        };
        let log: Vec<(Bytes, Option<Bytes>)> = vec![
            (encode_key("g", "t", 0), Some(encode_value(&c(5)))),
            (encode_key("g", "t", 1), Some(encode_value(&c(7)))),
            (encode_key("h", "t", 0), Some(encode_value(&c(1)))),
            (encode_key("g", "t", 0), Some(encode_value(&c(9)))),
            (encode_key("g", "t", 1), None),
        ];
        for (k, v) in &log {
            store.apply_record(k, v.as_deref()).unwrap();
        }
        assert_eq!(store.get("g", "t", 0), Some(&c(9)));
        assert_eq!(store.get("g", "t", 1), None);
        assert_eq!(store.of_group("g"), vec![("t".to_string(), 0, c(9))]);
        assert_eq!(store.groups(), vec!["g".to_string(), "h".to_string()]);
        assert_eq!(
            decode_key(&encode_key("g", "t", 3)).unwrap(),
            ("g".into(), "t".into(), 3)
        );
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let k = encode_key("group", "topic", 2);
        let v = encode_value(&Committed {
            offset: 1,
            metadata: "x".into(),
            commit_timestamp: 2,
        });
        for n in 0..k.len() {
            assert!(decode_key(&k[..n]).is_err());
        }
        for n in 0..v.len() {
            assert!(decode_value(&v[..n]).is_err());
        }
        let mut bad = k.to_vec();
        bad[1] = 9;
        assert_eq!(decode_key(&bad), Err(RecordError::Version(9)));
        let mut bad = k.to_vec();
        bad[2] = 0xff; // negative string length
        assert!(decode_key(&bad).is_err());
        let mut bad = k.to_vec();
        bad[4] = 0xff;
        assert_eq!(decode_key(&bad), Err(RecordError::Utf8));
        let mut store = OffsetStore::default();
        assert!(store.apply_record(&k, Some(&v[..5])).is_err());
        assert_eq!(
            store,
            OffsetStore::default(),
            "a bad record changes nothing"
        );
    }
}
