//! One audit record: where it sits in a log line, its fields, and the hash rule of the chain.
//!
//! A record is the JSON object that starts at the first `{"type":"tenant_guard.audit"` of a
//! line (Envoy writes its own prefix before it; plain JSON-lines files work too). Its last
//! member is `"hash"`: SHA-256, in lowercase hex, of the previous record's hash (64 ASCII hex
//! characters), a `\n`, and the record's own text without its `hash` member. A keyed chain
//! (the filter's `audit.key_env`) has HMAC-SHA256 under its key instead, and its start record
//! names the key by `key_fingerprint`: the first 16 hex digits of the key's SHA-256.

use std::borrow::Cow;

use serde::Deserialize;

/// What marks an audit record in a line.
pub const MARKER: &[u8] = br#"{"type":"tenant_guard.audit""#;

/// `prev` of a chain's first record.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The reasons the contract counts as reaching across tenants.
pub const CROSS_TENANT_REASONS: [&str; 6] = [
    "cross_tenant_path",
    "cross_tenant_namespace",
    "tenant_header_mismatch",
    "tenant_provider_mismatch",
    "provider_object_not_found",
    "tenant_namespace_conflict",
];

/// An audit record's fields (strings borrowed from the line where JSON escapes allow).
#[derive(Debug, Deserialize)]
pub struct Record<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub chain: Cow<'a, str>,
    pub seq: u64,
    #[serde(borrow)]
    pub prev: Cow<'a, str>,
    #[serde(borrow)]
    pub time: Cow<'a, str>,
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    #[serde(default, borrow)]
    pub config_sha256: Option<Cow<'a, str>>,
    /// A keyed chain's start record: which key.
    #[serde(default, borrow)]
    pub key_fingerprint: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub tenant: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub user: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub provider: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub method: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub path: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub source: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub request_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub decision: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub hash: Cow<'a, str>,
}

impl Record<'_> {
    /// Whether the record is about reaching into another tenant.
    pub fn is_cross_tenant(&self) -> bool {
        self.event == "cross_tenant"
            || self
                .reason
                .as_deref()
                .is_some_and(|r| CROSS_TENANT_REASONS.contains(&r))
    }

    /// The client's IP address (`source` without its port).
    pub fn source_ip(&self) -> Option<&str> {
        let source = self.source.as_deref()?;
        if let Some(rest) = source.strip_prefix('[') {
            return rest.split(']').next();
        }
        Some(match source.rsplit_once(':') {
            Some((ip, port)) if !ip.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => ip,
            _ => source,
        })
    }
}

/// Where the record of `line` is: its text, or `None` when the line carries no marker.
/// `Err` when the marker is there but no complete JSON object follows.
pub fn locate(line: &[u8]) -> Option<Result<&[u8], String>> {
    let start = find(line, MARKER)?;
    let rest = line.get(start..)?;
    let mut objects =
        serde_json::Deserializer::from_slice(rest).into_iter::<serde::de::IgnoredAny>();
    Some(match objects.next() {
        Some(Ok(_)) => rest
            .get(..objects.byte_offset())
            .ok_or_else(|| "not a JSON object".to_string()),
        Some(Err(e)) => Err(format!("not a JSON object: {e}")),
        None => Err("not a JSON object".to_string()),
    })
}

/// Parses a record's text.
pub fn parse(text: &[u8]) -> Result<Record<'_>, String> {
    let record: Record =
        serde_json::from_slice(text).map_err(|e| format!("not an audit record: {e}"))?;
    if record.kind != "tenant_guard.audit" {
        return Err("not an audit record".into());
    }
    Ok(record)
}

/// The hash the record's text commits to, given its `prev` (and the chain's key, for a keyed
/// chain): `None` when `hash` is not the last member as written by the filter
/// (`,"hash":"<64 hex>"}` at the very end).
pub fn recompute(text: &[u8], prev: &str, key: Option<&[u8]>) -> Option<String> {
    const TAIL: usize = r#","hash":""}"#.len() + 64;
    let cut = text.len().checked_sub(TAIL)?;
    let (body, tail) = text.split_at(cut);
    let hex = tail.strip_prefix(br#","hash":""#)?.strip_suffix(b"\"}")?;
    if hex.len() != 64 || !hex.iter().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let digest = match key {
        Some(key) => {
            let mut mac = hmac_sha256::HMAC::new(key);
            mac.update(prev.as_bytes());
            mac.update(b"\n");
            mac.update(body);
            mac.update(b"}");
            mac.finalize()
        }
        None => {
            let mut hasher = hmac_sha256::Hash::new();
            hasher.update(prev.as_bytes());
            hasher.update(b"\n");
            hasher.update(body);
            hasher.update(b"}");
            hasher.finalize()
        }
    };
    Some(to_hex(&digest))
}

/// How a keyed chain's start record names its key: the first 16 hex digits of its SHA-256.
pub fn key_fingerprint(key: &[u8]) -> String {
    let mut text = to_hex(&hmac_sha256::Hash::hash(key));
    text.truncate(16);
    text
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(offset) = haystack.get(from..)?.iter().position(|&b| b == first) {
        let at = from + offset;
        if haystack.get(at..at + needle.len())? == needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_found_after_envoys_prefix_and_ends_where_its_object_ends() {
        let line = br#"[2026-11-29 23:30:04.123][12][info][wasm] [context.cc:1198] wasm log tenant_guard: {"type":"tenant_guard.audit","chain":"a","seq":1,"hash":"x"} trailing"#;
        let text = locate(line).unwrap().unwrap();
        assert!(text.starts_with(MARKER));
        assert!(text.ends_with(br#""hash":"x"}"#));
        assert!(locate(b"[info] nothing here").is_none());
        assert!(locate(br#"x {"type":"tenant_guard.audit","chain":"#)
            .unwrap()
            .is_err());
    }

    #[test]
    fn the_hash_covers_the_text_without_its_hash_member() {
        let body = r#"{"type":"tenant_guard.audit","chain":"00000000000000aa","seq":0}"#;
        let mut hasher = hmac_sha256::Hash::new();
        hasher.update(format!("{ZERO_HASH}\n{body}").as_bytes());
        let hash = to_hex(&hasher.finalize());
        let text = format!("{},\"hash\":\"{hash}\"}}", body.trim_end_matches('}'));
        assert_eq!(
            recompute(text.as_bytes(), ZERO_HASH, None).as_deref(),
            Some(hash.as_str())
        );
        // Not last, or not 64 hex digits: no hash to check.
        assert_eq!(
            recompute(br#"{"hash":"ab","seq":0}"#, ZERO_HASH, None),
            None
        );
    }

    #[test]
    fn a_keyed_hash_is_the_hmac_of_the_same_text() {
        let key = b"audit-key-0123456789abcdef012345";
        let body = r#"{"type":"tenant_guard.audit","chain":"00000000000000aa","seq":0}"#;
        let mac = hmac_sha256::HMAC::mac(format!("{ZERO_HASH}\n{body}"), key);
        let hash = to_hex(&mac);
        let text = format!("{},\"hash\":\"{hash}\"}}", body.trim_end_matches('}'));
        assert_eq!(
            recompute(text.as_bytes(), ZERO_HASH, Some(key)).as_deref(),
            Some(hash.as_str())
        );
        assert_ne!(
            recompute(text.as_bytes(), ZERO_HASH, None).as_deref(),
            Some(hash.as_str())
        );
        // printf %s abc | sha256sum: ba7816bf8f01cfea...
        assert_eq!(key_fingerprint(b"abc"), "ba7816bf8f01cfea");
    }

    #[test]
    fn source_ips_drop_the_port() {
        let record = |source: &str| {
            let text = format!(
                r#"{{"type":"tenant_guard.audit","chain":"c","seq":1,"prev":"p","time":"t","event":"deny","source":"{source}","hash":"h"}}"#
            );
            parse(text.as_bytes())
                .unwrap()
                .source_ip()
                .map(str::to_string)
        };
        assert_eq!(record("10.0.0.7:5123").as_deref(), Some("10.0.0.7"));
        assert_eq!(record("[2001:db8::1]:443").as_deref(), Some("2001:db8::1"));
        assert_eq!(record("2001:db8::1").as_deref(), Some("2001:db8::1"));
    }
}
