//! A compact JWS (RFC 7515) as the filter reads it before jwt-simple verifies it: the checks
//! jwt-simple does not make, and what picks the providers and keys to try.
//!
//! Every part must be canonical base64url (ct-codecs, as jwt-simple decodes them), so a token
//! has one spelling only; header and claims must be JSON objects that repeat no member name
//! (see `json`); the header's `alg` must be one this filter accepts, and `kid` and `typ`
//! strings. The claims read here pick the providers (`iss`) and, once a key has verified the
//! signature, give the identity; they must not be trusted before.

use ct_codecs::{Base64UrlSafeNoPadding, Decoder};
use serde_json::{Map, Value};

use super::json::unique_object;
use super::{invalid, TokenRejection};
use crate::policy::jwks::{printable, Alg};

/// Longer base64url headers are refused before they are decoded (jwt-simple's own limit).
pub(super) const MAX_HEADER_B64: usize = 8192;

/// A token split, decoded and checked. `claims` must not be trusted until a key has verified
/// the signature.
pub(super) struct Token<'a> {
    /// The token as sent, for jwt-simple.
    pub(super) text: &'a str,
    pub(super) alg: Alg,
    pub(super) kid: Option<String>,
    /// The header's `typ`, if any (`null` counts as none).
    pub(super) typ: Option<String>,
    pub(super) claims: Map<String, Value>,
}

impl<'a> Token<'a> {
    pub(super) fn parse(token: &'a str) -> Result<Token<'a>, TokenRejection> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
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
        let typ = match header.remove("typ") {
            None | Some(Value::Null) => None,
            Some(Value::String(typ)) => Some(typ),
            Some(_) => return Err(invalid("malformed token header")),
        };
        // The header as jwt-simple reads it: its members of the wrong type (`crit`, `x5c`,
        // `cty`, ...) are a malformed header, not a verification failure.
        if jwt_simple::token::Token::decode_metadata(token).is_err() {
            return Err(invalid("malformed token header"));
        }
        let claims = json_object(payload_b64).ok_or_else(|| invalid("malformed token payload"))?;
        match Base64UrlSafeNoPadding::decode_to_vec(signature_b64, None) {
            Ok(signature) if !signature.is_empty() => {}
            _ => return Err(invalid("malformed token signature")),
        }
        Ok(Token {
            text: token,
            alg,
            kid,
            typ,
            claims,
        })
    }
}

/// A canonical base64url-encoded JSON object that repeats no member name.
fn json_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = Base64UrlSafeNoPadding::decode_to_vec(part, None).ok()?;
    unique_object(&bytes)
}

#[cfg(test)]
mod tests;
