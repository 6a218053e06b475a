//! A compact JWS (RFC 7515) as the filter reads it: header and payload decoded once, the
//! header checked before any key is looked up, and the registered claims (RFC 7519 §4.1)
//! checked once a signature has verified.

use serde_json::{Map, Value};

use super::{invalid, Audiences, TokenRejection};
use crate::policy::denial::Reason;
use crate::policy::jwks::{base64url_decode, printable, Alg};

/// Longer base64url headers are refused before they are decoded.
const MAX_HEADER_B64: usize = 8192;

/// A token split and decoded. `claims` must not be trusted until a key has verified
/// `signature` over `signing_input`.
pub(super) struct Token<'a> {
    pub(super) alg: Alg,
    pub(super) kid: Option<String>,
    pub(super) claims: Map<String, Value>,
    /// `header.payload`: what the signature covers.
    pub(super) signing_input: &'a str,
    pub(super) signature: Vec<u8>,
}

impl<'a> Token<'a> {
    pub(super) fn parse(token: &'a str) -> Result<Token<'a>, TokenRejection> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("token must have three dot-separated parts"));
        };
        if header_b64.len() > MAX_HEADER_B64 {
            return Err(invalid("token header too large"));
        }
        let mut header =
            json_object(header_b64).ok_or_else(|| invalid("malformed token header"))?;
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
        check_header(&header)?;
        let claims = json_object(payload_b64).ok_or_else(|| invalid("malformed token payload"))?;
        let signature = match base64url_decode(signature, false) {
            Some(bytes) if !bytes.is_empty() => bytes,
            _ => return Err(invalid("malformed token signature")),
        };
        Ok(Token {
            alg,
            kid,
            claims,
            signing_input: token
                .get(..header_b64.len() + 1 + payload_b64.len())
                .unwrap_or_default(),
            signature,
        })
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

/// `crit` names extensions this filter does not implement, so any is refused (RFC 7515
/// §4.1.11); `typ`, when present, must say JWT (`JWT`, or `at+jwt` and the like, RFC 8725 §3.11).
fn check_header(header: &Map<String, Value>) -> Result<(), TokenRejection> {
    match header.get("crit") {
        None | Some(Value::Null) => {}
        Some(Value::Array(names)) if names.is_empty() => {}
        Some(Value::Array(names)) if names.iter().all(Value::is_string) => {
            return Err(invalid("token has unsupported crit header"))
        }
        Some(_) => return Err(invalid("malformed token header")),
    }
    match header.get("typ") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(typ)) => {
            let upper = typ.to_ascii_uppercase();
            if upper == "JWT" || upper.ends_with("+JWT") {
                Ok(())
            } else {
                Err(invalid("token typ not accepted"))
            }
        }
        Some(_) => Err(invalid("malformed token header")),
    }
}

/// What the registered claims are checked against.
pub(super) struct ClaimRules<'a> {
    pub(super) audiences: &'a Audiences,
    pub(super) now: u64,
    pub(super) clock_skew_s: u64,
}

/// Checks the registered claims of a verified token: their types (`sub`, `jti` strings, `aud`
/// a string or an array of strings), then `iat` and `nbf` against `now` plus the skew, `exp`
/// against `now` minus the skew, and `aud` against the provider's audiences. The time claims
/// were read by the caller (`iat`, `nbf`, `exp`, in seconds).
pub(super) fn check_claims(
    claims: &Map<String, Value>,
    times: [Option<u64>; 3],
    rules: &ClaimRules<'_>,
) -> Result<(), TokenRejection> {
    let strings_ok = ["sub", "jti"].iter().all(|name| {
        matches!(
            claims.get(*name),
            None | Some(Value::Null | Value::String(_))
        )
    });
    let audience: Vec<&str> = match claims.get("aud") {
        None => Vec::new(),
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(auds)) => auds
            .iter()
            .map(Value::as_str)
            .collect::<Option<_>>()
            .ok_or_else(|| invalid("malformed token claims"))?,
        Some(_) => return Err(invalid("malformed token claims")),
    };
    if !strings_ok {
        return Err(invalid("malformed token claims"));
    }
    let [iat, nbf, exp] = times;
    let latest = rules.now.saturating_add(rules.clock_skew_s);
    if iat.is_some_and(|iat| iat > latest) {
        return Err(invalid("token issued in the future"));
    }
    if nbf.is_some_and(|nbf| nbf > latest) {
        return Err(invalid("token not yet valid"));
    }
    if let Some(exp) = exp {
        let live = rules
            .now
            .checked_sub(rules.clock_skew_s)
            .is_some_and(|earliest| earliest <= exp);
        if !live {
            return Err(TokenRejection {
                reason: Reason::TokenExpired,
                detail: "token expired".to_owned(),
            });
        }
    }
    match rules.audiences {
        Audiences::Any => Ok(()),
        Audiences::OneOf(allowed) => {
            if audience.iter().any(|aud| allowed.iter().any(|a| a == aud)) {
                Ok(())
            } else {
                Err(invalid("audience not accepted"))
            }
        }
    }
}

#[cfg(test)]
mod tests;
