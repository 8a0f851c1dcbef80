//! The vendored Kafka codec (third_party/kafka-protocol, PATCHES.md) refuses element
//! counts that the bytes left cannot hold, instead of reserving memory for them: a
//! few bytes declaring 2^31 elements used to abort the process.

use bytes::Bytes;
use kafka_protocol::messages::MetadataRequest;
use kafka_protocol::protocol::Decodable;

#[test]
fn a_lying_array_length_is_an_error_not_an_allocation() {
    // Metadata v0: a topic array declaring 54,265,856 entries, then three bytes.
    let mut body = Bytes::from_static(&[0x03, 0x3c, 0x0c, 0x00, 0xb6]);
    let err = MetadataRequest::decode(&mut body, 0).unwrap_err();
    assert!(err.to_string().contains("exceeds"), "{err}");
    // i32::MAX entries, and a compact (flexible-version) array of u32::MAX - 1.
    let mut body = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]);
    assert!(MetadataRequest::decode(&mut body, 0).is_err());
    let mut body = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
    assert!(MetadataRequest::decode(&mut body, 9).is_err());
}

#[test]
fn well_formed_arrays_still_decode() {
    // Metadata v0 with one topic "t".
    let mut body = Bytes::from_static(&[0, 0, 0, 1, 0, 1, b't']);
    let req = MetadataRequest::decode(&mut body, 0).unwrap();
    assert_eq!(req.topics.unwrap().len(), 1);
}
