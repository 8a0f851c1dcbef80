//! The native listener's path from frame bytes to the owner shard: frame split,
//! flatbuffer verification, envelope unpacking, the request-order class, and a
//! produce's routing and per-partition batch checks (everything before the owner's
//! append). Input: one flag byte (bit 0: seal the payload's CRCs, see `seal`),
//! then a frame body, as read after its `frame_len` prefix.
#![no_main]

mod seal;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringlog::native::connection::effect;
use ringlog::core::routing::refused_partitions;
use ringlog::native::produce;
use ringlog::core::partition::check_batches;
use ringlog_schema::frame;
use ringlog_schema::validate::ProducePolicy;
use ringlog_schema::wire::BodyT;

/// A fixed "now" keeps runs reproducible (timestamp checks compare against it).
const NOW_MS: i64 = 1_780_000_000_000;

fuzz_target!(|input: &[u8]| {
    let Some((&flags, body)) = input.split_first() else {
        return;
    };
    let mut data = body.to_vec();
    if flags & 1 != 0 {
        if let Ok((header, _)) = frame::split_frame(Bytes::copy_from_slice(body)) {
            let payload_at = frame::HEADER_LEN_BYTES + header.len();
            seal::seal_batches(&mut data[payload_at..]);
        }
    }
    let data = &data[..];
    let decoded = match frame::decode_frame(Bytes::copy_from_slice(data)) {
        Ok(f) => f,
        Err(_) => {
            // The reader answers a bad frame with the id it can still find.
            let _ = frame::peek_correlation_id(data);
            return;
        }
    };
    // Whatever decodes re-encodes to a frame that decodes to the same request.
    let again = frame::encode_frame(&decoded.envelope, &decoded.payload);
    let reread = frame::decode_frame(again.slice(frame::FRAME_LEN_BYTES..))
        .expect("a re-encoded frame decodes");
    assert_eq!(reread.envelope, decoded.envelope);
    assert_eq!(reread.payload, decoded.payload);

    let _ = effect(&decoded.envelope.body);
    match decoded.envelope.body {
        BodyT::ProduceRequest(req) => {
            let Ok((_, routed)) = produce::route(*req, &decoded.payload) else {
                return;
            };
            for (_, records) in routed {
                if let Ok(records) = records {
                    let _ = check_batches(records, &ProducePolicy::default(), NOW_MS);
                }
            }
        }
        BodyT::FetchRequest(req) => {
            let parts = req.partitions.unwrap_or_default();
            let _ = refused_partitions(
                "fetch",
                parts.iter().map(|p| (p.topic.as_str(), p.partition)),
            );
        }
        BodyT::ListOffsetsRequest(req) => {
            let parts = req.partitions.unwrap_or_default();
            let _ = refused_partitions(
                "list offsets",
                parts.iter().map(|p| (p.topic.as_str(), p.partition)),
            );
        }
        _ => {}
    }
});
