//! Errors of the executor pool and the mesh.

/// An executor could not start, or a peer is gone.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// Creating an executor failed. A common cause is the locked-memory limit.
    #[error("cannot start executor {name}: {reason}")]
    Start { name: String, reason: String },
    /// The pool was configured with impossible values.
    #[error("invalid shard configuration: {0}")]
    Config(String),
    /// The peer stopped (its executor exited) before answering.
    #[error("peer {0} is gone")]
    PeerGone(String),
    /// The peer's handler declined the request ([`crate::Answer::refuse`]).
    #[error("peer {0} refused the request")]
    Refused(String),
    /// [`crate::Mesh::leave`] gave up waiting for these peers to leave.
    #[error("peers still calling when this executor left: {0}")]
    LeaveTimeout(String),
    /// An executor's thread panicked or returned an error.
    #[error("executor {name} failed: {reason}")]
    Executor { name: String, reason: String },
}
