//! The Kafka listener's path from frame bytes to the owner shard: header, the
//! served-version check, the body decoder of every API served, and a produce's
//! routing and per-partition batch checks (everything before the owner's append).
//! Input: a request frame, as read after its size prefix.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringlog::core::partition::check_batches;
use ringlog::kafka::api::{self, KafkaRequest};
use ringlog::kafka::produce;
use ringlog_schema::validate::ProducePolicy;

/// A fixed "now" keeps runs reproducible (timestamp checks compare against it).
const NOW_MS: i64 = 1_780_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((key, version, _, body)) = api::parse_request_header(Bytes::copy_from_slice(data))
    else {
        return;
    };
    let served = api::supported(key).is_some_and(|(lo, hi)| (lo..=hi).contains(&version));
    if !served {
        return;
    }
    let _ = api::effect(key);
    let Ok(request) = api::decode_request(key, version, body) else {
        return;
    };
    if let KafkaRequest::Produce(req) = request {
        for (_, records) in produce::route(req, version) {
            if let Ok(records) = records {
                let _ = check_batches(records, &ProducePolicy::default(), NOW_MS);
            }
        }
    }
});
