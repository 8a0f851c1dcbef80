//! Cluster administration calls of the native client.

use ringlog_schema::wire::{BodyT, DescribeClusterResponseT, ErrorCode};

use crate::client::cluster::unexpected;
use crate::client::{Client, ClientError};

/// The cluster as the bootstrap broker sees it: brokers with epochs and fencing,
/// the active controller and its term, the metadata offset applied there.
pub async fn describe_cluster(client: &Client) -> Result<DescribeClusterResponseT, ClientError> {
    let body = BodyT::DescribeClusterRequest(Box::default());
    let frame = client.connection().request(body, Vec::new()).await?;
    match frame.envelope.body {
        BodyT::DescribeClusterResponse(r) if r.error == ErrorCode::NONE => Ok(*r),
        BodyT::DescribeClusterResponse(r) => Err(ClientError::broker(r.error, r.message)),
        other => Err(unexpected(other)),
    }
}
