//! Tenant API keys: an identity source beside JWTs.
//!
//! The policy holds only each key's SHA-256 (`tenants.<id>.api_keys[].sha256`), under the tenant
//! that owns it; a digest → key index is built at configure time, so a request's key costs one
//! SHA-256 and one map lookup. Keys are read from `identity.api_key_sources` (which are token
//! sources too): a value shaped like a JWT goes to token verification, anything else is looked
//! up here. A request carrying a credential twice, or different ones in two headers, is
//! refused: which one would count is not the client's to leave open.

use std::collections::HashMap;

use serde::Deserialize;

use crate::policy::config_error::{err, ConfigError};
use crate::policy::denial::Reason;
use crate::policy::digest::hex;
use crate::policy::rfc3339;
use crate::policy::word::words;

/// Longest key id and user kept (they go into records).
const MAX_TEXT: usize = 128;

/// `tenants.<id>.api_keys[]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    id: String,
    sha256: String,
    user: Option<String>,
    expires: Option<String>,
    #[serde(default)]
    status: KeyStatus,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyStatus {
    #[default]
    Active,
    Revoked,
}

words!(KeyStatus: "enum KeyStatus", Active = "active", Revoked = "revoked");

/// A key of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub tenant: String,
    pub id: String,
    pub user: Option<String>,
    /// Unix seconds: the key is refused from this second on.
    pub expires: Option<u64>,
    pub status: KeyStatus,
}

impl ApiKey {
    /// Who the key stands for in records and per-user quotas: its `user`, else its id.
    pub fn user(&self) -> &str {
        self.user.as_deref().unwrap_or(&self.id)
    }
}

/// The compiled key sources and keys.
#[derive(Debug, Default)]
pub struct ApiKeys {
    /// Indices into the token sources of those keys are read from.
    sources: Vec<usize>,
    by_digest: HashMap<[u8; 32], ApiKey>,
}

/// A request's credential as read from its headers when API keys are configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Missing,
    /// A header's bytes are not UTF-8.
    Unreadable,
    /// A JWT-shaped value, or any value of a source keys are not read from: for token
    /// verification. `source` is the first token source it was found in.
    Token {
        source: usize,
        token: String,
    },
    /// A key, and every token source it was found in (none of them goes upstream).
    Key {
        key: String,
        sources: Vec<usize>,
    },
    /// Sent twice, or different values in two headers: refused (the detail says which).
    Conflict(&'static str),
}

/// Why a key was refused: the reason, a detail for logs, the first 8 hex digits of the key's
/// digest (never the key), and the policy's key when it is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal<'a> {
    pub reason: Reason,
    pub detail: &'static str,
    pub digest: String,
    pub key: Option<&'a ApiKey>,
}

/// Whether `value` has the shape of a JWS in compact form: three non-empty base64url parts.
pub fn is_jwt_shaped(value: &str) -> bool {
    let mut parts = 0;
    for part in value.split('.') {
        parts += 1;
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return false;
        }
    }
    parts == 3
}

impl ApiKeys {
    /// Keys read from the token sources with these indices (`identity.api_key_sources`,
    /// which the configuration adds to the token sources).
    pub fn new(sources: Vec<usize>) -> ApiKeys {
        ApiKeys {
            sources,
            by_digest: HashMap::new(),
        }
    }

    /// Keys are read from requests (`identity.api_key_sources` is not empty).
    pub fn enabled(&self) -> bool {
        !self.sources.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Adds tenant `tenant`'s keys (`path`: `tenants.<id>.api_keys`).
    pub fn add(
        &mut self,
        tenant: &str,
        path: &str,
        raw: Vec<RawApiKey>,
    ) -> Result<(), ConfigError> {
        let mut ids: Vec<String> = Vec::with_capacity(raw.len());
        for (i, k) in raw.into_iter().enumerate() {
            let path = format!("{path}[{i}]");
            let text_ok = |s: &str| {
                (1..=MAX_TEXT).contains(&s.len())
                    && s.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
            };
            if !text_ok(&k.id) {
                return err(
                    format!("{path}.id"),
                    "must be 1-128 characters of printable ASCII",
                );
            }
            if ids.contains(&k.id) {
                return err(
                    format!("{path}.id"),
                    format!("key id \"{}\" is used twice", k.id),
                );
            }
            if k.user.as_deref().is_some_and(|u| !text_ok(u)) {
                return err(
                    format!("{path}.user"),
                    "must be 1-128 characters of printable ASCII",
                );
            }
            let Some(digest) = parse_digest(&k.sha256) else {
                return err(
                    format!("{path}.sha256"),
                    "must be 64 lowercase hex digits: the SHA-256 of the key (`printf %s \"$KEY\" | \
                     sha256sum`), never the key",
                );
            };
            let expires = match &k.expires {
                Some(text) => Some(rfc3339::parse(text).ok_or_else(|| ConfigError {
                    path: format!("{path}.expires"),
                    message: "must be an RFC 3339 date-time such as 2026-12-31T23:59:59Z".into(),
                })?),
                None => None,
            };
            if let Some(other) = self.by_digest.get(&digest) {
                return err(
                    format!("{path}.sha256"),
                    format!("is also key \"{}\" of tenant {}", other.id, other.tenant),
                );
            }
            ids.push(k.id.clone());
            self.by_digest.insert(
                digest,
                ApiKey {
                    tenant: tenant.to_string(),
                    id: k.id,
                    user: k.user,
                    expires,
                    status: k.status,
                },
            );
        }
        Ok(())
    }

    /// Reads the request's credential from every token source. `sources`: the token
    /// sources' headers and prefixes, in order; `first(name)`: the first line of header
    /// `name`; `lines(name)`: all of its lines, in order (empty when absent). Only a request
    /// whose credential is a key has every line read (a second line of a token's header is
    /// not looked for, as without keys).
    pub fn read<'s>(
        &self,
        sources: impl Iterator<Item = (&'s str, Option<&'s str>)> + Clone,
        mut first: impl FnMut(&str) -> Option<Vec<u8>>,
        lines: impl FnMut(&str) -> Vec<Vec<u8>>,
    ) -> Found {
        match self.read_with(sources.clone(), |name| first(name).into_iter().collect()) {
            Found::Key { .. } => self.read_with(sources, lines),
            found => found,
        }
    }

    fn read_with<'s>(
        &self,
        sources: impl Iterator<Item = (&'s str, Option<&'s str>)> + Clone,
        mut lines: impl FnMut(&str) -> Vec<Vec<u8>>,
    ) -> Found {
        // (value, the sources it was found in)
        let mut found: Option<(String, Vec<usize>)> = None;
        let mut headers_done: Vec<&str> = Vec::new();
        for (header, _) in sources.clone() {
            if headers_done.contains(&header) {
                continue;
            }
            headers_done.push(header);
            let mut taken = false;
            for line in lines(header) {
                let Ok(line) = String::from_utf8(line) else {
                    return Found::Unreadable;
                };
                // The first source of this header whose prefix the line carries.
                let Some((index, value)) = sources
                    .clone()
                    .enumerate()
                    .filter(|(_, (h, _))| *h == header)
                    .find_map(|(i, (_, prefix))| Some((i, strip(&line, prefix)?)))
                else {
                    continue;
                };
                if std::mem::replace(&mut taken, true) {
                    return Found::Conflict("a credential header was sent more than once");
                }
                match &mut found {
                    None => found = Some((value.to_string(), vec![index])),
                    Some((v, sources)) if v == value => sources.push(index),
                    Some(_) => {
                        return Found::Conflict("two headers carry different credentials");
                    }
                }
            }
        }
        let Some((value, sources)) = found else {
            return Found::Missing;
        };
        let from_key_source = sources.iter().any(|s| self.sources.contains(s));
        match sources.first() {
            Some(&source) if is_jwt_shaped(&value) || !from_key_source => Found::Token {
                source,
                token: value,
            },
            _ => Found::Key {
                key: value,
                sources,
            },
        }
    }

    /// The policy's key for `key`, if it is one that may be used at `now`.
    pub fn check(&self, key: &str, now: u64) -> Result<&ApiKey, Refusal<'_>> {
        let digest = hmac_sha256::Hash::hash(key.as_bytes());
        let refusal = |reason, detail, key| Refusal {
            reason,
            detail,
            digest: hex(digest.get(..4).unwrap_or_default()),
            key,
        };
        let Some(found) = self.by_digest.get(&digest) else {
            return Err(refusal(Reason::InvalidApiKey, "unknown API key", None));
        };
        if found.status == KeyStatus::Revoked {
            return Err(refusal(
                Reason::ApiKeyRevoked,
                "API key is revoked",
                Some(found),
            ));
        }
        if found.expires.is_some_and(|at| now >= at) {
            return Err(refusal(
                Reason::ApiKeyExpired,
                "API key has expired",
                Some(found),
            ));
        }
        Ok(found)
    }
}

/// The value of a header line after `prefix` (ASCII case ignored, as `Bearer` in RFC 6750),
/// trimmed; `None` when the line does not carry the prefix or nothing follows it.
fn strip<'a>(line: &'a str, prefix: Option<&str>) -> Option<&'a str> {
    let value = match prefix {
        Some(prefix) => {
            let head = line.get(..prefix.len())?;
            if !head.eq_ignore_ascii_case(prefix) {
                return None;
            }
            line.get(prefix.len()..)?
        }
        None => line,
    };
    Some(value.trim()).filter(|v| !v.is_empty())
}

/// 64 lowercase hex digits → the 32 bytes.
fn parse_digest(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks(2)) {
        let digit = |c: &u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        *byte = digit(pair.first()?)? << 4 | digit(pair.get(1)?)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
