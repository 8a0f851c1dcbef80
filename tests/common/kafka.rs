//! A hand-driven Kafka-protocol connection for tests that need to shape requests
//! (retries, versions) the way real clients cannot be made to.

use std::io::{Read, Write};
use std::net::TcpStream;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

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
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).unwrap();
        let mut resp = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut resp).unwrap();
        let mut resp = Bytes::from(resp);
        ResponseHeader::decode(&mut resp, Resp::header_version(version)).unwrap();
        Resp::decode(&mut resp, version).unwrap()
    }
}
