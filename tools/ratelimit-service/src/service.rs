//! The `ShouldRateLimit` handler and its hand-written tonic service.
//!
//! Semantics (the same as limitador-server's RLS v3 endpoint, plus the descriptor-level
//! `hits_addend` limitador-server ignores):
//! - empty `domain` → `UNKNOWN`; otherwise the domain is the limitador namespace, and a
//!   namespace without limits answers `OK`;
//! - descriptor `i` is bound as the CEL map `descriptors[i]` (entry key → value), so limits
//!   address descriptors by index;
//! - the hits are the request's `hits_addend`, or the descriptors' `hits_addend` wrapper when
//!   present; 0 counts as 1;
//! - limitador's check-and-update: either every matching counter takes the hits, or, when one
//!   of them would cross its limit, the answer is `OVER_LIMIT` and nothing is added;
//! - `statuses` stays empty; only `overall_code` is set (plus X-RateLimit-* headers in
//!   `response_headers_to_add` when enabled);
//! - a storage failure or timeout is the gRPC status `UNAVAILABLE`.

use crate::proto::rate_limit_response::Code;
use crate::proto::{
    HeaderValue, RateLimitDescriptor, RateLimitRequest, RateLimitResponse, SERVICE_NAME,
    SHOULD_RATE_LIMIT_PATH,
};
use limitador::limit::{Context, Namespace};
use limitador::{AsyncRateLimiter, CheckResult, RateLimiter};
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

/// The limitador engine behind the service.
pub enum Limiter {
    /// In-process counters (`--storage memory`): exact, lost on exit.
    Memory(RateLimiter),
    /// Counters in Redis (`--redis URL`), shared by every instance using that Redis.
    Redis(AsyncRateLimiter),
}

/// How the service answers.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// Add `X-RateLimit-Limit/-Remaining/-Reset` (draft-polli-ratelimit-headers-03) to
    /// `response_headers_to_add`, like limitador-server's `-H DRAFT_VERSION_03`.
    pub rate_limit_headers: bool,
    /// Upper bound on one storage round trip; past it the call fails with UNAVAILABLE.
    pub storage_timeout: Duration,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            rate_limit_headers: false,
            storage_timeout: Duration::from_secs(2),
        }
    }
}

/// The rate-limit logic, independent of the transport.
pub struct RateLimitHandler {
    limiter: Limiter,
    options: ServiceOptions,
}

impl RateLimitHandler {
    pub fn new(limiter: Limiter, options: ServiceOptions) -> Self {
        RateLimitHandler { limiter, options }
    }

    /// Answers one `ShouldRateLimit` call and logs it (one line, at debug; storage errors at
    /// warn).
    pub async fn should_rate_limit(
        &self,
        req: RateLimitRequest,
    ) -> Result<RateLimitResponse, Status> {
        let started = Instant::now();
        let result = self.decide(&req).await;
        let elapsed_us = started.elapsed().as_micros();
        let descriptors = describe(&req.descriptors);
        match &result {
            Ok((resp, hits)) => tracing::debug!(
                domain = %req.domain,
                descriptors = %descriptors,
                hits = hits,
                code = ?Code::try_from(resp.overall_code).unwrap_or(Code::Unknown),
                elapsed_us = elapsed_us as u64,
                "ShouldRateLimit"
            ),
            Err(status) => tracing::warn!(
                domain = %req.domain,
                descriptors = %descriptors,
                grpc_code = ?status.code(),
                message = status.message(),
                elapsed_us = elapsed_us as u64,
                "ShouldRateLimit failed"
            ),
        }
        result.map(|(resp, _)| resp)
    }

    async fn decide(&self, req: &RateLimitRequest) -> Result<(RateLimitResponse, u64), Status> {
        if req.domain.is_empty() {
            return Ok((response(Code::Unknown, Vec::new()), 0));
        }
        let hits = hits_for(req)?;
        let namespace: Namespace = req.domain.clone().into();

        let values: Vec<HashMap<String, String>> = req
            .descriptors
            .iter()
            .map(|d| {
                d.entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.clone()))
                    .collect()
            })
            .collect();
        let mut ctx = Context::default();
        ctx.list_binding("descriptors".to_string(), values);

        let outcome = match &self.limiter {
            Limiter::Memory(limiter) => limiter
                .check_rate_limited_and_update(&namespace, &ctx, hits)
                .map_err(|e| Status::unavailable(format!("rate-limit storage error: {e}"))),
            Limiter::Redis(limiter) => match tokio::time::timeout(
                self.options.storage_timeout,
                limiter.check_rate_limited_and_update(&namespace, &ctx, hits),
            )
            .await
            {
                Ok(Ok(res)) => Ok(res),
                Ok(Err(e)) => Err(Status::unavailable(format!(
                    "rate-limit storage error: {e}"
                ))),
                Err(_) => Err(Status::unavailable(format!(
                    "rate-limit storage did not answer within {} ms",
                    self.options.storage_timeout.as_millis()
                ))),
            },
        };
        let mut result: CheckResult = outcome?;
        let code = if result.limited {
            Code::OverLimit
        } else {
            Code::Ok
        };
        let headers = if self.options.rate_limit_headers {
            let mut headers: Vec<HeaderValue> = result
                .response_header()
                .into_iter()
                .map(|(key, value)| HeaderValue {
                    key,
                    value,
                    raw_value: Vec::new(),
                })
                .collect();
            headers.sort_by(|a, b| a.key.cmp(&b.key));
            headers
        } else {
            Vec::new()
        };
        Ok((response(code, headers), hits))
    }
}

fn response(code: Code, response_headers_to_add: Vec<HeaderValue>) -> RateLimitResponse {
    RateLimitResponse {
        overall_code: code as i32,
        statuses: Vec::new(),
        response_headers_to_add,
        request_headers_to_add: Vec::new(),
    }
}

/// The hits one call adds: the descriptors' `hits_addend` wrapper when one is present (every
/// descriptor that carries one must carry the same value, since limitador applies one amount
/// to all matching counters), else the request's `hits_addend`; 0 counts as 1 either way.
pub fn hits_for(req: &RateLimitRequest) -> Result<u64, Status> {
    let mut from_descriptors: Option<u64> = None;
    for (i, d) in req.descriptors.iter().enumerate() {
        if let Some(h) = d.hits_addend {
            match from_descriptors {
                Some(prev) if prev != h => {
                    return Err(Status::invalid_argument(format!(
                        "descriptors carry different hits_addend values ({prev} and {h} at \
                         descriptor {i}); send one quota per call"
                    )))
                }
                _ => from_descriptors = Some(h),
            }
        }
    }
    let hits = from_descriptors.unwrap_or(u64::from(req.hits_addend));
    Ok(hits.max(1))
}

/// `[{usage=requests,plan=pro,tenant_id=acme}]`, for the log line.
fn describe(descriptors: &[RateLimitDescriptor]) -> String {
    let mut out = String::from("[");
    for (i, d) in descriptors.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        for (j, e) in d.entries.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}={}", e.key, e.value);
        }
        if let Some(h) = d.hits_addend {
            let _ = write!(out, ";hits_addend={h}");
        }
        out.push('}');
    }
    out.push(']');
    out
}

/// The tonic service: routes `ShouldRateLimit` to the handler, answers UNIMPLEMENTED for
/// anything else. Written by hand (what tonic-build would generate), so no protoc is needed.
#[derive(Clone)]
pub struct RateLimitServer {
    handler: Arc<RateLimitHandler>,
}

impl RateLimitServer {
    pub fn new(handler: Arc<RateLimitHandler>) -> Self {
        RateLimitServer { handler }
    }
}

impl NamedService for RateLimitServer {
    const NAME: &'static str = SERVICE_NAME;
}

struct ShouldRateLimitMethod(Arc<RateLimitHandler>);

impl UnaryService<RateLimitRequest> for ShouldRateLimitMethod {
    type Response = RateLimitResponse;
    type Future = BoxFuture<Response<RateLimitResponse>, Status>;

    fn call(&mut self, request: Request<RateLimitRequest>) -> Self::Future {
        let handler = Arc::clone(&self.0);
        Box::pin(async move {
            let req = request.into_inner();
            // Run in its own task so that a panic inside limitador (e.g. a condition that
            // fails to evaluate) answers INTERNAL instead of resetting the stream.
            match tokio::spawn(async move { handler.should_rate_limit(req).await }).await {
                Ok(result) => result.map(Response::new),
                Err(join_error) => {
                    let detail = panic_message(join_error);
                    tracing::error!(detail = %detail, "ShouldRateLimit handler panicked");
                    Err(Status::internal(format!(
                        "limitador could not evaluate a limit against this request's \
                         descriptors ({detail}); e.g. a limit names descriptors[i] beyond those \
                         sent"
                    )))
                }
            }
        })
    }
}

fn panic_message(join_error: tokio::task::JoinError) -> String {
    if !join_error.is_panic() {
        return join_error.to_string();
    }
    let payload = join_error.into_panic();
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "panic".to_string()
    }
}

impl<B> Service<http::Request<B>> for RateLimitServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() == SHOULD_RATE_LIMIT_PATH {
            let method = ShouldRateLimitMethod(Arc::clone(&self.handler));
            Box::pin(async move {
                let mut grpc = Grpc::new(tonic::codec::ProstCodec::default());
                Ok(grpc.unary(method, req).await)
            })
        } else {
            let path = req.uri().path().to_string();
            Box::pin(async move {
                Ok(Status::unimplemented(format!("no method {path} here")).into_http())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(top: u32, wrappers: &[Option<u64>]) -> RateLimitRequest {
        RateLimitRequest {
            domain: "d".into(),
            descriptors: wrappers
                .iter()
                .map(|w| {
                    let mut d = RateLimitDescriptor::from_pairs([("k", "v")]);
                    d.hits_addend = *w;
                    d
                })
                .collect(),
            hits_addend: top,
        }
    }

    #[test]
    fn hits() {
        assert_eq!(hits_for(&req(0, &[None])).unwrap(), 1);
        assert_eq!(hits_for(&req(7, &[None])).unwrap(), 7);
        assert_eq!(hits_for(&req(7, &[Some(3)])).unwrap(), 3);
        assert_eq!(hits_for(&req(7, &[Some(0)])).unwrap(), 1);
        assert_eq!(hits_for(&req(7, &[None, Some(4), Some(4)])).unwrap(), 4);
        let mixed = hits_for(&req(7, &[Some(4), Some(5)])).unwrap_err();
        assert_eq!(mixed.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            mixed.message(),
            "descriptors carry different hits_addend values (4 and 5 at descriptor 1); send \
             one quota per call"
        );
        assert_eq!(hits_for(&req(0, &[])).unwrap(), 1);
    }
}
