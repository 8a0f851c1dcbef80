//! The native protocol's frame codec (DESIGN §4).
//!
//! A frame is `u32 frame_len | u32 header_len | header | payload`, little-endian;
//! `frame_len` counts every byte after itself. The header is one verified `Envelope`
//! flatbuffer; the payload is raw bytes (record batches) referenced from the header by
//! [`PayloadRange`]. Decoding checks every length against its limit before anything is
//! allocated, runs the flatbuffers verifier, and hands payload ranges out as `Bytes`
//! slices of the received frame, so record data is never copied.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{root_as_envelope_with_opts, EnvelopeT, PayloadRangeT};

/// Bytes of the `frame_len` prefix.
pub const FRAME_LEN_BYTES: usize = 4;
/// Bytes of the `header_len` field.
pub const HEADER_LEN_BYTES: usize = 4;
/// Largest header (the flatbuffer envelope) accepted, whatever the frame limit.
pub const HEADER_BYTES_MAX: usize = 4 << 20;
/// Default frame limit, Kafka's `socket.request.max.bytes` (100 MiB).
pub const FRAME_BYTES_MAX_DEFAULT: usize = 104_857_600;
/// Deepest flatbuffer nesting the verifier accepts (our schema nests 4 levels).
pub const VERIFIER_DEPTH_MAX: usize = 16;
/// Most flatbuffer tables the verifier walks in one header.
pub const VERIFIER_TABLES_MAX: usize = 1_000_000;

const _: () = assert!(HEADER_BYTES_MAX < FRAME_BYTES_MAX_DEFAULT);

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// `frame_len` exceeds the limit; nothing was allocated for it.
    #[error("frame of {len} bytes exceeds socket.request.max.bytes = {max}")]
    TooLarge { len: usize, max: usize },
    /// `frame_len` cannot even hold the `header_len` field.
    #[error("frame of {len} bytes is shorter than its 4-byte header_len field")]
    TooShort { len: usize },
    /// `header_len` points past the end of the frame or exceeds the header limit.
    #[error("header_len {header_len} does not fit a frame of {frame_len} bytes (header limit {HEADER_BYTES_MAX})")]
    BadHeaderLen { header_len: usize, frame_len: usize },
    /// The header is not a valid `Envelope` flatbuffer.
    #[error("invalid flatbuffer header: {0}")]
    InvalidHeader(String),
    /// A payload range reaches outside the payload.
    #[error("payload range [{offset}, +{length}) is outside the {payload_len}-byte payload")]
    PayloadOutOfBounds {
        offset: u32,
        length: u32,
        payload_len: usize,
    },
    /// A payload range the message needs is absent.
    #[error("missing payload range for {0}")]
    MissingPayload(&'static str),
}

/// A decoded frame: the verified envelope, unpacked, and the payload it references.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub envelope: EnvelopeT,
    pub payload: Bytes,
}

/// Reads `frame_len` from the 4-byte prefix and checks it against `frame_bytes_max`,
/// so a reader allocates only for frames within the limit.
pub fn frame_len(
    prefix: [u8; FRAME_LEN_BYTES],
    frame_bytes_max: usize,
) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > frame_bytes_max {
        return Err(FrameError::TooLarge {
            len,
            max: frame_bytes_max,
        });
    }
    if len < HEADER_LEN_BYTES {
        return Err(FrameError::TooShort { len });
    }
    Ok(len)
}

/// Splits a frame body (the `frame_len` bytes after the prefix) into header and
/// payload without decoding the header.
pub fn split_frame(body: Bytes) -> Result<(Bytes, Bytes), FrameError> {
    let frame_len = body.len();
    if frame_len < HEADER_LEN_BYTES {
        return Err(FrameError::TooShort { len: frame_len });
    }
    let mut field = [0u8; HEADER_LEN_BYTES];
    field.copy_from_slice(&body[..HEADER_LEN_BYTES]);
    let header_len = u32::from_le_bytes(field) as usize;
    if header_len > HEADER_BYTES_MAX || header_len > frame_len - HEADER_LEN_BYTES {
        return Err(FrameError::BadHeaderLen {
            header_len,
            frame_len,
        });
    }
    let header_end = HEADER_LEN_BYTES + header_len;
    Ok((
        body.slice(HEADER_LEN_BYTES..header_end),
        body.slice(header_end..),
    ))
}

/// Decodes a frame body: splits it, verifies the envelope and unpacks it.
pub fn decode_frame(body: Bytes) -> Result<Frame, FrameError> {
    let (header, payload) = split_frame(body)?;
    let envelope = decode_envelope(&header)?;
    Ok(Frame { envelope, payload })
}

/// Verifies and unpacks one `Envelope` flatbuffer.
pub fn decode_envelope(header: &[u8]) -> Result<EnvelopeT, FrameError> {
    let opts = flatbuffers::VerifierOptions {
        max_depth: VERIFIER_DEPTH_MAX,
        max_tables: VERIFIER_TABLES_MAX,
        max_apparent_size: HEADER_BYTES_MAX * 2,
        ignore_missing_null_terminator: false,
    };
    root_as_envelope_with_opts(&opts, header)
        .map(|e| e.unpack())
        .map_err(|e| FrameError::InvalidHeader(e.to_string()))
}

/// Best effort: the correlation id of a frame body whose header failed verification,
/// so the error response can still be matched by the client. Reads only the root
/// table's first field, every access bounds-checked; `None` if unreadable.
pub fn peek_correlation_id(body: &[u8]) -> Option<u64> {
    let header = body.get(HEADER_LEN_BYTES..)?;
    let u16_at = |at: usize| Some(u16::from_le_bytes(header.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(header.get(at..at + 4)?.try_into().ok()?));
    let table = u32_at(0)? as usize;
    let soffset = i64::from(u32_at(table)? as i32);
    let vtable = usize::try_from(table as i64 - soffset).ok()?;
    let vtable_len = usize::from(u16_at(vtable)?);
    // Envelope field 0 (correlation_id) sits at vtable slot 4.
    if vtable_len < 6 {
        return Some(0);
    }
    let field = usize::from(u16_at(vtable + 4)?);
    if field == 0 {
        return Some(0);
    }
    let at = table.checked_add(field)?;
    Some(u64::from_le_bytes(header.get(at..at + 8)?.try_into().ok()?))
}

/// Returns the slice of `payload` that `range` names.
pub fn payload_slice(
    payload: &Bytes,
    range: Option<&PayloadRangeT>,
    what: &'static str,
) -> Result<Bytes, FrameError> {
    let range = range.ok_or(FrameError::MissingPayload(what))?;
    let start = range.offset as usize;
    let end = start.checked_add(range.length as usize);
    match end {
        Some(end) if end <= payload.len() => Ok(payload.slice(start..end)),
        _ => Err(FrameError::PayloadOutOfBounds {
            offset: range.offset,
            length: range.length,
            payload_len: payload.len(),
        }),
    }
}

/// Encodes the prefix and header of a frame whose payload (`payload_len` bytes) the
/// caller writes right after, buffer by buffer, without copying it.
pub fn encode_frame_head(envelope: &EnvelopeT, payload_len: usize) -> Bytes {
    let mut fbb = flatbuffers::FlatBufferBuilder::with_capacity(256);
    let root = envelope.pack(&mut fbb);
    fbb.finish(root, None);
    let header = fbb.finished_data();
    let frame_len = HEADER_LEN_BYTES + header.len() + payload_len;
    let mut out = BytesMut::with_capacity(FRAME_LEN_BYTES + HEADER_LEN_BYTES + header.len());
    out.put_u32_le(u32::try_from(frame_len).unwrap_or(u32::MAX));
    out.put_u32_le(header.len() as u32);
    out.put_slice(header);
    out.freeze()
}

/// Encodes a whole frame into one buffer (tests, and clients' small requests).
pub fn encode_frame(envelope: &EnvelopeT, payload: &[u8]) -> Bytes {
    let head = encode_frame_head(envelope, payload.len());
    let mut out = BytesMut::with_capacity(head.len() + payload.len());
    out.put_slice(&head);
    out.put_slice(payload);
    out.freeze()
}

/// Appends `data` to a payload under construction and returns its range.
pub fn push_payload(
    payload: &mut Vec<Bytes>,
    payload_len: &mut usize,
    data: Bytes,
) -> PayloadRangeT {
    let range = PayloadRangeT {
        offset: u32::try_from(*payload_len).unwrap_or(u32::MAX),
        length: u32::try_from(data.len()).unwrap_or(u32::MAX),
    };
    *payload_len += data.len();
    payload.push(data);
    range
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{BodyT, ErrorCode, ProducePartitionT, ProduceRequestT};

    fn produce(records: PayloadRangeT) -> EnvelopeT {
        EnvelopeT {
            correlation_id: 77,
            body: BodyT::ProduceRequest(Box::new(ProduceRequestT {
                acks: -1,
                timeout_ms: 1000,
                partitions: Some(vec![ProducePartitionT {
                    topic: "t".into(),
                    partition: 3,
                    records: Some(records),
                }]),
            })),
        }
    }

    fn body_of(frame: &Bytes) -> Bytes {
        frame.slice(FRAME_LEN_BYTES..)
    }

    #[test]
    fn round_trip_keeps_envelope_and_payload() {
        let env = produce(PayloadRangeT {
            offset: 0,
            length: 5,
        });
        let frame = encode_frame(&env, b"hello");
        let prefix: [u8; 4] = frame[..4].try_into().unwrap();
        assert_eq!(frame_len(prefix, 1 << 20).unwrap(), frame.len() - 4);
        let decoded = decode_frame(body_of(&frame)).unwrap();
        assert_eq!(decoded.envelope, env);
        let BodyT::ProduceRequest(req) = &decoded.envelope.body else {
            panic!("wrong body")
        };
        let p = &req.partitions.as_ref().unwrap()[0];
        let data = payload_slice(&decoded.payload, p.records.as_ref(), "records").unwrap();
        assert_eq!(&data[..], b"hello");
        assert_eq!(peek_correlation_id(&body_of(&frame)), Some(77));
    }

    #[test]
    fn limits_are_checked_before_allocation() {
        assert_eq!(
            frame_len(1000u32.to_le_bytes(), 999),
            Err(FrameError::TooLarge {
                len: 1000,
                max: 999
            })
        );
        assert_eq!(
            frame_len(3u32.to_le_bytes(), 999),
            Err(FrameError::TooShort { len: 3 })
        );
        let mut body = BytesMut::new();
        body.put_u32_le(100);
        body.put_slice(&[0; 10]);
        assert!(matches!(
            split_frame(body.freeze()),
            Err(FrameError::BadHeaderLen {
                header_len: 100,
                ..
            })
        ));
    }

    #[test]
    fn garbage_header_is_an_error_not_a_panic() {
        let mut body = BytesMut::new();
        body.put_u32_le(8);
        body.put_slice(&[0xff; 8]);
        assert!(matches!(
            decode_frame(body.freeze()),
            Err(FrameError::InvalidHeader(_))
        ));
    }

    #[test]
    fn payload_ranges_out_of_bounds_are_refused() {
        let payload = Bytes::from_static(b"abc");
        let r = PayloadRangeT {
            offset: 2,
            length: 2,
        };
        assert!(matches!(
            payload_slice(&payload, Some(&r), "records"),
            Err(FrameError::PayloadOutOfBounds { .. })
        ));
        let r = PayloadRangeT {
            offset: u32::MAX,
            length: u32::MAX,
        };
        assert!(payload_slice(&payload, Some(&r), "records").is_err());
        assert_eq!(
            payload_slice(&payload, None, "records"),
            Err(FrameError::MissingPayload("records"))
        );
    }

    #[test]
    fn error_codes_keep_kafka_numbers() {
        assert_eq!(ErrorCode::OFFSET_OUT_OF_RANGE.0, 1);
        assert_eq!(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.0, 3);
        assert_eq!(ErrorCode::MESSAGE_TOO_LARGE.0, 10);
        assert_eq!(ErrorCode::NOT_ENOUGH_REPLICAS.0, 19);
        assert_eq!(ErrorCode::TOPIC_ALREADY_EXISTS.0, 36);
    }
}
