//! A minimal client for `ShouldRateLimit` (used by the tests; handy for poking a running
//! service from Rust).

use crate::proto::{RateLimitRequest, RateLimitResponse, SHOULD_RATE_LIMIT_PATH};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;

/// Sends one `ShouldRateLimit` call over `channel`.
pub async fn should_rate_limit(
    channel: Channel,
    req: RateLimitRequest,
) -> Result<RateLimitResponse, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
    grpc.unary(
        tonic::Request::new(req),
        PathAndQuery::from_static(SHOULD_RATE_LIMIT_PATH),
        tonic::codec::ProstCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}
