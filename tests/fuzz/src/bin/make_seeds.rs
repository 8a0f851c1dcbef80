//! Writes a seed corpus for each fuzz target: well-formed inputs the fuzzer mutates
//! from, so it starts past the framing. Usage: `make_seeds <corpus dir>`; writes
//! `<dir>/<target>/seed-*`.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, MetadataRequest, ProduceRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use ringlog_schema::compression::Codec;
use ringlog_schema::frame;
use ringlog_schema::wire::{
    BodyT, EnvelopeT, FetchPartitionT, FetchRequestT, ProducePartitionT, ProduceRequestT,
};
use ringlog_schema::{BatchBuilder, RecordBatch};

fn batch(base: i64, records: usize, codec: Codec, keyed: bool) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for i in 0..records {
        let key = keyed.then(|| Bytes::from(format!("key-{}", i % 2)));
        b.push(
            key,
            Some(Bytes::from(vec![b'v'; 20 + i])),
            &[],
            1_780_000_000_000 + i as i64,
        );
    }
    b.compression(codec);
    let mut bytes = b.build().expect("seed batch builds").to_vec();
    RecordBatch::set_base_offset(&mut bytes, base);
    bytes
}

fn write(dir: &Path, target: &str, name: &str, data: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(format!("seed-{name}")), data).expect("seed written");
}

fn kafka_frame<R: Encodable + HeaderVersion>(api: ApiKey, version: i16, req: &R) -> Vec<u8> {
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = 7;
    header.client_id = Some(StrBytes::from_static_str("seed"));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api.request_header_version(version))
        .expect("header encodes");
    req.encode(&mut buf, version).expect("request encodes");
    buf.to_vec()
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: make_seeds <corpus dir>");
    let dir = Path::new(&dir);
    let codecs = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    // record_batch: a policy byte (bit 7: seal CRCs), then a batch.
    for (i, codec) in codecs.iter().enumerate() {
        let mut input = vec![0x80 | (i as u8 & 0x7)];
        input.extend(batch(0, 3, *codec, i % 2 == 0));
        write(dir, "record_batch", &format!("{i}"), &input);
    }

    // segment_scan: kind, base offset, then batches (bit 7 of the kind: seal CRCs).
    for (kind, name) in [(0x80u8, "tail"), (0x81, "closed"), (0x82, "compacted")] {
        let mut input = vec![kind];
        input.extend(100i64.to_le_bytes());
        input.extend(batch(100, 3, Codec::None, true));
        let next = if kind == 0x82 { 105 } else { 103 };
        input.extend(batch(next, 2, Codec::Lz4, true));
        write(dir, "segment_scan", name, &input);
    }

    // native_request: a seal flag byte, then a frame body (no frame_len prefix).
    let records = batch(0, 2, Codec::None, false);
    let produce = EnvelopeT {
        correlation_id: 1,
        body: BodyT::ProduceRequest(Box::new(ProduceRequestT {
            acks: -1,
            timeout_ms: 1000,
            partitions: Some(vec![ProducePartitionT {
                topic: "t".into(),
                partition: 0,
                records: Some(ringlog_schema::wire::PayloadRangeT {
                    offset: 0,
                    length: records.len() as u32,
                }),
            }]),
        })),
    };
    let fetch = EnvelopeT {
        correlation_id: 2,
        body: BodyT::FetchRequest(Box::new(FetchRequestT {
            partitions: Some(vec![FetchPartitionT {
                topic: "t".into(),
                partition: 0,
                offset: 0,
                max_bytes: 1 << 20,
            }]),
            ..Default::default()
        })),
    };
    for (name, env, payload) in [
        ("produce", &produce, &records[..]),
        ("fetch", &fetch, &[][..]),
    ] {
        let framed = frame::encode_frame(env, payload);
        let mut input = vec![1u8];
        input.extend_from_slice(&framed[frame::FRAME_LEN_BYTES..]);
        write(dir, "native_request", name, &input);
    }

    // kafka_request: a request frame (no size prefix).
    let mut produce = ProduceRequest::default();
    produce.acks = -1;
    produce.timeout_ms = 1000;
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(Bytes::from(records.clone()));
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str("t"));
    topic.partition_data = vec![partition];
    produce.topic_data = vec![topic];
    for version in [3i16, 9] {
        let f = kafka_frame(ApiKey::Produce, version, &produce);
        write(dir, "kafka_request", &format!("produce-v{version}"), &f);
    }
    let mut fetch = FetchRequest::default();
    fetch.max_wait_ms = 100;
    write(
        dir,
        "kafka_request",
        "fetch-v12",
        &kafka_frame(ApiKey::Fetch, 12, &fetch),
    );
    let metadata = MetadataRequest::default();
    write(
        dir,
        "kafka_request",
        "metadata-v9",
        &kafka_frame(ApiKey::Metadata, 9, &metadata),
    );
}
