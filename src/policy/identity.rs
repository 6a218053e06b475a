//! Bearer token → verified identity (tenant, user, forwarded claims).
//!
//! Order of checks: size and shape in front of jwt-simple (`token`: canonical base64url, no
//! repeated JSON member, a known `alg`, NumericDates in range), then the unverified `iss` to
//! pick the providers, the provider's accepted `typ`s, key selection by `kid` and by the key
//! type's algorithm family; then jwt-simple checks the signature and `exp`/`nbf`/`iat`/`iss`/
//! `aud` at the caller's `now`. Apart from `iss` (which picks the providers) and the range of
//! the NumericDates, claims are only read once a key has verified the signature.

use std::collections::HashSet;

use jwt_simple::prelude::{Duration, UnixTimeStamp, VerificationOptions};
use jwt_simple::JWTError;
use serde_json::{Map, Value};

use super::denial::Reason;
use super::jwks::{printable, KeySet};
use token::Token;

mod json;
mod token;

/// jwt-simple keeps times as 32.32 fixed point: NumericDates must stay below 2^32 s (year
/// 2106), and so must `now` plus the clock skew, or its arithmetic wraps.
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
    /// The `typ` header values accepted.
    pub token_types: TokenTypes,
    pub inline_keys: Option<KeySet>,
    pub remote: RemoteKeys,
}

/// The JWT types (`typ` header) a provider's tokens may declare (RFC 8725 §3.11): by default
/// none, `JWT` and `at+jwt` (RFC 9068 access tokens), so that other JWTs of the same issuer
/// (`logout+jwt`, `secevent+jwt`, ...) do not authenticate requests. Compared without case and
/// with an `application/` prefix optional (RFC 7515 §4.1.9); the empty string stands for a
/// token without `typ`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenTypes(Vec<String>);

impl Default for TokenTypes {
    fn default() -> Self {
        TokenTypes(vec![String::new(), "jwt".to_owned(), "at+jwt".to_owned()])
    }
}

impl TokenTypes {
    /// The configured list; Err names the index of a bad entry and why. Entries are JWT types:
    /// `JWT`, a name ending in `+jwt`, or "" (no `typ`).
    pub fn from_list(list: &[String]) -> Result<TokenTypes, (Option<usize>, &'static str)> {
        if list.is_empty() {
            return Err((
                None,
                "must name at least one type (\"\" accepts tokens without typ)",
            ));
        }
        let mut types: Vec<String> = Vec::with_capacity(list.len());
        for (i, entry) in list.iter().enumerate() {
            let normal = normalise_typ(entry);
            let named = normal == "jwt" || (normal.len() > 4 && normal.ends_with("+jwt"));
            let jwt = entry.is_empty() || named;
            if !jwt || entry.len() > 128 || entry.chars().any(char::is_control) {
                return Err((
                    Some(i),
                    "not a JWT type: \"JWT\", a name ending in \"+jwt\", or \"\" for no typ",
                ));
            }
            if types.contains(&normal) {
                return Err((Some(i), "listed twice"));
            }
            types.push(normal);
        }
        Ok(TokenTypes(types))
    }

    /// Whether a token with this `typ` header (None: absent) is accepted. A `typ` that is
    /// present names a type: an empty one (or `application/` alone) never matches.
    pub fn accepts(&self, typ: Option<&str>) -> bool {
        match typ.map(normalise_typ) {
            None => self.0.iter().any(String::is_empty),
            Some(normal) => !normal.is_empty() && self.0.contains(&normal),
        }
    }
}

/// A media type as `typ` compares: lower case, without the optional `application/`.
fn normalise_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
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
    Loaded(RemoteSet),
}

/// The last good key set fetched, and until when it may be used.
#[derive(Clone, Debug)]
pub struct RemoteSet {
    pub keys: KeySet,
    /// The last good fetch plus `remote_jwks.max_stale_s` (Unix seconds): later, the keys are
    /// stale and verify nothing.
    pub stale_after: u64,
}

impl RemoteKeys {
    /// Keys fetched at `now`, usable for `max_stale_s` unless fetched again.
    pub fn loaded(keys: KeySet, now: u64, max_stale_s: u64) -> RemoteKeys {
        RemoteKeys::Loaded(RemoteSet {
            keys,
            stale_after: now.saturating_add(max_stale_s),
        })
    }

    /// The same set was fetched again at `now`: it is usable for `max_stale_s` more.
    pub fn refreshed(&mut self, now: u64, max_stale_s: u64) {
        if let RemoteKeys::Loaded(set) = self {
            set.stale_after = now.saturating_add(max_stale_s);
        }
    }

    /// Whether the keys are too old to use at `now`: no good fetch for `max_stale_s`.
    pub fn is_stale(&self, now: u64) -> bool {
        matches!(self, RemoteKeys::Loaded(set) if now > set.stale_after)
    }
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
    /// `exp + clock_skew_s`, or sooner when a remote key verified it and goes stale then: the
    /// identity may be reused (cached) while `now <= expires_at`.
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
        match verify_with(provider, &parsed, rules, now) {
            Ok(usable_until) => {
                let exp = exp.ok_or_else(|| invalid("token has no exp"))?;
                let mut verified = identity(index, &parsed.claims, exp, rules)?;
                verified.expires_at = verified.expires_at.min(usable_until);
                return Ok(verified);
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
    /// A check that does not depend on the key failed: the provider's token types, or a claim
    /// check once a key verified the signature.
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

/// Tries the provider's keys that fit the token's `kid` and `alg`: a key is skipped when both
/// it and the token have a `kid` and the two differ (as Envoy's `jwt_authn` does). The first
/// key whose signature check passes decides with jwt-simple's claim checks. Ok: until when
/// the identity may be reused (`u64::MAX` unless a remote key verified it).
fn verify_with(
    provider: &Provider,
    parsed: &Token<'_>,
    rules: &IdentityRules,
    now: u64,
) -> Result<u64, Failure> {
    if provider.require_kid && parsed.kid.is_none() {
        return Err(Failure::NoKey(format!(
            "provider {} requires a kid in the token header",
            provider.name
        )));
    }
    if !provider.token_types.accepts(parsed.typ.as_deref()) {
        return Err(Failure::Token(invalid("token typ not accepted")));
    }
    let stale = provider.remote.is_stale(now);
    let remote = match &provider.remote {
        RemoteKeys::Loaded(set) if !stale => Some(set),
        RemoteKeys::Loaded(_) | RemoteKeys::NotConfigured | RemoteKeys::Pending => None,
    };
    let keys = provider
        .inline_keys
        .iter()
        .flat_map(KeySet::keys)
        .map(|key| (key, u64::MAX))
        .chain(
            remote
                .into_iter()
                .flat_map(|set| set.keys.keys().map(|key| (key, set.stale_after))),
        );
    let options = options(provider, parsed, rules, now);
    let (mut kid_known, mut tried) = (false, false);
    for (key, usable_until) in keys {
        if let (Some(wanted), Some(kid)) = (&parsed.kid, key.kid()) {
            if wanted != kid {
                continue;
            }
        }
        kid_known = true;
        let Some(verifier) = key.verifier(parsed.alg) else {
            continue;
        };
        tried = true;
        match verifier.verify(parsed.text, options.clone()) {
            Ok(_) => return Ok(usable_until),
            Err(error) => match classify(&error) {
                Failure::Signature => {}
                other => return Err(other),
            },
        }
    }
    Err(if stale {
        Failure::NoKey(format!("keys of provider {} are stale", provider.name))
    } else if tried {
        Failure::Signature
    } else if matches!(provider.remote, RemoteKeys::Pending) {
        Failure::NoKey(format!(
            "keys of provider {} not fetched yet",
            provider.name
        ))
    } else if !kid_known {
        Failure::NoKey("unknown key id".to_owned())
    } else {
        Failure::NoKey(format!("no key for alg {}", parsed.alg))
    })
}

/// jwt-simple's checks, spelled out: the filter's clock and skew (not jwt-simple's 15-minute
/// default tolerance), the provider's issuer and audiences, the token length limit, and the
/// token's own `typ` once the provider accepted it (jwt-simple alone takes only `JWT` and
/// `*+JWT`, without the optional `application/`).
fn options(
    provider: &Provider,
    parsed: &Token<'_>,
    rules: &IdentityRules,
    now: u64,
) -> VerificationOptions {
    VerificationOptions {
        artificial_time: Some(UnixTimeStamp::from_secs(now)),
        time_tolerance: Some(Duration::from_secs(rules.clock_skew_s)),
        allowed_issuers: Some(HashSet::from([provider.issuer.clone()])),
        allowed_audiences: match &provider.audiences {
            Audiences::OneOf(list) => Some(list.iter().cloned().collect()),
            Audiences::Any => None,
        },
        required_signature_type: parsed.typ.clone(),
        max_token_length: Some(rules.max_token_bytes),
        max_header_length: Some(token::MAX_HEADER_B64),
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
        Some(JWTError::NotJWT | JWTError::RequiredSignatureTypeMismatch) => {
            "token typ not accepted"
        }
        Some(JWTError::UnknownCriticalExtension) => "token has unsupported crit header",
        Some(_) => "malformed token",
        // Claims (or header members) that do not deserialize, e.g. `aud` of the wrong type.
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
