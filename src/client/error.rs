//! Client errors: transport failures, protocol violations, and broker error codes
//! with the broker's message.

use ringlog_schema::wire::ErrorCode;

/// What went wrong talking to the broker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connection to the broker lost: {0}")]
    Disconnected(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker answered with an error code.
    #[error("{}: {message}", code_name(*code))]
    Broker { code: ErrorCode, message: String },
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("partition {partition} is out of range: topic {topic:?} has {count} partition(s)")]
    UnknownPartition {
        topic: String,
        partition: i32,
        count: usize,
    },
    #[error("record of {size} bytes is larger than the batch limit {max}")]
    RecordTooLarge { size: usize, max: usize },
    #[error("request timed out after {0} ms")]
    Timeout(u64),
    #[error("invalid record data: {0}")]
    Records(String),
    #[error("invalid client setting: {0}")]
    Config(String),
}

impl ClientError {
    /// A broker error from a code and an optional message.
    pub fn broker(code: ErrorCode, message: Option<String>) -> Self {
        ClientError::Broker {
            code,
            message: message.unwrap_or_default(),
        }
    }

    /// Whether the request should go again once the client's metadata is
    /// refreshed: the partition's leader moved or is being elected, or the broker
    /// the client took for its leader cannot be reached (Kafka's
    /// `InvalidMetadataException` family and network errors).
    pub fn is_stale_leadership(&self) -> bool {
        match self {
            ClientError::Broker { code, .. } => matches!(
                *code,
                ErrorCode::NOT_LEADER_OR_FOLLOWER
                    | ErrorCode::LEADER_NOT_AVAILABLE
                    | ErrorCode::FENCED_LEADER_EPOCH
                    | ErrorCode::UNKNOWN_LEADER_EPOCH
            ),
            ClientError::Connect { .. }
            | ClientError::Disconnected(_)
            | ClientError::Timeout(_) => true,
            _ => false,
        }
    }

    /// The broker error code, if this is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The Kafka-style name of an error code.
pub fn code_name(code: ErrorCode) -> String {
    code.variant_name()
        .map_or_else(|| format!("error code {}", code.0), str::to_string)
}
