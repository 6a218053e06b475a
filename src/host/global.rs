//! Calls to the Envoy global rate-limit service (`global_rate_limit`).

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, Status};

use crate::policy::config::GlobalRateLimit;
use crate::policy::ratelimit::{self, Answer, Subject, Usage};

/// Dispatches one `ShouldRateLimit` call; its answer reaches the context that is current now.
pub fn call(
    rules: &GlobalRateLimit,
    usage: Usage,
    subject: &Subject<'_>,
    hits: u64,
) -> Result<u32, Status> {
    let entries = ratelimit::entries(rules, usage, subject);
    let message = ratelimit::request(&rules.domain, &entries, hits);
    // A serialized GrpcService, never a bare cluster name (see the host notes); it is ASCII.
    let service = ratelimit::grpc_service(&rules.cluster);
    let target = std::str::from_utf8(&service).map_err(|_| Status::BadArgument)?;
    hostcalls::dispatch_grpc_call(
        target,
        ratelimit::SERVICE,
        ratelimit::METHOD,
        Vec::new(),
        Some(&message),
        Duration::from_millis(rules.timeout_ms),
    )
}

/// The service's answer to a finished call; `None` when the call failed (non-zero gRPC status,
/// timeout included) or the reply is not a `RateLimitResponse`.
pub fn answer(status_code: u32, response_size: usize) -> Option<Answer> {
    if status_code != 0 {
        return None;
    }
    let body = hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, response_size)
        .ok()
        .flatten()
        .unwrap_or_default();
    ratelimit::answer(&body)
}
