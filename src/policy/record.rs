//! The per-request audit and cost record: one for every request the filter decides, allowed or
//! denied. The shell writes it as Envoy filter state (`wasm.<key>`) and as one JSON log line.
//! A record never holds the token, and every text in it that a client or an upstream chose is
//! bounded and printable (a forged line in a text access log must be impossible).

#[cfg(test)]
use serde::Serialize;
use std::fmt::Write as _;

use crate::policy::decision::{Auth, Decision};
use crate::policy::denial::Reason;
use crate::policy::metering::Outcome;
use crate::policy::state_fields::StateFields;

/// Longest `path` kept in a record; longer paths are cut.
const MAX_PATH_BYTES: usize = 1024;
/// Longest client-chosen text kept otherwise (request ids, methods, details).
const MAX_TEXT_BYTES: usize = 256;

/// The request facts a record carries besides the decision.
pub struct RequestInfo<'a> {
    /// The record's own id, minted by the filter: the audit correlation id.
    pub request_id: String,
    /// The request's `x-request-id` as the filter saw it (the client's own when the gateway
    /// preserves external request ids).
    pub client_request_id: Option<&'a [u8]>,
    pub method: &'a [u8],
    /// `:path` as received.
    pub path: &'a [u8],
}

/// Written as JSON by [`Record::to_json`], field by field in this order (the `serde` attributes
/// say how, and the tests hold the two to the same output).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(Serialize))]
pub struct Record {
    #[cfg_attr(test, serde(rename = "type"))]
    pub kind: &'static str,
    pub tenant: Option<String>,
    pub user: Option<String>,
    pub provider: Option<String>,
    pub plan: Option<String>,
    /// How the caller was identified: `jwt` or `api_key` (absent before that was known).
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub auth: Option<&'static str>,
    /// The API key's id, for a request that came with a key of the policy.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub key_id: Option<String>,
    /// The first 8 hex digits of a refused API key's SHA-256 (never the key).
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub key_digest: Option<String>,
    /// The upstream credential the request went with, by fingerprint (`acme/openai#1a2b3c4d`):
    /// never the secret.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub credential: Option<String>,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// `ok`, `bypass`, or a denial's reason code.
    pub reason: &'static str,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub detail: Option<String>,
    /// Minted by the filter, unique per record.
    pub request_id: String,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub client_request_id: Option<String>,
    pub method: String,
    /// `:path` as received.
    pub path: String,
    /// `:path` as sent upstream, when the filter changed it.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub path_sent: Option<String>,
    /// The response status, known once the response has started.
    pub status: Option<u32>,
    /// Usage and cost, for admitted requests once their response ended.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub model: Option<String>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub input_tokens: Option<u64>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub output_tokens: Option<u64>,
    /// Parts of `input_tokens` read from and written to a prompt cache, and of `output_tokens`
    /// spent reasoning.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub cached_input_tokens: Option<u64>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub cache_write_tokens: Option<u64>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub reasoning_tokens: Option<u64>,
    /// Exact decimal USD, e.g. `"0.0027"`.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub cost_usd: Option<String>,
    /// `json`, `sse`, `estimate` or `none`.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub usage_source: Option<&'static str>,
    /// The output limit per choice the filter set in the request body (`output_cap`).
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub output_cap: Option<u64>,
    /// The tenant is in shadow mode and `reason` says what enforcement would have refused.
    #[cfg_attr(test, serde(skip_serializing_if = "std::ops::Not::not"))]
    pub shadow: bool,
    /// Whether `auth` goes into filter state: only where the policy reads API keys, so a
    /// gateway without them pays nothing for it (every caller is a JWT's there).
    #[cfg_attr(test, serde(skip))]
    pub auth_state: bool,
}

impl Record {
    pub fn new(decision: &Decision, info: RequestInfo<'_>) -> Record {
        let mut record = Record {
            kind: "tenant_guard.request",
            tenant: None,
            user: None,
            provider: None,
            plan: None,
            auth: None,
            key_id: None,
            key_digest: None,
            credential: None,
            decision: "allow",
            reason: "ok",
            detail: None,
            request_id: info.request_id,
            client_request_id: info
                .client_request_id
                .map(|id| printable(id, MAX_TEXT_BYTES)),
            method: printable(info.method, MAX_TEXT_BYTES),
            path: printable(info.path, MAX_PATH_BYTES),
            path_sent: None,
            status: None,
            model: None,
            input_tokens: None,
            output_tokens: None,
            cached_input_tokens: None,
            cache_write_tokens: None,
            reasoning_tokens: None,
            cost_usd: None,
            usage_source: None,
            output_cap: None,
            shadow: false,
            auth_state: false,
        };
        match decision {
            Decision::Bypass => record.reason = "bypass",
            Decision::Admit(a) => {
                record.tenant = Some(a.tenant.clone());
                record.user = a.user.clone();
                record.provider = a.provider.clone();
                record.plan = a.plan.clone();
                record.auth = Some(a.auth.as_str());
                record.key_id = a.key_id.clone();
                record.credential = a.credential.clone();
            }
            Decision::Deny(d) => {
                record.decision = "deny";
                record.reason = d.reason.code();
                record.detail = Some(printable(d.detail.as_bytes(), MAX_TEXT_BYTES));
                record.tenant = d.tenant.clone();
                record.user = d.user.clone();
                record.provider = d.provider.clone();
                record.auth = d.auth.map(Auth::as_str);
                record.key_id = d.key_id.clone();
                record.key_digest = d.key_digest.clone();
            }
        }
        record
    }

    /// Turns an admitted request's record into a denial decided after its headers (a quota
    /// refusal once the body was read).
    pub fn deny(&mut self, reason: Reason, detail: &str) {
        self.decision = "deny";
        self.reason = reason.code();
        self.detail = Some(printable(detail.as_bytes(), MAX_TEXT_BYTES));
    }

    /// Notes why an admitted request was let through without a full check (the rate-limit
    /// service could not decide and `failure_mode` is `allow`).
    pub fn admitted_despite(&mut self, reason: Reason) {
        self.reason = reason.code();
    }

    /// Notes what enforcement would have refused, for a tenant in shadow mode (the request
    /// goes on).
    pub fn shadow_denied(&mut self, reason: Reason, detail: &str) {
        self.reason = reason.code();
        self.detail = Some(printable(detail.as_bytes(), MAX_TEXT_BYTES));
        self.shadow = true;
    }

    /// Adds what the request used. Tokens and cost are recorded as the upstream reported
    /// them, so records sum to the upstream's own usage.
    pub fn meter(&mut self, outcome: &Outcome) {
        let usage = outcome.usage.unwrap_or_default();
        self.model = outcome.model.clone();
        self.input_tokens = Some(usage.input_tokens);
        self.output_tokens = Some(usage.output_tokens);
        self.cached_input_tokens = Some(usage.cached_input_tokens);
        self.cache_write_tokens = Some(usage.cache_write_tokens);
        self.reasoning_tokens = Some(usage.reasoning_tokens);
        self.cost_usd = outcome.cost.map(|c| c.to_decimal_usd());
        self.usage_source = Some(outcome.source.as_str());
    }

    /// The filter-state entries (`wasm.<key>`) of the decision among `fields`, for access logs;
    /// absent values are not set.
    pub fn filter_state(&self, fields: StateFields) -> Vec<(&'static str, String)> {
        let mut state = vec![
            ("decision", self.decision.to_string()),
            ("reason", self.reason.to_string()),
            ("request_id", self.request_id.clone()),
        ];
        for (key, value) in [
            ("tenant", &self.tenant),
            ("user", &self.user),
            ("key_id", &self.key_id),
            ("credential", &self.credential),
        ] {
            if let Some(value) = value {
                state.push((key, value.clone()));
            }
        }
        if let Some(auth) = self.auth.filter(|_| self.auth_state) {
            state.push(("auth", auth.to_string()));
        }
        fields.select(&mut state);
        state
    }

    /// The filter-state entries of the usage among `fields`, once metered.
    pub fn usage_state(&self, fields: StateFields) -> Vec<(&'static str, String)> {
        let mut state = Vec::new();
        if let Some(model) = &self.model {
            state.push(("model", model.clone()));
        }
        let numbers = [
            ("input_tokens", self.input_tokens),
            ("output_tokens", self.output_tokens),
            ("cached_input_tokens", self.cached_input_tokens),
            ("cache_write_tokens", self.cache_write_tokens),
            ("reasoning_tokens", self.reasoning_tokens),
        ];
        for (key, value) in numbers {
            if let Some(value) = value {
                state.push((key, value.to_string()));
            }
        }
        if let Some(cost) = &self.cost_usd {
            state.push(("cost_usd", cost.clone()));
        }
        if let Some(source) = self.usage_source {
            state.push(("usage_source", source.to_string()));
        }
        fields.select(&mut state);
        state
    }

    /// The record as one line of JSON (`serde_json`'s output, written without it).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(512);
        out.push('{');
        field(&mut out, "type", Some(self.kind));
        for (key, value) in [
            ("tenant", &self.tenant),
            ("user", &self.user),
            ("provider", &self.provider),
            ("plan", &self.plan),
        ] {
            field(&mut out, key, value.as_deref());
        }
        for (key, value) in [
            ("auth", self.auth),
            ("key_id", self.key_id.as_deref()),
            ("key_digest", self.key_digest.as_deref()),
            ("credential", self.credential.as_deref()),
        ] {
            if value.is_some() {
                field(&mut out, key, value);
            }
        }
        field(&mut out, "decision", Some(self.decision));
        field(&mut out, "reason", Some(self.reason));
        if let Some(detail) = &self.detail {
            field(&mut out, "detail", Some(detail));
        }
        field(&mut out, "request_id", Some(&self.request_id));
        if let Some(id) = &self.client_request_id {
            field(&mut out, "client_request_id", Some(id));
        }
        field(&mut out, "method", Some(&self.method));
        field(&mut out, "path", Some(&self.path));
        if let Some(sent) = &self.path_sent {
            field(&mut out, "path_sent", Some(sent));
        }
        number(&mut out, "status", self.status.map(u64::from));
        if let Some(model) = &self.model {
            field(&mut out, "model", Some(model));
        }
        for (key, value) in [
            ("input_tokens", self.input_tokens),
            ("output_tokens", self.output_tokens),
            ("cached_input_tokens", self.cached_input_tokens),
            ("cache_write_tokens", self.cache_write_tokens),
            ("reasoning_tokens", self.reasoning_tokens),
        ] {
            if value.is_some() {
                number(&mut out, key, value);
            }
        }
        if let Some(cost) = &self.cost_usd {
            field(&mut out, "cost_usd", Some(cost));
        }
        if let Some(source) = self.usage_source {
            field(&mut out, "usage_source", Some(source));
        }
        if self.output_cap.is_some() {
            number(&mut out, "output_cap", self.output_cap);
        }
        if self.shadow {
            key(&mut out, "shadow");
            out.push_str("true");
        }
        out.push('}');
        out
    }
}

/// `"key":` after a `,` unless it is the object's first.
fn key(out: &mut String, key: &str) {
    if !out.ends_with('{') {
        out.push(',');
    }
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
}

/// A string member (`null` when absent), escaped as `serde_json` escapes.
fn field(out: &mut String, name: &str, value: Option<&str>) {
    key(out, name);
    let Some(value) = value else {
        out.push_str("null");
        return;
    };
    out.push('"');
    // Runs of bytes that need no escape are copied whole; every escaped byte is ASCII, so the
    // runs end on character boundaries.
    let mut start = 0;
    for (i, b) in value.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..0x20 => "",
            _ => continue,
        };
        out.push_str(value.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(value.get(start..).unwrap_or_default());
    out.push('"');
}

/// A number member (`null` when absent).
fn number(out: &mut String, name: &str, value: Option<u64>) {
    key(out, name);
    match value {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.push_str("null"),
    }
}

/// Client or upstream bytes as record text: printable ASCII kept, every other byte (control
/// characters, non-ASCII, invalid UTF-8) written as `%XX`, cut at `max` bytes of input.
pub fn printable(bytes: &[u8], max: usize) -> String {
    let mut out = String::with_capacity(bytes.len().min(max));
    for &b in bytes.iter().take(max) {
        if b == b' ' || b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            crate::policy::namespace::push_escape(&mut out, b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::decision::{Admission, Denial};
    use crate::policy::denial::Reason;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn info() -> RequestInfo<'static> {
        RequestInfo {
            request_id: "req-1".into(),
            client_request_id: Some(b"client-1"),
            method: b"POST",
            path: b"/v1/chat/completions",
        }
    }

    #[test]
    fn admission_record_names_tenant_user_and_ok() {
        let decision = Decision::Admit(Box::new(Admission {
            tenant: "acme".into(),
            user: Some("alice".into()),
            provider: Some("corp-idp".into()),
            plan: Some("pro".into()),
            auth: Auth::Jwt,
            key_id: None,
            quota_id: "acme".into(),
            limits: Default::default(),
            listed: true,
            header_edits: vec![],
            path_sent: None,
            rerouted: false,
            body_plan: None,
            response_plan: None,
            objects: None,
            cache_scope: None,
            private_cache: false,
            credential: None,
        }));
        let record = Record::new(&decision, info());
        let json: serde_json::Value = serde_json::from_str(&record.to_json()).unwrap();
        assert_eq!(json["type"], "tenant_guard.request");
        assert_eq!(json["tenant"], "acme");
        assert_eq!(json["user"], "alice");
        assert_eq!(json["decision"], "allow");
        assert_eq!(json["reason"], "ok");
        assert_eq!(json["request_id"], "req-1");
        assert!(json.get("detail").is_none());
        let state = record.filter_state(StateFields::ALL);
        let state: Vec<(&str, &str)> = state.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            state,
            vec![
                ("decision", "allow"),
                ("reason", "ok"),
                ("request_id", "req-1"),
                ("tenant", "acme"),
                ("user", "alice")
            ]
        );
        let fields: StateFields = serde_json::from_str(r#"["tenant", "reason", "model"]"#).unwrap();
        let keys: Vec<&str> = record
            .filter_state(fields)
            .iter()
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(keys, ["reason", "tenant"]);
        assert!(record
            .filter_state(serde_json::from_str("[]").unwrap())
            .is_empty());
    }

    #[test]
    fn usage_state_keeps_the_listed_fields() {
        let mut record = Record::new(&Decision::Bypass, info());
        record.meter(&Outcome {
            model: None,
            usage: None,
            source: crate::policy::usage::UsageSource::None,
            cost: None,
            charge: crate::policy::quota::Actual::default(),
        });
        let all: Vec<&str> = record
            .usage_state(StateFields::ALL)
            .iter()
            .map(|(k, _)| *k)
            .collect();
        assert!(
            all.contains(&"input_tokens") && all.contains(&"usage_source"),
            "{all:?}"
        );
        let fields: StateFields = serde_json::from_str(r#"["output_tokens"]"#).unwrap();
        let kept: Vec<&str> = record.usage_state(fields).iter().map(|(k, _)| *k).collect();
        assert_eq!(kept, ["output_tokens"]);
    }

    #[test]
    fn denial_record_keeps_reason_and_detail() {
        let decision = Decision::Deny(Denial {
            reason: Reason::TokenExpired,
            detail: "token expired".into(),
            tenant: None,
            user: None,
            provider: None,
            auth: None,
            key_id: None,
            key_digest: None,
        });
        let record = Record::new(&decision, info());
        assert_eq!((record.decision, record.reason), ("deny", "token_expired"));
        assert_eq!(record.detail.as_deref(), Some("token expired"));
        assert!(record
            .filter_state(StateFields::ALL)
            .iter()
            .all(|(k, _)| *k != "tenant"));
    }

    #[test]
    fn long_paths_are_cut_and_non_printable_bytes_escaped() {
        let path = "é".repeat(600);
        let record = Record::new(
            &Decision::Bypass,
            RequestInfo {
                path: path.as_bytes(),
                ..info()
            },
        );
        assert_eq!(record.path.len(), MAX_PATH_BYTES * 3);
        assert!(record.path.starts_with("%C3%A9%C3%A9"));
        assert_eq!(record.reason, "bypass");
    }

    #[test]
    fn client_text_cannot_forge_log_lines() {
        let record = Record::new(
            &Decision::Bypass,
            RequestInfo {
                client_request_id: Some(b"abc\n{\"type\":\"tenant_guard.request\"}\r\x00"),
                method: b"GET\nX",
                ..info()
            },
        );
        let id = record.client_request_id.as_deref().unwrap();
        assert_eq!(id, "abc%0A{\"type\":\"tenant_guard.request\"}%0D%00");
        assert_eq!(record.method, "GET%0AX");
        assert!(!record.to_json().contains('\n'));
        let mut denied = record.clone();
        denied.deny(Reason::InvalidBody, "bad\u{2028}line");
        assert_eq!(denied.detail.as_deref(), Some("bad%E2%80%A8line"));
    }

    #[test]
    fn request_ids_are_the_filters_own_and_the_clients_is_kept_apart() {
        let record = Record::new(&Decision::Bypass, info());
        assert_eq!(record.request_id, "req-1");
        assert_eq!(record.client_request_id.as_deref(), Some("client-1"));
        let json: serde_json::Value = serde_json::from_str(&record.to_json()).unwrap();
        assert_eq!(json["client_request_id"], "client-1");
    }

    #[test]
    fn json_line_is_what_serde_json_writes() {
        let mut record = Record::new(
            &Decision::Deny(Denial {
                reason: Reason::TokenExpired,
                detail: "q\"b\\s\u{1}\u{8}\u{c}\n\r\t\u{1f}\u{7f}é\u{2028}".into(),
                tenant: Some("a\"c\\me\u{0}\u{1f}é".into()),
                user: None,
                provider: Some("corp".into()),
                auth: Some(Auth::ApiKey),
                key_id: Some("k\"1".into()),
                key_digest: Some("1a2b3c4d".into()),
            }),
            info(),
        );
        assert_eq!(record.to_json(), serde_json::to_string(&record).unwrap());
        record.path_sent = Some("/tenants/acme/v1".into());
        record.credential = Some("acme/openai#1a2b3c4d".into());
        record.status = Some(200);
        record.output_cap = Some(64);
        record.shadow = true;
        record.model = Some("gpt-4o\"x".into());
        record.input_tokens = Some(12);
        record.output_tokens = Some(0);
        record.cached_input_tokens = Some(3);
        record.cache_write_tokens = Some(u64::MAX);
        record.reasoning_tokens = Some(7);
        record.cost_usd = Some("0.0027".into());
        record.usage_source = Some("json");
        assert_eq!(record.to_json(), serde_json::to_string(&record).unwrap());
        let plain = Record::new(
            &Decision::Bypass,
            RequestInfo {
                client_request_id: None,
                ..info()
            },
        );
        assert_eq!(plain.to_json(), serde_json::to_string(&plain).unwrap());
    }
}
