//! The inter-broker protocol's frame codec (`schema/peer.fbs`).
//!
//! A frame is `u32 frame_len | PeerEnvelope`, little-endian. The length is checked
//! against [`PEER_FRAME_BYTES_MAX`] before a reader allocates for it, and the
//! envelope goes through the flatbuffers verifier before anything reads it, so a
//! malformed frame from the network is an error, never a panic.

use crate::peer::{root_as_peer_envelope_with_opts, PeerEnvelopeT};

/// Largest inter-broker frame: a Raft append (at most 1 MiB of entries) or a
/// metadata fetch answer, with room to spare.
pub const PEER_FRAME_BYTES_MAX: usize = 16 << 20;
/// Largest payload of batches after a ReplicaFetchResponse envelope: the
/// response limit (at most 64 MiB) plus one batch over it (at most 64 MiB).
pub const REPLICA_PAYLOAD_BYTES_MAX: usize = 128 << 20;
/// Bytes of the `frame_len` prefix.
pub const PEER_LEN_BYTES: usize = 4;

/// Why a peer frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerFrameError {
    #[error("inter-broker frame of {len} bytes exceeds {PEER_FRAME_BYTES_MAX}")]
    TooLarge { len: usize },
    #[error("replica fetch payload of {len} bytes exceeds {REPLICA_PAYLOAD_BYTES_MAX}")]
    PayloadTooLarge { len: usize },
    #[error("empty inter-broker frame")]
    Empty,
    #[error("invalid inter-broker envelope: {0}")]
    Invalid(String),
}

/// The length a 4-byte prefix announces, checked against the limit.
pub fn peer_frame_len(prefix: [u8; PEER_LEN_BYTES]) -> Result<usize, PeerFrameError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > PEER_FRAME_BYTES_MAX {
        return Err(PeerFrameError::TooLarge { len });
    }
    if len == 0 {
        return Err(PeerFrameError::Empty);
    }
    Ok(len)
}

/// The payload length a ReplicaFetchResponse announces, checked against the
/// limit before a reader allocates for it.
pub fn replica_payload_len(announced: u32) -> Result<usize, PeerFrameError> {
    let len = announced as usize;
    if len > REPLICA_PAYLOAD_BYTES_MAX {
        return Err(PeerFrameError::PayloadTooLarge { len });
    }
    Ok(len)
}

/// Verifies and unpacks one envelope (the bytes after the length prefix).
pub fn decode_peer(body: &[u8]) -> Result<PeerEnvelopeT, PeerFrameError> {
    let opts = flatbuffers::VerifierOptions {
        max_depth: 16,
        max_tables: 1_000_000,
        max_apparent_size: PEER_FRAME_BYTES_MAX * 2,
        ignore_missing_null_terminator: false,
    };
    root_as_peer_envelope_with_opts(&opts, body)
        .map(|e| e.unpack())
        .map_err(|e| PeerFrameError::Invalid(e.to_string()))
}

/// Encodes one envelope as a whole frame, length prefix included.
pub fn encode_peer(envelope: &PeerEnvelopeT) -> Vec<u8> {
    let mut fbb = flatbuffers::FlatBufferBuilder::with_capacity(256);
    let root = envelope.pack(&mut fbb);
    fbb.finish(root, None);
    let data = fbb.finished_data();
    let mut out = Vec::with_capacity(PEER_LEN_BYTES + data.len());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{BrokerHeartbeatT, PeerBodyT};

    #[test]
    fn frames_round_trip_and_bad_ones_are_errors() {
        let env = PeerEnvelopeT {
            correlation_id: 9,
            body: PeerBodyT::BrokerHeartbeat(Box::new(BrokerHeartbeatT {
                broker_id: 2,
                epoch: 40,
                applied_offset: 41,
                want_shutdown: true,
            })),
        };
        let frame = encode_peer(&env);
        let len = peer_frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        assert_eq!(decode_peer(&frame[4..]).unwrap(), env);
        assert!(matches!(
            peer_frame_len((PEER_FRAME_BYTES_MAX as u32 + 1).to_le_bytes()),
            Err(PeerFrameError::TooLarge { .. })
        ));
        assert_eq!(peer_frame_len([0; 4]), Err(PeerFrameError::Empty));
        for cut in [1, 4, 8, frame.len() - 5] {
            assert!(decode_peer(&frame[4..4 + cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = frame[4..].to_vec();
        flipped[0] ^= 0xff;
        let _ = decode_peer(&flipped); // an error or another valid envelope, no panic
    }
}
