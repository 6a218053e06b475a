//! What the shell and a stream exchange: the [`Event`]s the shell hands it, one per
//! proxy-wasm callback (and per rate-limit answer), and the [`Effects`] it executes back.

use super::refusal::Refusal;
use super::Phase;
use crate::policy::denial::Reason;
use crate::policy::metering::Outcome;
use crate::policy::output_cap::{self, Cap};
use crate::policy::plan::PerUser;
use crate::policy::quota::{self, Actual, Demand, Reservation};
use crate::policy::ratelimit;

/// What the shell tells the stream: one per proxy-wasm callback (and per rate-limit answer).
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Request body data arrived: `size` bytes are buffered in all; `end`: the body is complete.
    RequestData {
        size: usize,
        end: bool,
    },
    /// The request ended with trailers: the body buffered so far is all of it.
    RequestTrailers,
    /// The whole buffered request body, read by the shell because [`Effects::read_body`] said so.
    RequestBody(&'a [u8]),
    /// A rate-limit call left; its answer will follow.
    CallSent,
    /// A rate-limit call about `quota` ended: the service's answer, or `None` when the call
    /// failed (not sent, timed out, not OK, unreadable).
    CallAnswered {
        quota: ratelimit::Quota,
        answer: Option<&'a ratelimit::Answer>,
    },
    /// The held headers went on before the body came (the shell found Envoy does not hold
    /// headers for the body, or the client sent none for long): they left without
    /// `content-length` when [`Stream::body_may_change`](super::Stream::body_may_change).
    HeadersReleased,
    ResponseHeaders {
        status: u32,
        content_type: &'a str,
    },
    /// Response body data: `chunk` is what the shell read (when
    /// [`Stream::wants_response_bytes`](super::Stream::wants_response_bytes) said so), `size`
    /// the bytes Envoy holds.
    ResponseData {
        chunk: Option<&'a [u8]>,
        size: usize,
        end: bool,
    },
    /// The response ended with trailers; `buffered` is the held response body, when one is held.
    ResponseTrailers {
        buffered: Option<&'a [u8]>,
    },
    /// The stream is over (Envoy's `on_log`): whatever did not end, never will.
    Log,
}

/// Which rate-limit calls to send now: the tenant's quotas, and its user's (`per_user`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ask {
    pub requests: bool,
    pub tokens: bool,
    pub user_requests: bool,
    pub user_tokens: bool,
}

impl Ask {
    pub fn quotas(self) -> impl Iterator<Item = ratelimit::Quota> {
        use ratelimit::{Quota, Usage};
        [
            (self.requests, Quota::tenant(Usage::Requests)),
            (self.user_requests, Quota::user(Usage::Requests)),
            (self.tokens, Quota::tenant(Usage::Tokens)),
            (self.user_tokens, Quota::user(Usage::Tokens)),
        ]
        .into_iter()
        .filter_map(|(ask, quota)| ask.then_some(quota))
    }
}

/// Which of a user's own quotas (`per_user`) the rate-limit service holds as well: those the
/// plan gives windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserQuotas {
    pub requests: bool,
    pub tokens: bool,
}

impl UserQuotas {
    pub fn of(per_user: Option<&PerUser>) -> UserQuotas {
        per_user.map_or(UserQuotas::default(), |p| UserQuotas {
            requests: !p.limits.requests.is_empty(),
            tokens: !p.limits.tokens.is_empty(),
        })
    }
}

/// How a request callback answers Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Pause,
}

/// The request callback that answered `Pause` last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// `on_http_request_headers`.
    Headers,
    /// `on_http_request_body` or `on_http_request_trailers`.
    Body,
}

/// The one settlement of a request: its reservation goes back and its charge is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// What the tenant's counters hold for the request; `None` when it has no quotas.
    pub reservation: Option<Reservation>,
    /// What the request used and is charged; `None` when it is not metered
    /// ([`crate::policy::metering::meters`]): nothing is charged or recorded of its usage.
    pub outcome: Option<Outcome>,
    /// The id of a provider-side object the answer created: its owner is this tenant.
    pub created: Option<String>,
    /// The tokens to debit at the rate-limit service (0: none).
    pub debit_tokens: u64,
    /// Debit them from the user's `user_tokens` counter too.
    pub debit_user: bool,
    /// `Ended`, `Aborted` or `Refused`.
    pub phase: Phase,
}

impl Settlement {
    pub fn charge(&self) -> Actual {
        self.outcome
            .as_ref()
            .map_or(Actual::default(), |o| o.charge)
    }
}

/// What the shell does after an event. Everything is optional; most events produce little.
#[derive(Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Effects {
    /// Read the whole buffered request body and send it back as [`Event::RequestBody`].
    pub read_body: bool,
    /// Replace the request body by this.
    pub new_body: Option<Vec<u8>>,
    /// Set the request's `content-length` to this (the headers are still held).
    pub content_length: Option<usize>,
    /// Remove the request's `content-length` (a body that may change follows headers that go
    /// on now).
    pub drop_content_length: bool,
    /// Remove the request's `accept-encoding`: the filter reads the answer (its usage, the id
    /// it creates, a listing), so it asks for it uncompressed. Envoy's compressor filter,
    /// placed before this one, can still compress towards the client.
    pub plain_answer: bool,
    /// Replace the reservation held for the request by one for this demand, then tell the
    /// stream with [`Stream::reserved`](super::Stream::reserved).
    pub reserve: Option<Demand>,
    /// Replace the reservation held for the request by one for its output limit capped to the
    /// room left ([`output_cap::reserve`]), then tell the stream with
    /// [`Stream::capped`](super::Stream::capped).
    pub cap: Option<output_cap::Ask>,
    /// Rate-limit calls to send now (report each with [`Event::CallSent`], then its
    /// [`Event::CallAnswered`]: with no answer at once when it cannot be sent).
    pub ask: Ask,
    /// Answer the client with this instead of the upstream (the record becomes a denial).
    pub refuse: Option<Refusal>,
    /// The rate-limit service could not decide and `failure_mode` is `allow`: the request goes
    /// on, and its record says why it was not fully checked.
    pub admitted_despite: Option<Reason>,
    /// The tenant is in shadow mode: this is what enforcement would have refused (the request
    /// goes on).
    pub shadowed: Option<(Reason, String)>,
    /// Let a request held earlier go on (after an asynchronous answer).
    pub resume: bool,
    /// Hold the response body (a listing being filtered).
    pub hold_response: bool,
    /// Remove the response's `content-length` (its body will be replaced).
    pub drop_response_length: bool,
    /// Replace the response body by this.
    pub new_response_body: Option<Vec<u8>>,
    /// Reset the response (what follows must not reach the client).
    pub reset_response: bool,
    /// Mark the answer private for HTTP caches (see `isolation::private_cache_control`).
    pub private_cache: bool,
    /// Take the request's settlement (exactly once per stream).
    pub settle: Option<Settlement>,
}

/// How the shell's capped reservation went (see [`Effects::cap`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capping {
    Reserved(Reservation, Cap),
    /// No output limit fits: the request is refused as a full window refuses.
    Refused(quota::Refusal),
    /// The counters could not be updated: the request goes on uncapped.
    Unavailable,
}
