//! Bearer token → verified identity (tenant, user, forwarded claims).
//!
//! Order of checks: size and shape (header included: `crit`, `typ`), then the unverified
//! `iss` to pick the providers, then key selection by `kid` and by the key type's algorithm
//! family, then the signature, then the registered claims (`sub`/`jti`/`aud` types,
//! `iat`/`nbf`/`exp` at the caller's `now`, `aud`). Claims are only read from the payload once
//! its signature has verified.

use serde_json::{Map, Value};

use super::denial::Reason;
use super::jwks::{printable, KeySet};
use token::{check_claims, ClaimRules, Token};

mod token;

/// NumericDates must stay below 2^32 s (year 2106), and so must `now` plus the clock skew.
const TIME_LIMIT: u64 = 1 << 32;
const MAX_TENANT_BYTES: usize = 128;
const MAX_CLAIM_VALUE_BYTES: usize = 1024;

/// A claim name, or a dotted path to a nested claim (`org.id`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimPath(String);

impl ClaimPath {
    /// None if the path is empty or has an empty segment (`a..b`, `.a`).
    pub fn parse(s: &str) -> Option<ClaimPath> {
        if s.split('.').any(str::is_empty) {
            return None;
        }
        Some(ClaimPath(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The claim's value. A top-level claim whose name is the whole path wins (namespaced
    /// claims such as `https://example.com/tenant` contain dots); otherwise the path is followed
    /// through nested objects.
    fn lookup<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        if let Some(value) = claims.get(&self.0) {
            return Some(value);
        }
        let mut segments = self.0.split('.');
        let first = claims.get(segments.next()?)?;
        segments.try_fold(first, |value, segment| value.get(segment))
    }
}

/// A token issuer and the keys that may sign for it.
#[derive(Clone, Debug)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Audiences,
    /// Refuse tokens without a `kid` header, so that no token makes the filter try every key.
    pub require_kid: bool,
    pub inline_keys: Option<KeySet>,
    pub remote: RemoteKeys,
}

/// Which `aud` values a provider's tokens may carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audiences {
    /// The token's `aud` must contain one of these (never empty).
    OneOf(Vec<String>),
    /// `aud` is not checked: the configuration said `"audiences": "any"` explicitly.
    Any,
}

/// Keys fetched from `remote_jwks`. The shell sets `Loaded` on each successful fetch.
#[derive(Clone, Debug)]
pub enum RemoteKeys {
    NotConfigured,
    /// Configured, but no fetch has succeeded yet.
    Pending,
    Loaded(KeySet),
}

#[derive(Clone, Debug)]
pub struct IdentityRules {
    pub tenant_claim: ClaimPath,
    pub user_claim: Option<ClaimPath>,
    pub clock_skew_s: u64,
    /// (claim, lower-case header name).
    pub forward_claims: Vec<(ClaimPath, String)>,
    pub max_token_bytes: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedToken {
    /// Index into the providers slice given to `verify`.
    pub provider: usize,
    pub tenant: String,
    pub user: Option<String>,
    /// (header, value), in `forward_claims` order.
    pub forwarded: Vec<(String, String)>,
    /// `exp + clock_skew_s`: the token is valid while `now <= expires_at`.
    pub expires_at: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TokenRejection {
    pub reason: Reason,
    /// Short, for logs; never contains the token.
    pub detail: String,
}

fn invalid(detail: impl Into<String>) -> TokenRejection {
    TokenRejection {
        reason: Reason::InvalidToken,
        detail: detail.into(),
    }
}

/// Verifies `token` against the providers whose issuer is the token's `iss`.
pub fn verify(
    token: &str,
    providers: &[Provider],
    rules: &IdentityRules,
    now: u64,
) -> Result<VerifiedToken, TokenRejection> {
    if token.len() > rules.max_token_bytes {
        return Err(invalid("token too long"));
    }
    let parsed = Token::parse(token)?;
    let iss = match parsed.claims.get("iss") {
        Some(Value::String(iss)) => iss.as_str(),
        _ => return Err(invalid("token iss missing or not a string")),
    };
    let times = [
        numeric_date(&parsed.claims, "iat")?,
        numeric_date(&parsed.claims, "nbf")?,
        numeric_date(&parsed.claims, "exp")?,
    ];
    if now.saturating_add(rules.clock_skew_s) >= TIME_LIMIT {
        return Err(invalid("clock or clock_skew_s out of supported range"));
    }

    let mut best: Option<Failure> = None;
    for (index, provider) in providers.iter().enumerate() {
        if provider.issuer != iss {
            continue;
        }
        match verify_with(provider, &parsed, times, rules, now) {
            Ok(()) => {
                let [_, _, exp] = times;
                let exp = exp.ok_or_else(|| invalid("token has no exp"))?;
                return identity(index, &parsed.claims, exp, rules);
            }
            Err(failure) => {
                if best.as_ref().is_none_or(|b| failure.rank() > b.rank()) {
                    best = Some(failure);
                }
            }
        }
    }
    Err(match best {
        None => invalid(format!("unknown issuer {}", printable(iss, 64))),
        Some(Failure::NoKey(detail)) => invalid(detail),
        Some(Failure::Signature) => invalid("signature verification failed"),
        Some(Failure::Token(rejection)) => rejection,
    })
}

/// A NumericDate claim in seconds: absent → None; otherwise a non-negative number below
/// `TIME_LIMIT` (fractions truncated), or the token is refused.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenRejection> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let secs = match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < TIME_LIMIT as f64)
                .map(|f| f as u64)
        }),
        _ => None,
    };
    match secs {
        Some(secs) if secs < TIME_LIMIT => Ok(Some(secs)),
        _ => Err(invalid(format!("token {name} is not a valid NumericDate"))),
    }
}

/// Why one provider did not accept the token. Higher rank = more informative; across several
/// providers with the same issuer the highest-ranked failure is reported.
enum Failure {
    /// No key to try.
    NoKey(String),
    /// Every candidate key refused the signature.
    Signature,
    /// A key verified the signature, and a check of the claims failed.
    Token(TokenRejection),
}

impl Failure {
    fn rank(&self) -> u8 {
        match self {
            Failure::NoKey(_) => 0,
            Failure::Signature => 1,
            Failure::Token(_) => 2,
        }
    }
}

/// Tries the provider's keys that fit the token's `kid` and `alg`; the first that verifies the
/// signature has the claims checked.
fn verify_with(
    provider: &Provider,
    parsed: &Token<'_>,
    times: [Option<u64>; 3],
    rules: &IdentityRules,
    now: u64,
) -> Result<(), Failure> {
    if provider.require_kid && parsed.kid.is_none() {
        return Err(Failure::NoKey(format!(
            "provider {} requires a kid in the token header",
            provider.name
        )));
    }
    let remote = match &provider.remote {
        RemoteKeys::Loaded(keys) => Some(keys),
        RemoteKeys::NotConfigured | RemoteKeys::Pending => None,
    };
    let keys = provider
        .inline_keys
        .iter()
        .chain(remote)
        .flat_map(KeySet::keys);
    let (mut kid_known, mut tried) = (false, false);
    for key in keys {
        if let Some(kid) = &parsed.kid {
            if key.kid() != Some(kid.as_str()) {
                continue;
            }
            kid_known = true;
        }
        if !key.accepts(parsed.alg) {
            continue;
        }
        tried = true;
        let input = parsed.signing_input.as_bytes();
        if key.verify(parsed.alg, input, &parsed.signature) {
            let claim_rules = ClaimRules {
                audiences: &provider.audiences,
                now,
                clock_skew_s: rules.clock_skew_s,
            };
            return check_claims(&parsed.claims, times, &claim_rules).map_err(Failure::Token);
        }
    }
    Err(if tried {
        Failure::Signature
    } else if matches!(provider.remote, RemoteKeys::Pending) {
        Failure::NoKey(format!(
            "keys of provider {} not fetched yet",
            provider.name
        ))
    } else if parsed.kid.is_some() && !kid_known {
        Failure::NoKey("unknown key id".to_owned())
    } else {
        Failure::NoKey(format!("no key for alg {}", parsed.alg))
    })
}

/// Reads the identity out of verified claims.
fn identity(
    provider: usize,
    claims: &Map<String, Value>,
    exp: u64,
    rules: &IdentityRules,
) -> Result<VerifiedToken, TokenRejection> {
    let tenant = match rules.tenant_claim.lookup(claims) {
        Some(Value::String(t))
            if !t.is_empty() && t.len() <= MAX_TENANT_BYTES && !has_control(t) =>
        {
            t.clone()
        }
        _ => {
            return Err(invalid(format!(
                "tenant claim {} missing or not a valid string",
                rules.tenant_claim.as_str()
            )))
        }
    };
    let user = rules
        .user_claim
        .as_ref()
        .and_then(|path| path.lookup(claims))
        .filter(|v| !v.is_boolean())
        .and_then(claim_text);
    let forwarded = rules
        .forward_claims
        .iter()
        .filter_map(|(path, header)| {
            let value = claim_text(path.lookup(claims)?)?;
            Some((header.clone(), value))
        })
        .collect();
    Ok(VerifiedToken {
        provider,
        tenant,
        user,
        forwarded,
        expires_at: exp.saturating_add(rules.clock_skew_s),
    })
}

/// A scalar claim as text fit for a header value: strings, numbers and booleans; at most
/// 1024 bytes, no control characters.
fn claim_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null | Value::Array(_) | Value::Object(_) => return None,
    };
    (text.len() <= MAX_CLAIM_VALUE_BYTES && !has_control(&text)).then_some(text)
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests;
