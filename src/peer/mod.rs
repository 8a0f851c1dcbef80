//! The inter-broker protocol adapter (`schema/peer.fbs`), a sibling of `native`
//! and `kafka`: the listener the other voters reach (`server`), this broker's links
//! to them (`link`, which carries the quorum's Raft messages and the coordinator's
//! calls on a remote active controller), and the conversions to and from the
//! core's types (`codec`). Only this module names the protocol's generated types.

pub mod codec;
pub mod link;
pub mod replica;
pub mod server;

use ringlog_schema::peer::PeerEnvelopeT;
use ringlog_schema::peer_frame::{decode_peer, peer_frame_len, PEER_LEN_BYTES};

use crate::net::SocketReader;

/// Reads one frame: its length is checked against the limit before the body is
/// read, and the envelope is verified before anything reads it. `Ok(None)` at a
/// clean end of the stream; `Err` names what was wrong.
pub async fn read_peer_frame<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut SocketReader<R>,
) -> Result<Option<PeerEnvelopeT>, String> {
    let mut prefix = [0u8; PEER_LEN_BYTES];
    match reader.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let len = peer_frame_len(prefix).map_err(|e| e.to_string())?;
    let body = reader.read_body(len).await.map_err(|e| e.to_string())?;
    decode_peer(&body).map(Some).map_err(|e| e.to_string())
}
