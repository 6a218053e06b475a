//! The Envoy global rate-limit service protocol (gRPC
//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`), encoded by hand: the few
//! protobuf fields the filter needs, without a code generator or a protobuf runtime in the
//! `.wasm`.
//!
//! Each quota kind is the only descriptor of its own call, with entries in the contract's order:
//! `usage` (`requests` or `tokens`), `plan`, `tenant_id`, then the optional `extra_entries`, so
//! services that address descriptors by index (Limitador) see it as `descriptors[0]`. A user's
//! own quota (`per_user`) is a call of its own too: `usage` `user_requests` or `user_tokens`,
//! `plan`, `tenant_id`, `user_id`, then the extra entries but `user_id`. Its own `usage` value
//! keeps it out of every tenant limit, whatever a service matches on.

use std::collections::HashMap;

use crate::policy::protobuf::{put_bytes, put_varint_field, Fields, Wire};
use crate::policy::word::words;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraEntry {
    UserId,
    Model,
}

words!(ExtraEntry: "enum ExtraEntry", UserId = "user_id", Model = "model");

/// The gRPC service and method the filter calls.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// Which quota a call is about (the descriptor's `usage` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Requests,
    Tokens,
}

impl Usage {
    pub fn as_str(self) -> &'static str {
        match self {
            Usage::Requests => "requests",
            Usage::Tokens => "tokens",
        }
    }
}

/// Whose counter a call is about: the tenant's, or one of its users' inside it (`per_user`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub usage: Usage,
    /// The user's counter (`user_requests`, `user_tokens`), else the tenant's.
    pub user: bool,
}

impl Quota {
    pub const fn tenant(usage: Usage) -> Quota {
        Quota { usage, user: false }
    }

    pub const fn user(usage: Usage) -> Quota {
        Quota { usage, user: true }
    }

    /// The descriptor's `usage` entry.
    pub fn as_str(self) -> &'static str {
        match (self.usage, self.user) {
            (Usage::Requests, false) => "requests",
            (Usage::Tokens, false) => "tokens",
            (Usage::Requests, true) => "user_requests",
            (Usage::Tokens, true) => "user_tokens",
        }
    }
}

/// Who a call is about.
pub struct Subject<'a> {
    pub plan: Option<&'a str>,
    pub tenant: &'a str,
    pub user: Option<&'a str>,
    pub model: Option<&'a str>,
}

/// The descriptor entries of one call, in the contract's order. A missing plan is sent as
/// `none` and a missing user or model as `unknown`, so the entry count never changes.
pub fn entries<'a>(
    extra_entries: &[ExtraEntry],
    quota: Quota,
    subject: &Subject<'a>,
) -> Vec<(&'static str, &'a str)> {
    let user = ("user_id", subject.user.unwrap_or("unknown"));
    let mut out = vec![
        ("usage", quota.as_str()),
        ("plan", subject.plan.unwrap_or("none")),
        ("tenant_id", subject.tenant),
    ];
    if quota.user {
        out.push(user);
    }
    for extra in extra_entries {
        match extra {
            ExtraEntry::UserId if !quota.user => out.push(user),
            ExtraEntry::UserId => {}
            ExtraEntry::Model => out.push(("model", subject.model.unwrap_or("unknown"))),
        }
    }
    out
}

/// A serialized `RateLimitRequest` with one descriptor of `entries`, adding `hits`.
///
/// The per-descriptor `hits_addend` (a `UInt64Value`, so it can say 0: "check only") is always
/// set; the top-level `hits_addend` (where 0 means 1) is set too when `hits` > 0, for services
/// that read only that one.
pub fn request(domain: &str, entries: &[(&str, &str)], hits: u64) -> Vec<u8> {
    let mut descriptor = Vec::new();
    for (key, value) in entries {
        let mut entry = Vec::new();
        put_bytes(&mut entry, 1, key.as_bytes());
        put_bytes(&mut entry, 2, value.as_bytes());
        put_bytes(&mut descriptor, 1, &entry);
    }
    let mut wrapper = Vec::new();
    if hits > 0 {
        put_varint_field(&mut wrapper, 1, hits);
    }
    put_bytes(&mut descriptor, 3, &wrapper);

    let mut out = Vec::new();
    put_bytes(&mut out, 1, domain.as_bytes());
    put_bytes(&mut out, 2, &descriptor);
    if let Ok(top) = u32::try_from(hits) {
        if top > 0 {
            put_varint_field(&mut out, 3, u64::from(top));
        }
    }
    out
}

/// A serialized `envoy.config.core.v3.GrpcService` naming an Envoy cluster: a cluster name
/// passed as is could accidentally parse as protobuf (see the host notes).
pub fn grpc_service(cluster: &str) -> Vec<u8> {
    let mut envoy_grpc = Vec::new();
    put_bytes(&mut envoy_grpc, 1, cluster.as_bytes());
    let mut out = Vec::new();
    put_bytes(&mut out, 1, &envoy_grpc);
    out
}

/// The service's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    OverLimit,
    /// `UNKNOWN` (0) or a code this filter does not know: the service could not decide.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub verdict: Verdict,
    /// Seconds until the tightest limit resets, when the service says (`duration_until_reset`).
    pub reset_after: Option<u64>,
    /// The least `limit_remaining` over the descriptor statuses, when the service sends any
    /// (envoyproxy/ratelimit does; Limitador does not).
    pub limit_remaining: Option<u64>,
    /// Headers the service asks to add to the client's response.
    pub response_headers: Vec<(String, String)>,
}

/// Decodes a serialized `RateLimitResponse`; `None` for bytes that are not one.
pub fn answer(bytes: &[u8]) -> Option<Answer> {
    let mut verdict = Verdict::Unknown;
    let mut limit_remaining: Option<u64> = None;
    let mut reset_after: Option<u64> = None;
    let mut response_headers = Vec::new();
    for field in Fields::new(bytes) {
        match field? {
            (1, Wire::Varint(code)) => {
                verdict = match code {
                    1 => Verdict::Ok,
                    2 => Verdict::OverLimit,
                    _ => Verdict::Unknown,
                }
            }
            (2, Wire::Bytes(status)) => {
                for f in Fields::new(status) {
                    match f? {
                        (3, Wire::Varint(remaining)) => {
                            limit_remaining =
                                Some(limit_remaining.map_or(remaining, |r| r.min(remaining)));
                        }
                        (4, Wire::Bytes(duration)) => {
                            let mut seconds = 0;
                            for d in Fields::new(duration) {
                                if let (1, Wire::Varint(s)) = d? {
                                    seconds = s;
                                }
                            }
                            reset_after = Some(reset_after.map_or(seconds, |r| r.max(seconds)));
                        }
                        _ => {}
                    }
                }
            }
            (3, Wire::Bytes(header)) => {
                let (mut key, mut value) = (String::new(), String::new());
                for f in Fields::new(header) {
                    match f? {
                        (1, Wire::Bytes(k)) => key = String::from_utf8(k.to_vec()).ok()?,
                        (2, Wire::Bytes(v)) => value = String::from_utf8(v.to_vec()).ok()?,
                        _ => {}
                    }
                }
                response_headers.push((key, value));
            }
            _ => {}
        }
    }
    Some(Answer {
        verdict,
        reset_after,
        limit_remaining,
        response_headers,
    })
}

/// A post-response token debit: the request's real usage added to the service's `tokens`
/// counter, whatever the service's semantics.
///
/// envoyproxy/ratelimit counts a hit even when it answers OVER_LIMIT (and says how much is
/// left): one call is enough. Limitador refuses a hit that would cross the limit and counts
/// nothing, so a large debit could leave the tenant below its limit and still admitted. The
/// refused amount is then sent again at once as a round of [`pieces`] (half of what could still
/// fit, half of the rest, ... down to 1), side by side: taken largest first, those that fit
/// leave the counter exhausted in one more round trip. The service may take them in another
/// order (it answers side-by-side calls concurrently, and a piece that fits later may be
/// refused first), so once every piece of a round has its answer, the smallest refused piece
/// (what is left is less than it) is split again into a new round; the debit ends when a hit of
/// 1 is refused (the counter is full) or nothing was refused. A service that checks and then
/// updates in two steps (Limitador on Redis) may take racing pieces that together cross the
/// limit: the counter then ends above it, never above the real usage. Failed calls are retried
/// a few times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debit {
    /// The tenant's `tokens` counter, or the user's `user_tokens`.
    pub quota: Quota,
    pub tenant: String,
    pub plan: Option<String>,
    pub user: Option<String>,
    pub model: Option<String>,
    /// The amount of this call.
    hits: u64,
    /// The round this call is a piece of (`None`: the whole debit).
    round: Option<u64>,
    failures: u32,
}

/// Calls a debit's amount may fail before it is given up.
const DEBIT_FAILURES: u32 = 3;

impl Debit {
    pub fn new(
        quota: Quota,
        tenant: String,
        plan: Option<String>,
        user: Option<String>,
        model: Option<String>,
        tokens: u64,
    ) -> Debit {
        Debit {
            quota,
            tenant,
            plan,
            user,
            model,
            hits: tokens,
            round: None,
            failures: 0,
        }
    }

    /// The amount this call adds.
    pub fn hits(&self) -> u64 {
        self.hits
    }
}

/// What follows one debit call's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DebitNext {
    /// Calls to send now: the same amount after a failure, a round of pieces.
    pub send: Vec<Debit>,
    /// This call failed too often: these tokens were never debited.
    pub gave_up: Option<u64>,
}

/// The rounds of pieces whose answers are still coming in (one per refused debit at a time;
/// a round is forgotten when its last piece is answered or given up).
#[derive(Debug, Default)]
pub struct Debits {
    rounds: HashMap<u64, Round>,
    next_round: u64,
}

#[derive(Debug)]
struct Round {
    pending: usize,
    smallest_refused: Option<u64>,
}

impl Debits {
    /// Takes the outcome of one debit call (`None`: it failed).
    pub fn answered(&mut self, debit: Debit, answer: Option<&Answer>) -> DebitNext {
        let refused = match answer.map(|a| (&a.verdict, a.limit_remaining)) {
            Some((Verdict::Ok, _)) => None,
            // The service counted it and says so (envoyproxy/ratelimit).
            Some((Verdict::OverLimit, Some(_))) => None,
            // Refused and not counted (Limitador): what still fits is less than this amount.
            Some((Verdict::OverLimit, None)) => Some(debit.hits),
            Some((Verdict::Unknown, _)) | None => {
                let failures = debit.failures.saturating_add(1);
                if failures < DEBIT_FAILURES {
                    return DebitNext {
                        send: vec![Debit { failures, ..debit }],
                        gave_up: None,
                    };
                }
                let gave_up = Some(debit.hits);
                let send = self.piece_done(&debit, None);
                return DebitNext { send, gave_up };
            }
        };
        let send = match (debit.round, refused) {
            (None, Some(hits)) => self.split(&debit, hits),
            (None, None) => Vec::new(),
            (Some(_), _) => self.piece_done(&debit, refused),
        };
        DebitNext {
            send,
            gave_up: None,
        }
    }

    /// Notes a piece's end; after a round's last piece, the next round if one is needed.
    fn piece_done(&mut self, piece: &Debit, refused: Option<u64>) -> Vec<Debit> {
        let Some(id) = piece.round else {
            return Vec::new();
        };
        let Some(round) = self.rounds.get_mut(&id) else {
            return Vec::new();
        };
        round.pending = round.pending.saturating_sub(1);
        if let Some(hits) = refused {
            round.smallest_refused = Some(round.smallest_refused.map_or(hits, |s| s.min(hits)));
        }
        if round.pending > 0 {
            return Vec::new();
        }
        let smallest = round.smallest_refused;
        self.rounds.remove(&id);
        match smallest {
            Some(hits) => self.split(piece, hits),
            None => Vec::new(),
        }
    }

    /// A new round for a refused amount of `hits`: what is left is at most `hits - 1`.
    fn split(&mut self, debit: &Debit, hits: u64) -> Vec<Debit> {
        let amounts = pieces(hits.saturating_sub(1));
        if amounts.is_empty() {
            return Vec::new();
        }
        let id = self.next_round;
        self.next_round = self.next_round.wrapping_add(1);
        self.rounds.insert(
            id,
            Round {
                pending: amounts.len(),
                smallest_refused: None,
            },
        );
        amounts
            .into_iter()
            .map(|hits| Debit {
                hits,
                round: Some(id),
                failures: 0,
                ..debit.clone()
            })
            .collect()
    }
}

/// `total` as amounts taken by halves (ceil(total / 2), then half of the rest, ... 1): each is
/// at most one more than all the smaller ones together, so a counter that takes the pieces
/// that fit, largest first, fills up to any amount below `total` exactly.
pub fn pieces(total: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut left = total;
    while left > 0 {
        let piece = left.div_ceil(2);
        out.push(piece);
        left -= piece;
    }
    out
}

#[cfg(test)]
mod tests;
