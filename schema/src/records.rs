//! The records inside a RecordBatch v2, read with every length checked.
//!
//! ```text
//! length          varint   bytes after this field
//! attributes      int8     unused (0)
//! timestampDelta  varlong  from the batch's baseTimestamp
//! offsetDelta     varint   from the batch's baseOffset: the record's index
//! keyLength       varint   -1 = null
//! key             bytes
//! valueLength     varint   -1 = null
//! value           bytes
//! headersCount    varint   >= 0
//!   headerKeyLength   varint  >= 0
//!   headerKey         bytes (UTF-8)
//!   headerValueLength varint  -1 = null
//!   headerValue       bytes
//! ```
//!
//! Varints are zigzag-encoded (Protocol Buffers' sint32/sint64): at most 5 bytes
//! for a varint, 10 for a varlong. A record must use exactly its `length` bytes.
//! Nothing here allocates from a length read off the input: slices borrow it.

use crate::BatchError;

/// Most bytes of a zigzag varint (32 bits).
const VARINT_BYTES_MAX: usize = 5;
/// Most bytes of a zigzag varlong (64 bits).
const VARLONG_BYTES_MAX: usize = 10;

/// One record, borrowing the bytes it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The headers' encoding (after their count), already checked.
    headers: &'a [u8],
    header_count: usize,
}

impl<'a> RecordRef<'a> {
    /// The headers as (key, value) pairs.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> {
        let mut cursor = Cursor::new(self.headers);
        (0..self.header_count).map_while(move |_| {
            let key = cursor.bytes().ok()?.unwrap_or_default();
            let value = cursor.bytes().ok()?;
            Some((key, value))
        })
    }
}

fn invalid(what: String) -> BatchError {
    BatchError::InvalidRecord(what)
}

/// A position in a byte slice, reading the record encoding's primitives.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn zigzag(&mut self, max_bytes: usize) -> Result<i64, BatchError> {
        let mut raw: u64 = 0;
        for i in 0..max_bytes {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(invalid("a varint runs past the end of its record".into()));
            };
            self.pos += 1;
            raw |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(invalid(format!("a varint longer than {max_bytes} bytes")))
    }

    pub(crate) fn varint(&mut self) -> Result<i32, BatchError> {
        let v = self.zigzag(VARINT_BYTES_MAX)?;
        i32::try_from(v).map_err(|_| invalid(format!("varint {v} does not fit 32 bits")))
    }

    pub(crate) fn varlong(&mut self) -> Result<i64, BatchError> {
        self.zigzag(VARLONG_BYTES_MAX)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        if n > self.remaining() {
            return Err(invalid(format!(
                "a field of {n} bytes runs past its record ({} bytes left)",
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A varint length then that many bytes; -1 is null, below -1 is refused.
    fn bytes(&mut self) -> Result<Option<&'a [u8]>, BatchError> {
        let len = self.varint()?;
        match len {
            -1 => Ok(None),
            n if n < -1 => Err(invalid(format!("negative length {n}"))),
            n => self.take(n as usize).map(Some),
        }
    }

    fn i8(&mut self) -> Result<i8, BatchError> {
        Ok(self.take(1)?[0] as i8)
    }
}

/// Parses one record's body (the bytes its `length` counts).
pub fn parse_record(body: &[u8]) -> Result<RecordRef<'_>, BatchError> {
    let mut c = Cursor::new(body);
    let attributes = c.i8()?;
    let timestamp_delta = c.varlong()?;
    let offset_delta = c.varint()?;
    let key = c.bytes()?;
    let value = c.bytes()?;
    let count = c.varint()?;
    if count < 0 {
        return Err(invalid(format!("negative header count {count}")));
    }
    let headers_start = c.pos;
    for _ in 0..count {
        let key_len = c.varint()?;
        if key_len < 0 {
            return Err(invalid(format!("header key of negative length {key_len}")));
        }
        c.take(key_len as usize)?;
        c.bytes()?;
    }
    if c.remaining() != 0 {
        return Err(invalid(format!(
            "{} bytes left over after the record's fields",
            c.remaining()
        )));
    }
    Ok(RecordRef {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers: &body[headers_start..],
        header_count: count as usize,
    })
}

/// The records of an uncompressed records section, each after its varint length;
/// stops at the first error (and yields it).
pub fn records(section: &[u8]) -> impl Iterator<Item = Result<RecordRef<'_>, BatchError>> {
    framed_records(section).map(|r| r.map(|(record, _)| record))
}

/// As [`records`], each with its whole encoding (length prefix included), which can
/// be copied into another batch with the same base offset and timestamp as is.
pub fn framed_records(
    section: &[u8],
) -> impl Iterator<Item = Result<(RecordRef<'_>, &[u8]), BatchError>> {
    let mut c = Cursor::new(section);
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || c.remaining() == 0 {
            return None;
        }
        let start = c.pos;
        let next = c.varint().and_then(|len| {
            if len < 0 {
                return Err(invalid(format!("record of negative length {len}")));
            }
            let record = c.take(len as usize).and_then(parse_record)?;
            Ok((record, &section[start..c.pos]))
        });
        failed = next.is_err();
        Some(next)
    })
}

/// Encodes `v` as a zigzag varint (for tests and builders of test input).
pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (raw & 0x7f) as u8;
        raw >>= 7;
        if raw == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        ts: i64,
        delta: i64,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&[u8], &[u8])],
    ) -> Vec<u8> {
        let mut body = vec![0u8];
        put_varint(&mut body, ts);
        put_varint(&mut body, delta);
        match key {
            Some(k) => {
                put_varint(&mut body, k.len() as i64);
                body.extend_from_slice(k);
            }
            None => put_varint(&mut body, -1),
        }
        put_varint(&mut body, value.len() as i64);
        body.extend_from_slice(value);
        put_varint(&mut body, headers.len() as i64);
        for (k, v) in headers {
            put_varint(&mut body, k.len() as i64);
            body.extend_from_slice(k);
            put_varint(&mut body, v.len() as i64);
            body.extend_from_slice(v);
        }
        let mut framed = Vec::new();
        put_varint(&mut framed, body.len() as i64);
        framed.extend(body);
        framed
    }

    #[test]
    fn records_read_back_with_their_fields() {
        let mut section = record(5, 0, Some(b"k"), b"v0", &[(b"h", b"x")]);
        section.extend(record(-3, 1, None, b"", &[]));
        let got: Vec<_> = records(&section).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].timestamp_delta, got[0].offset_delta), (5, 0));
        assert_eq!(
            (got[0].key, got[0].value),
            (Some(&b"k"[..]), Some(&b"v0"[..]))
        );
        assert_eq!(
            got[0].headers().collect::<Vec<_>>(),
            vec![(&b"h"[..], Some(&b"x"[..]))]
        );
        assert_eq!((got[1].timestamp_delta, got[1].key), (-3, None));
    }

    #[test]
    fn lengths_past_the_record_and_leftover_bytes_are_refused() {
        let good = record(0, 0, Some(b"key"), b"value", &[]);
        // Every truncation of the section fails (never panics, never reads past).
        for cut in 1..good.len() {
            let errors = records(&good[..cut]).filter(Result::is_err).count();
            assert_eq!(errors, 1, "cut at {cut}");
        }
        // A record whose length claims one byte more than its fields use.
        let mut body = good[1..].to_vec();
        body.push(0);
        let mut longer = Vec::new();
        put_varint(&mut longer, body.len() as i64);
        longer.extend(body);
        assert!(records(&longer).next().unwrap().is_err());
        // Negative lengths, over-long varints.
        assert!(records(&[0x01]).next().unwrap().is_err(), "length -1");
        assert!(records(&[0xff; 12]).next().unwrap().is_err());
    }

    #[test]
    fn varints_round_trip_at_their_limits() {
        for v in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            i64::MAX,
            i64::MIN,
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(Cursor::new(&buf).varlong().unwrap(), v);
            if let Ok(small) = i32::try_from(v) {
                assert_eq!(Cursor::new(&buf).varint().unwrap(), small);
            } else {
                assert!(Cursor::new(&buf).varint().is_err(), "{v}");
            }
        }
    }
}
