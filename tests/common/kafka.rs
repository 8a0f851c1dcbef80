//! A hand-driven Kafka-protocol connection for tests that need to shape requests
//! (retries, versions) the way real clients cannot be made to.

use std::io::{Read, Write};
use std::net::TcpStream;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One connection; requests are sent one at a time.
pub struct Conn {
    pub stream: TcpStream,
    pub next_id: i32,
}

impl Conn {
    pub fn new(addr: &str) -> Self {
        Self {
            stream: TcpStream::connect(addr).unwrap(),
            next_id: 1,
        }
    }

    /// One request as a frame (`i32 size | header | body`), for tests that pipeline.
    pub fn frame<Req: Encodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> BytesMut {
        let mut header = RequestHeader::default();
        header.request_api_key = key as i16;
        header.request_api_version = version;
        header.correlation_id = self.next_id;
        header.client_id = Some(StrBytes::from_static_str("test"));
        self.next_id += 1;
        let mut body = BytesMut::new();
        header
            .encode(&mut body, Req::header_version(version))
            .unwrap();
        req.encode(&mut body, version).unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        frame
    }

    /// Sends a request and returns the decoded response.
    pub fn call<Req: Encodable + HeaderVersion, Resp: Decodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        let frame = self.frame(key, version, req);
        self.stream.write_all(&frame).unwrap();
        self.response(version)
    }

    /// Reads the next response, of a request sent at `version`.
    pub fn response<Resp: Decodable + HeaderVersion>(&mut self, version: i16) -> Resp {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).unwrap();
        let mut resp = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut resp).unwrap();
        let mut resp = Bytes::from(resp);
        ResponseHeader::decode(&mut resp, Resp::header_version(version)).unwrap();
        Resp::decode(&mut resp, version).unwrap()
    }
}

impl Conn {
    /// An idempotent producer id and epoch (InitProducerId without a transactional id).
    pub fn init_producer(&mut self) -> (i64, i16) {
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = None; // idempotent, not transactional
        let resp: InitProducerIdResponse = self.call(ApiKey::InitProducerId, 2, &req);
        assert_eq!(resp.error_code, 0);
        (resp.producer_id.0, resp.producer_epoch)
    }

    /// Produces one batch of `n` records starting at sequence `seq`; returns
    /// (error code, base offset).
    pub fn produce(&mut self, topic: &str, pid: i64, epoch: i16, seq: i32, n: usize) -> (i16, i64) {
        let req = produce_request(topic, pid, epoch, seq, n);
        let resp: ProduceResponse = self.call(ApiKey::Produce, 7, &req);
        let p = &resp.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }
}

/// An acks=all Produce of one batch of `n` records (values `s<seq>`) to partition 0
/// of `topic`; `pid` -1 for a producer that is not idempotent.
pub fn produce_request(topic: &str, pid: i64, epoch: i16, seq: i32, n: usize) -> ProduceRequest {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i as i32,
            timestamp: 1_000,
            key: None,
            value: Some(Bytes::from(format!("s{}", seq + i as i32))),
            headers: IndexMap::new(),
        })
        .collect();
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    produce_batch_request(topic, batch.freeze())
}

/// An acks=all Produce of `records` (one or more batches, as they are) to partition 0
/// of `topic`.
pub fn produce_batch_request(topic: &str, records: Bytes) -> ProduceRequest {
    let mut p = PartitionProduceData::default();
    p.index = 0;
    p.records = Some(records);
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 5_000;
    req.topic_data = vec![t];
    req
}
