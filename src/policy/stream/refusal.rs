//! The replies a stream refuses an admitted request with: a full window's 429, the
//! rate-limit service's 429 (with the headers it may add), and the other refusals' replies.

use crate::policy::denial::{self, LocalReply, Reason};
use crate::policy::quota;
use crate::policy::ratelimit;

/// A refusal after admission: the reply the client gets, and why, for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    /// For logs only.
    pub detail: String,
    pub reply: LocalReply,
}

/// The 429 of a full window (or budget), as at admission.
pub fn quota_refusal(refusal: &quota::Refusal) -> Refusal {
    let mut reply = denial::reply(refusal.reason);
    reply
        .headers
        .push(("retry-after", refusal.retry_after.to_string()));
    reply
        .headers
        .extend(quota::rate_limit_headers(&refusal.windows));
    Refusal {
        reason: refusal.reason,
        detail: format!("retry after {}s", refusal.retry_after),
        reply,
    }
}

pub(super) fn refusal_of(reason: Reason, detail: String) -> Refusal {
    Refusal {
        reason,
        detail,
        reply: denial::reply(reason),
    }
}

/// Headers a rate-limit service may ask to add to a refusal (Limitador's draft-03 set and the
/// IETF fields); others are dropped.
const SERVICE_HEADERS: [&str; 5] = [
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "ratelimit-policy",
    "ratelimit",
];

/// The 429 for an OVER_LIMIT answer about `usage`.
pub(super) fn over_limit(quota: ratelimit::Quota, answer: &ratelimit::Answer) -> Refusal {
    let reason = match (quota.usage, quota.user) {
        (ratelimit::Usage::Requests, false) => Reason::RequestQuotaExceeded,
        (ratelimit::Usage::Tokens, false) => Reason::TokenQuotaExceeded,
        (ratelimit::Usage::Requests, true) => Reason::UserRequestQuotaExceeded,
        (ratelimit::Usage::Tokens, true) => Reason::UserTokenQuotaExceeded,
    };
    let retry_after = answer.reset_after.unwrap_or(1).max(1);
    let mut reply = denial::reply(reason);
    reply.headers.push(("retry-after", retry_after.to_string()));
    for (name, value) in &answer.response_headers {
        // The reply's header names are static; keep the service's known ones.
        if let Some(known) = SERVICE_HEADERS
            .iter()
            .find(|h| h.eq_ignore_ascii_case(name))
        {
            reply.headers.push((known, value.clone()));
        }
    }
    Refusal {
        reason,
        detail: format!("rate-limit service: {} over limit", quota.as_str()),
        reply,
    }
}
