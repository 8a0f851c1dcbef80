//! Request handlers, one module per API. Each takes the shard that received the
//! request and returns the response body (and payload buffers), or `None` where the
//! protocol sends no response (Produce with acks = 0).

pub mod fetch;
pub mod groups;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod topics;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use ringlog_schema::frame;
use ringlog_schema::wire::{BodyT, EnvelopeT, ErrorCode, ErrorResponseT, HelloResponseT};

use crate::broker::messages::{PartitionError, PartitionKey, ShardMsg};
use crate::broker::shard::Shard;

/// Native protocol version this broker speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// A response: its body and the payload buffers its ranges refer to.
pub struct Response {
    pub body: BodyT,
    pub payload: Vec<Bytes>,
}

impl Response {
    pub fn new(body: BodyT) -> Self {
        Self {
            body,
            payload: Vec::new(),
        }
    }

    /// The frame head followed by the payload buffers, ready for one writev.
    pub fn into_buffers(self, correlation_id: u64) -> Vec<Bytes> {
        let payload_len = self.payload.iter().map(Bytes::len).sum();
        let env = EnvelopeT {
            correlation_id,
            body: self.body,
        };
        let mut out = Vec::with_capacity(1 + self.payload.len());
        out.push(frame::encode_frame_head(&env, payload_len));
        out.extend(self.payload);
        out
    }
}

/// Answers every request except Produce (see [`produce::enqueue`]).
pub async fn dispatch(shard: &Shard, body: BodyT, payload: Bytes) -> Option<Response> {
    let _ = payload;
    let body = match body {
        BodyT::HelloRequest(_) => BodyT::HelloResponse(Box::new(HelloResponseT {
            error: ErrorCode::NONE,
            protocol_version: PROTOCOL_VERSION,
            broker_id: shard.config.broker_id,
            shard_count: shard.shards,
            server_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            connection_shard: shard.id.0,
        })),
        BodyT::MetadataRequest(req) => metadata::handle(shard, *req).await,
        BodyT::CreateTopicsRequest(req) => topics::create(shard, *req).await,
        BodyT::DeleteTopicsRequest(req) => topics::delete(shard, *req).await,
        BodyT::DescribeTopicsRequest(req) => topics::describe(shard, *req).await,
        BodyT::FetchRequest(req) => return Some(fetch::handle(shard, *req).await),
        BodyT::ListOffsetsRequest(req) => list_offsets::handle(shard, *req).await,
        body @ (BodyT::FindCoordinatorRequest(_)
        | BodyT::JoinGroupRequest(_)
        | BodyT::SyncGroupRequest(_)
        | BodyT::HeartbeatRequest(_)
        | BodyT::LeaveGroupRequest(_)
        | BodyT::OffsetCommitRequest(_)
        | BodyT::OffsetFetchRequest(_)
        | BodyT::ListGroupsRequest(_)
        | BodyT::DescribeGroupsRequest(_)
        | BodyT::DeleteGroupsRequest(_)) => groups::handle(shard, body).await,
        BodyT::ProduceRequest(_) => error_body(
            ErrorCode::INVALID_REQUEST,
            "produce is handled by the connection reader",
        ),
        other => error_body(
            ErrorCode::UNSUPPORTED_API,
            &format!(
                "{:?} is not a request this broker serves",
                other.body_type()
            ),
        ),
    };
    Some(Response::new(body))
}

/// An `ErrorResponse` body.
pub fn error_body(code: ErrorCode, message: &str) -> BodyT {
    BodyT::ErrorResponse(Box::new(ErrorResponseT {
        error: code,
        message: Some(message.to_string()),
    }))
}

/// Sends each request to its partition's owner in order, then awaits all answers.
pub async fn call_owners(
    shard: &Shard,
    requests: Vec<(PartitionKey, ShardMsg)>,
) -> Vec<Result<ShardMsg, PartitionError>> {
    let mut pending = Vec::with_capacity(requests.len());
    for (key, msg) in requests {
        pending.push(shard.send_to_owner(&key, msg).await);
    }
    let replies = pending.into_iter().map(|r| async move {
        match r {
            Ok(reply) => reply
                .recv()
                .await
                .map_err(|e| PartitionError::new(ErrorCode::NOT_LEADER_OR_FOLLOWER, e.to_string())),
            Err(e) => Err(e),
        }
    });
    join_all(replies.collect()).await
}

/// A future still running, or its output.
type Slot<F> = (Option<Pin<Box<F>>>, Option<<F as Future>::Output>);

/// Polls every future until all are done; outputs in input order.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut slots: Vec<Slot<F>> = futures
        .into_iter()
        .map(|f| (Some(Box::pin(f)), None))
        .collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (fut, out) in &mut slots {
            if let Some(f) = fut {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *out = Some(v);
                        *fut = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    slots.into_iter().filter_map(|(_, out)| out).collect()
}
