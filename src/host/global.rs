//! Calls to the Envoy global rate-limit service (`global_rate_limit`).

use std::time::Duration;

use proxy_wasm::hostcalls;

use crate::host::abi;
use proxy_wasm::types::{BufferType, Status};

use crate::policy::global_rate_limit::GlobalRateLimit;
use crate::policy::ratelimit::{self, Answer, Quota, Subject};

/// Dispatches one `ShouldRateLimit` call; its answer reaches the context that is current now.
pub fn call(
    rules: &GlobalRateLimit,
    quota: Quota,
    subject: &Subject<'_>,
    hits: u64,
) -> Result<u32, Status> {
    let entries = ratelimit::entries(&rules.extra_entries, quota, subject);
    let message = ratelimit::request(&rules.domain, &entries, hits);
    dispatch(rules, &message)
}

/// Sends one `ShouldRateLimit` message. Envoy answers a cluster it does not know with an error
/// here (`InternalFailure`), which the SDK returns as a value.
fn dispatch(rules: &GlobalRateLimit, message: &[u8]) -> Result<u32, Status> {
    // A serialized GrpcService, never a bare cluster name (see the host notes); it is ASCII.
    let service = ratelimit::grpc_service(&rules.cluster);
    let target = std::str::from_utf8(&service).map_err(|_| Status::BadArgument)?;
    hostcalls::dispatch_grpc_call(
        target,
        ratelimit::SERVICE,
        ratelimit::METHOD,
        Vec::new(),
        Some(message),
        Duration::from_millis(rules.timeout_ms),
    )
}

/// A call that checks the service can be reached: a descriptor no limit matches
/// (`usage=probe`), adding nothing.
pub fn probe(rules: &GlobalRateLimit) -> Result<u32, Status> {
    let message = ratelimit::request(&rules.domain, &[("usage", "probe")], 0);
    dispatch(rules, &message)
}

/// The service's answer to a finished call; `None` when the call failed (non-zero gRPC status,
/// timeout included) or the reply is not a `RateLimitResponse`.
pub fn answer(status_code: u32) -> Option<Answer> {
    if status_code != 0 {
        return None;
    }
    let body = abi::buffer(BufferType::GrpcReceiveBuffer).unwrap_or_default();
    ratelimit::answer(&body)
}
