//! The audit stream: one JSON line for every denial, every cross-tenant event and every
//! would-be denial of a tenant in shadow mode, chained so that a deleted, edited or reordered
//! line shows.
//!
//! Each worker VM writes its own chain (`chain`, a random id), announced by a `start` line that
//! names the configuration's SHA-256; every line carries `seq` (0 for the start, then +1) and
//! `prev`, the previous line's `hash`. A line's `hash` is the SHA-256 of the previous hash (64
//! hex characters), a newline, and the line's JSON text without its `hash` member (the text up
//! to `,"hash":"…"` and a closing brace): verifiers need no JSON canonicalisation. With
//! `audit.key_env` the chain is keyed: `hash` is the HMAC-SHA256 of the same text under the key
//! from the VM's environment, and the start line names the key by `key_fingerprint` (the first
//! 16 hex digits of the key's SHA-256), so only a holder of the key can rebuild a chain. Lines are
//! linked in the order they are written, which is the order requests end, not the order they
//! began. The format is documented with a JSON Schema (`schema/audit-line.schema.json`)
//! and checked by `tenant-guard audit verify`.

use serde::Serialize;

use crate::policy::digest::sha256_prefix;
use crate::policy::record::{printable, Record};
use crate::policy::secret::Secret;

/// A chain's first `prev`.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a client claimed about whose resources it reached for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Claimed {
    /// The client-sent value of `identity.tenant_header`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_header: Option<String>,
    /// The namespace a vector-store request named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The namespace a path addressed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_namespace: Option<String>,
    /// The provider-side object a request named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// A model the tenant's list does not allow (`model_not_allowed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl Claimed {
    pub fn is_empty(&self) -> bool {
        *self == Claimed::default()
    }
}

/// The reason codes of cross-tenant events.
pub const CROSS_TENANT: [&str; 6] = [
    "cross_tenant_path",
    "cross_tenant_namespace",
    "tenant_header_mismatch",
    "tenant_provider_mismatch",
    "provider_object_not_found",
    "tenant_namespace_conflict",
];

/// The kind of an audit line.
pub fn event(decision: &str, reason: &str, shadow: bool) -> Option<&'static str> {
    if shadow {
        Some("shadow")
    } else if CROSS_TENANT.contains(&reason) {
        Some("cross_tenant")
    } else if decision == "deny" {
        Some("deny")
    } else {
        None
    }
}

/// What the shell saw of a request besides its record.
pub struct Facts<'a> {
    pub time: String,
    /// The client's address (`ip:port`).
    pub source: Option<String>,
    /// The client-sent value of `identity.tenant_header`.
    pub tenant_header: Option<&'a [u8]>,
}

/// The audit event of a finished request's record, when it is one: a denial, a cross-tenant
/// event or a would-be denial in shadow mode. `facts` are only asked for when it is.
pub fn of<'a>(record: &Record, facts: impl FnOnce() -> Facts<'a>) -> Option<Event> {
    let event = event(record.decision, record.reason, record.shadow)?;
    let facts = facts();
    let quoted = record.detail.as_deref().and_then(first_quoted);
    let mut claimed = Claimed::default();
    match record.reason {
        "tenant_header_mismatch" => {
            claimed.tenant_header = facts.tenant_header.map(|h| printable(h, 128));
        }
        "cross_tenant_path" => claimed.path_namespace = quoted,
        "cross_tenant_namespace" | "tenant_namespace_conflict" => claimed.namespace = quoted,
        "provider_object_not_found" => claimed.object = quoted,
        "model_not_allowed" => claimed.model = quoted,
        _ => {}
    }
    Some(Event {
        time: facts.time,
        event,
        tenant: record.tenant.clone(),
        user: record.user.clone(),
        provider: record.provider.clone(),
        auth: record.auth,
        key_id: record.key_id.clone(),
        key_digest: record.key_digest.clone(),
        credential: record.credential.clone(),
        claimed,
        method: record.method.clone(),
        path: record.path.clone(),
        path_sent: record.path_sent.clone(),
        source: facts.source,
        request_id: record.request_id.clone(),
        client_request_id: record.client_request_id.clone(),
        decision: record.decision,
        reason: record.reason,
        detail: record.detail.clone(),
    })
}

/// The first double-quoted text of a refusal detail: the client text it quotes.
fn first_quoted(detail: &str) -> Option<String> {
    let (_, rest) = detail.split_once('"')?;
    let (quoted, _) = rest.split_once('"')?;
    Some(quoted.to_string())
}

/// An audit line about a request, before it is linked into its chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub time: String,
    pub event: &'static str,
    pub tenant: Option<String>,
    pub user: Option<String>,
    pub provider: Option<String>,
    /// `jwt` or `api_key`, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<&'static str>,
    /// The API key's id (a key of the policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The first 8 hex digits of a refused API key's SHA-256, never the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_digest: Option<String>,
    /// The upstream credential's fingerprint, when the request had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    pub claimed: Claimed,
    pub method: String,
    pub path: String,
    pub path_sent: Option<String>,
    pub source: Option<String>,
    pub request_id: String,
    pub client_request_id: Option<String>,
    pub decision: &'static str,
    pub reason: &'static str,
    pub detail: Option<String>,
}

/// One worker VM's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    id: String,
    next_seq: u64,
    prev: String,
    /// The HMAC key of a keyed chain (`audit.key_env`).
    key: Option<Secret>,
}

#[derive(Serialize)]
struct Head<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    chain: &'a str,
    seq: u64,
    prev: &'a str,
}

#[derive(Serialize)]
struct Start<'a> {
    #[serde(flatten)]
    head: Head<'a>,
    time: &'a str,
    event: &'static str,
    config_sha256: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_fingerprint: Option<String>,
}

#[derive(Serialize)]
struct Line<'a, E: Serialize> {
    #[serde(flatten)]
    head: Head<'a>,
    #[serde(flatten)]
    event: &'a E,
}

impl Chain {
    /// A new chain (`id`: 16 hex digits), keyed with `key` when given.
    pub fn new(id: String, key: Option<Secret>) -> Chain {
        Chain {
            id,
            next_seq: 0,
            prev: GENESIS.to_string(),
            key,
        }
    }

    /// The chain's start line, naming the configuration it runs.
    pub fn start(&mut self, time: &str, config_sha256: &str) -> String {
        let head = self.head();
        let text = serde_json::to_string(&Start {
            head,
            time,
            event: "start",
            config_sha256,
            key_fingerprint: self.key.as_ref().map(key_fingerprint),
        })
        .unwrap_or_default();
        self.link(text)
    }

    /// The next line of the chain, about `event`: a request's [`Event`], or another kind
    /// such as a threshold crossing (`policy::alerts::Event`).
    pub fn line<E: Serialize>(&mut self, event: &E) -> String {
        let head = self.head();
        let text = serde_json::to_string(&Line { head, event }).unwrap_or_default();
        self.link(text)
    }

    fn head(&self) -> Head<'_> {
        Head {
            kind: "tenant_guard.audit",
            chain: &self.id,
            seq: self.next_seq,
            prev: &self.prev,
        }
    }

    /// Appends the hash to `text` (a JSON object) and moves the chain on.
    fn link(&mut self, text: String) -> String {
        let hash = match &self.key {
            Some(key) => keyed_hash(key, &self.prev, &text),
            None => hash(&self.prev, &text),
        };
        let body = text.strip_suffix('}').unwrap_or(&text);
        let line = format!("{body},\"hash\":\"{hash}\"}}");
        self.prev = hash;
        self.next_seq = self.next_seq.saturating_add(1);
        line
    }
}

/// The hash of a line: SHA-256 of the previous hash, a newline, and the line without its hash.
pub fn hash(prev: &str, text_without_hash: &str) -> String {
    let digest = hmac_sha256::Hash::hash(
        [prev.as_bytes(), b"\n", text_without_hash.as_bytes()]
            .concat()
            .as_slice(),
    );
    hex(&digest)
}

/// A keyed chain's line hash: HMAC-SHA256 under `key` of what [`hash`] hashes.
pub fn keyed_hash(key: &Secret, prev: &str, text_without_hash: &str) -> String {
    let mut mac = hmac_sha256::HMAC::new(key.expose().as_bytes());
    mac.update(prev.as_bytes());
    mac.update(b"\n");
    mac.update(text_without_hash.as_bytes());
    hex(&mac.finalize())
}

/// How a keyed chain's start line names its key: the first 16 hex digits of its SHA-256.
pub fn key_fingerprint(key: &Secret) -> String {
    sha256_prefix(key.expose().as_bytes(), 16)
}

pub use crate::policy::digest::hex;

/// RFC 3339 UTC with milliseconds: `2026-11-29T23:30:04.123Z`.
pub fn rfc3339_millis(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let (year, month, day) = civil(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        unix_ms % 1000
    )
}

/// Year, month (1-12) and day (1-31) of a day count since 1970-01-01 (Howard Hinnant's
/// civil_from_days, for days >= 0).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn event() -> Event {
        Event {
            time: rfc3339_millis(1_764_459_004_123),
            event: "cross_tenant",
            tenant: Some("acme".into()),
            user: Some("alice".into()),
            provider: Some("corp-idp".into()),
            auth: Some("jwt"),
            key_id: None,
            key_digest: None,
            credential: None,
            claimed: Claimed {
                path_namespace: Some("/tenants/globex".into()),
                ..Claimed::default()
            },
            method: "GET".into(),
            path: "/tenants/globex/v1/models".into(),
            path_sent: None,
            source: Some("10.0.0.7:5123".into()),
            request_id: "ab".repeat(16),
            client_request_id: None,
            decision: "deny",
            reason: "cross_tenant_path",
            detail: Some("path addresses namespace \"/tenants/globex\"".into()),
        }
    }

    /// What a verifier does: strip the hash member, recompute, compare.
    fn verify(lines: &[String]) -> Result<(), usize> {
        verify_with(lines, None)
    }

    fn verify_with(lines: &[String], key: Option<&Secret>) -> Result<(), usize> {
        let mut prev = GENESIS.to_string();
        for (n, line) in lines.iter().enumerate() {
            let value: serde_json::Value = serde_json::from_str(line).map_err(|_| n)?;
            let hash = value["hash"].as_str().ok_or(n)?;
            let suffix = format!(",\"hash\":\"{hash}\"}}");
            let text = format!("{}}}", line.strip_suffix(&suffix).ok_or(n)?);
            let expected = match key {
                Some(key) => keyed_hash(key, &prev, &text),
                None => super::hash(&prev, &text),
            };
            if value["prev"] != prev.as_str() || value["seq"] != n as u64 || expected != hash {
                return Err(n);
            }
            prev = hash.to_string();
        }
        Ok(())
    }

    fn chain_of(n: usize) -> Vec<String> {
        keyed_chain_of(n, None)
    }

    fn keyed_chain_of(n: usize, key: Option<Secret>) -> Vec<String> {
        let mut chain = Chain::new("0123456789abcdef".into(), key);
        let mut lines = vec![chain.start("2026-11-29T00:00:00.000Z", &"c".repeat(64))];
        for _ in 0..n {
            lines.push(chain.line(&event()));
        }
        lines
    }

    #[test]
    fn lines_have_the_documented_fields_in_order() {
        let lines = chain_of(1);
        assert!(lines[0].starts_with(
            r#"{"type":"tenant_guard.audit","chain":"0123456789abcdef","seq":0,"prev":"0000"#
        ));
        assert!(lines[0].contains(r#""event":"start","config_sha256":"cccc"#));
        let line: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(line["seq"], 1);
        assert_eq!(line["claimed"]["path_namespace"], "/tenants/globex");
        assert!(lines[1].ends_with(&format!(
            r#","hash":"{}"}}"#,
            line["hash"].as_str().unwrap()
        )));
        assert_eq!(keys.len(), 21, "{keys:?}");
        let pos = |k: &str| lines[1].find(&format!("\"{k}\":")).unwrap();
        let order = [
            "type",
            "chain",
            "seq",
            "prev",
            "time",
            "event",
            "tenant",
            "claimed",
            "request_id",
            "decision",
            "reason",
            "detail",
            "hash",
        ];
        assert!(order.windows(2).all(|w| pos(w[0]) < pos(w[1])));
    }

    #[test]
    fn an_untouched_chain_verifies_and_any_change_breaks_it() {
        let lines = chain_of(4);
        assert_eq!(verify(&lines), Ok(()));
        let mut deleted = lines.clone();
        deleted.remove(2);
        assert_eq!(verify(&deleted), Err(2));
        let mut edited = lines.clone();
        edited[3] = edited[3].replace("\"acme\"", "\"acne\"");
        assert_eq!(verify(&edited), Err(3));
        let mut reordered = lines.clone();
        reordered.swap(1, 2);
        assert_eq!(verify(&reordered), Err(1));
    }

    #[test]
    fn a_keyed_chain_verifies_only_with_its_key_and_names_it_at_the_start() {
        let key = Secret::new("audit-key-0123456789abcdef0123456789");
        let lines = keyed_chain_of(3, Some(key.clone()));
        let start: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(start["key_fingerprint"], key_fingerprint(&key));
        assert_eq!(key_fingerprint(&key).len(), 16);
        assert_eq!(verify_with(&lines, Some(&key)), Ok(()));
        // Without the key, or with another, nothing verifies.
        assert_eq!(verify(&lines), Err(0));
        assert_eq!(
            verify_with(
                &lines,
                Some(&Secret::new("another-key-0123456789abcdef0123"))
            ),
            Err(0)
        );
        // A line edited and the whole file re-chained without the key does not verify.
        let mut forged = chain_of(3);
        forged[2] = forged[2].replace("\"acme\"", "\"acne\"");
        assert_eq!(verify_with(&forged, Some(&key)), Err(0));
        // An unkeyed chain's start line has no fingerprint; the key never shows.
        assert!(!chain_of(0)[0].contains("key_fingerprint"));
        assert!(lines.iter().all(|l| !l.contains(key.expose())));
        assert!(!format!("{:?}", Chain::new("x".into(), Some(key.clone()))).contains(key.expose()));
    }

    #[test]
    fn events_are_told_by_decision_reason_and_shadow() {
        assert_eq!(
            super::event("deny", "token_quota_exceeded", false),
            Some("deny")
        );
        assert_eq!(
            super::event("deny", "cross_tenant_path", false),
            Some("cross_tenant")
        );
        assert_eq!(
            super::event("allow", "token_quota_exceeded", true),
            Some("shadow")
        );
        assert_eq!(super::event("allow", "ok", false), None);
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_001), "2000-02-29T00:00:00.001Z");
        assert_eq!(
            rfc3339_millis(1_764_459_004_123),
            "2025-11-29T23:30:04.123Z"
        );
    }
}
