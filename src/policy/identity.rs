//! Bearer token → verified identity (tenant, user, forwarded claims).
//!
//! Order of checks: size and shape, then the unverified `iss` to pick the providers, then
//! key selection by `kid` and by the key type's algorithm family, then jwt-simple checks the
//! signature and `exp`/`nbf`/`iat`/`iss`/`aud` at the caller's `now`. Claims are only read
//! from the payload once its signature has verified.

use std::collections::HashSet;

use jwt_simple::prelude::{Duration, UnixTimeStamp, VerificationOptions};
use jwt_simple::JWTError;
use serde_json::{Map, Value};

use super::denial::Reason;
use super::jwks::{base64url_decode, printable, Alg, KeySet};

/// jwt-simple keeps times as 32.32 fixed point: seconds must stay below 2^32 (year 2106)
/// or its arithmetic wraps.
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
    let parsed = Parsed::new(token)?;
    let iss = match parsed.claims.get("iss") {
        Some(Value::String(iss)) => iss.as_str(),
        _ => return Err(invalid("token iss missing or not a string")),
    };
    let exp = numeric_date(&parsed.claims, "exp")?;
    numeric_date(&parsed.claims, "nbf")?;
    numeric_date(&parsed.claims, "iat")?;
    if now.saturating_add(rules.clock_skew_s) >= TIME_LIMIT {
        return Err(invalid("clock or clock_skew_s out of supported range"));
    }

    let mut best: Option<Failure> = None;
    for (index, provider) in providers.iter().enumerate() {
        if provider.issuer != iss {
            continue;
        }
        match verify_with(provider, token, &parsed, rules, now) {
            Ok(()) => {
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

/// Header and payload decoded once, before any signature check. `claims` must not be trusted
/// until a verifier has accepted the token.
struct Parsed {
    alg: Alg,
    kid: Option<String>,
    claims: Map<String, Value>,
}

impl Parsed {
    fn new(token: &str) -> Result<Parsed, TokenRejection> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("token must have three dot-separated parts"));
        };
        let mut header = json_object(header).ok_or_else(|| invalid("malformed token header"))?;
        let alg = match header.get("alg") {
            Some(Value::String(name)) => Alg::parse(name)
                .ok_or_else(|| invalid(format!("alg {} not accepted", printable(name, 16))))?,
            _ => return Err(invalid("token header has no alg")),
        };
        let kid = match header.remove("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid),
            Some(_) => return Err(invalid("token kid is not a string")),
        };
        let claims = json_object(payload).ok_or_else(|| invalid("malformed token payload"))?;
        if signature.is_empty() || base64url_decode(signature, false).is_none() {
            return Err(invalid("malformed token signature"));
        }
        Ok(Parsed { alg, kid, claims })
    }
}

/// A base64url-encoded JSON object.
fn json_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = base64url_decode(part, false)?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A NumericDate claim in seconds: absent → None; otherwise a non-negative number below
/// `TIME_LIMIT` (fractions truncated, as jwt-simple does), or the token is refused. This keeps
/// jwt-simple's fixed-point time arithmetic exact.
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
    /// A key verified the signature (or the token is malformed for every key), and a check
    /// that does not depend on the key failed.
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

/// Tries the provider's keys that fit the token's `kid` and `alg`.
fn verify_with(
    provider: &Provider,
    token: &str,
    parsed: &Parsed,
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
    let options = options(provider, rules, now);
    let (mut kid_known, mut tried) = (false, false);
    for key in keys {
        if let Some(kid) = &parsed.kid {
            if key.kid() != Some(kid.as_str()) {
                continue;
            }
            kid_known = true;
        }
        let Some(verifier) = key.verifier(parsed.alg) else {
            continue;
        };
        tried = true;
        match verifier.verify(token, options.clone()) {
            Ok(_) => return Ok(()),
            Err(error) => match classify(&error) {
                Failure::Signature => {}
                other => return Err(other),
            },
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

fn options(provider: &Provider, rules: &IdentityRules, now: u64) -> VerificationOptions {
    VerificationOptions {
        artificial_time: Some(UnixTimeStamp::from_secs(now)),
        time_tolerance: Some(Duration::from_secs(rules.clock_skew_s)),
        allowed_issuers: Some(HashSet::from([provider.issuer.clone()])),
        allowed_audiences: match &provider.audiences {
            Audiences::OneOf(list) => Some(list.iter().cloned().collect()),
            Audiences::Any => None,
        },
        max_token_length: Some(rules.max_token_bytes),
        ..VerificationOptions::default()
    }
}

/// Maps a jwt-simple error. Bad signatures let the next key try; everything else is final.
fn classify(error: &jwt_simple::Error) -> Failure {
    let detail = match error.downcast_ref::<JWTError>() {
        Some(JWTError::InvalidSignature | JWTError::InvalidAuthenticationTag) => {
            return Failure::Signature
        }
        Some(JWTError::TokenHasExpired) => {
            return Failure::Token(TokenRejection {
                reason: Reason::TokenExpired,
                detail: "token expired".to_owned(),
            })
        }
        Some(JWTError::TokenNotValidYet) => "token not yet valid",
        Some(JWTError::ClockDrift) => "token issued in the future",
        Some(JWTError::RequiredAudienceMismatch | JWTError::RequiredAudienceMissing) => {
            "audience not accepted"
        }
        Some(JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing) => {
            "issuer not accepted"
        }
        Some(JWTError::TokenTooLong) => "token too long",
        Some(JWTError::HeaderTooLarge) => "token header too large",
        Some(JWTError::NotJWT) => "token typ not accepted",
        Some(JWTError::UnknownCriticalExtension) => "token has unsupported crit header",
        Some(_) => "malformed token",
        // Claims that do not deserialize (e.g. `aud` of the wrong type).
        None if error.is::<serde_json::Error>() => "malformed token claims",
        // Backend errors while checking a signature (e.g. wrong Ed25519 signature length).
        None => return Failure::Signature,
    };
    Failure::Token(invalid(detail))
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
