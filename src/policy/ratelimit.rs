//! The Envoy global rate-limit service protocol (gRPC
//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`), encoded by hand: the few
//! protobuf fields the filter needs, without a code generator or a protobuf runtime in the
//! `.wasm`.
//!
//! Each quota kind is the only descriptor of its own call, with entries in the contract's order:
//! `usage` (`requests` or `tokens`), `plan`, `tenant_id`, then the optional `extra_entries`, so
//! services that address descriptors by index (Limitador) see it as `descriptors[0]`.

use crate::policy::config::{ExtraEntry, GlobalRateLimit};

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
    rules: &GlobalRateLimit,
    usage: Usage,
    subject: &Subject<'a>,
) -> Vec<(&'static str, &'a str)> {
    let mut out = vec![
        ("usage", usage.as_str()),
        ("plan", subject.plan.unwrap_or("none")),
        ("tenant_id", subject.tenant),
    ];
    for extra in &rules.extra_entries {
        out.push(match extra {
            ExtraEntry::UserId => ("user_id", subject.user.unwrap_or("unknown")),
            ExtraEntry::Model => ("model", subject.model.unwrap_or("unknown")),
        });
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
            (1, Value::Varint(code)) => {
                verdict = match code {
                    1 => Verdict::Ok,
                    2 => Verdict::OverLimit,
                    _ => Verdict::Unknown,
                }
            }
            (2, Value::Bytes(status)) => {
                for f in Fields::new(status) {
                    match f? {
                        (3, Value::Varint(remaining)) => {
                            limit_remaining =
                                Some(limit_remaining.map_or(remaining, |r| r.min(remaining)));
                        }
                        (4, Value::Bytes(duration)) => {
                            let mut seconds = 0;
                            for d in Fields::new(duration) {
                                if let (1, Value::Varint(s)) = d? {
                                    seconds = s;
                                }
                            }
                            reset_after = Some(reset_after.map_or(seconds, |r| r.max(seconds)));
                        }
                        _ => {}
                    }
                }
            }
            (3, Value::Bytes(header)) => {
                let (mut key, mut value) = (String::new(), String::new());
                for f in Fields::new(header) {
                    match f? {
                        (1, Value::Bytes(k)) => key = String::from_utf8(k.to_vec()).ok()?,
                        (2, Value::Bytes(v)) => value = String::from_utf8(v.to_vec()).ok()?,
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
/// refused amount is then sent again at once as [`pieces`] (half of what could still fit, half
/// of the rest, ... down to 1), side by side: the service takes those that fit, so one more
/// round trip leaves the counter exhausted, before the tenant's next request is checked. A
/// service that checks and then updates in two steps (Limitador on Redis) may take racing
/// pieces that together cross the limit: the counter then ends above it, never above the real
/// usage. A refused piece ends there. Failed calls are retried a few times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debit {
    pub tenant: String,
    pub plan: Option<String>,
    pub user: Option<String>,
    pub model: Option<String>,
    /// The amount of this call.
    hits: u64,
    /// The first call of the debit (refused, it is split into pieces).
    whole: bool,
    failures: u32,
}

/// What follows one debit call's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebitNext {
    /// Counted, or refused as a piece: nothing more to send.
    Done,
    /// Send these calls now (the same amount after a failure; the pieces of a refused debit).
    Send(Vec<Debit>),
    /// The call failed too often: these tokens were never debited.
    GaveUp(u64),
}

/// Calls a debit's amount may fail before it is given up.
const DEBIT_FAILURES: u32 = 3;

impl Debit {
    pub fn new(
        tenant: String,
        plan: Option<String>,
        user: Option<String>,
        model: Option<String>,
        tokens: u64,
    ) -> Debit {
        Debit {
            tenant,
            plan,
            user,
            model,
            hits: tokens,
            whole: true,
            failures: 0,
        }
    }

    /// The amount this call adds.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Takes the outcome of this debit's call (`None`: it failed).
    pub fn answered(self, answer: Option<&Answer>) -> DebitNext {
        match answer.map(|a| (&a.verdict, a.limit_remaining)) {
            Some((Verdict::Ok, _)) => DebitNext::Done,
            // The service counted it and says so (envoyproxy/ratelimit).
            Some((Verdict::OverLimit, Some(_))) => DebitNext::Done,
            // Refused and not counted (Limitador): what still fits is less than this amount.
            Some((Verdict::OverLimit, None)) if self.whole && self.hits > 1 => DebitNext::Send(
                pieces(self.hits.saturating_sub(1))
                    .into_iter()
                    .map(|hits| Debit {
                        hits,
                        whole: false,
                        failures: 0,
                        ..self.clone()
                    })
                    .collect(),
            ),
            Some((Verdict::OverLimit, None)) => DebitNext::Done,
            Some((Verdict::Unknown, _)) | None => {
                let failures = self.failures.saturating_add(1);
                if failures >= DEBIT_FAILURES {
                    DebitNext::GaveUp(self.hits)
                } else {
                    DebitNext::Send(vec![Debit { failures, ..self }])
                }
            }
        }
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

// === Protobuf wire format (just what the messages above use) ===

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, n: u64) {
    put_varint(out, field << 3);
    put_varint(out, n);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed-width fields, skipped.
    Other,
}

/// Iterates over the fields of one message; yields `None` once on malformed input.
struct Fields<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Fields<'a> {
        Fields {
            rest: bytes,
            failed: false,
        }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.rest.split_first()?;
            self.rest = rest;
            n |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.rest.len() {
            return None;
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(taken)
    }

    fn field(&mut self) -> Option<(u64, Value<'a>)> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => self.take(8).map(|_| Value::Other)?,
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                Value::Bytes(self.take(len)?)
            }
            5 => self.take(4).map(|_| Value::Other)?,
            _ => return None,
        };
        Some((key >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Option<(u64, Value<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let field = self.field();
        self.failed = field.is_none();
        Some(field)
    }
}

#[cfg(test)]
mod tests;
