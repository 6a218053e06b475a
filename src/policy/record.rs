//! The per-request audit and cost record: one for every request the filter decides, allowed or
//! denied. The shell writes it as Envoy filter state (`wasm.<key>`) and as one JSON log line.
//! A record never holds the token.

use serde::Serialize;

use crate::policy::decision::Decision;
use crate::policy::denial::Reason;
use crate::policy::metering::Outcome;

/// Longest `path` kept in a record; longer paths are cut (on a character boundary).
const MAX_PATH_BYTES: usize = 1024;

/// The request facts a record carries besides the decision.
pub struct RequestInfo<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    /// `:path` as received (lossily decoded when it is not UTF-8).
    pub path: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub tenant: Option<String>,
    pub user: Option<String>,
    pub provider: Option<String>,
    pub plan: Option<String>,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// `ok`, `bypass`, or a denial's reason code.
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub request_id: String,
    pub method: String,
    pub path: String,
    /// The response status, known once the response has started.
    pub status: Option<u32>,
    /// Usage and cost, for admitted requests once their response ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Exact decimal USD, e.g. `"0.0027"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<String>,
    /// `json`, `sse` or `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_source: Option<&'static str>,
}

impl Record {
    pub fn new(decision: &Decision, info: RequestInfo<'_>) -> Record {
        let mut record = Record {
            kind: "tenant_guard.request",
            tenant: None,
            user: None,
            provider: None,
            plan: None,
            decision: "allow",
            reason: "ok",
            detail: None,
            request_id: info.request_id.to_string(),
            method: info.method.to_string(),
            path: truncate(info.path, MAX_PATH_BYTES).to_string(),
            status: None,
            model: None,
            input_tokens: None,
            output_tokens: None,
            cost_usd: None,
            usage_source: None,
        };
        match decision {
            Decision::Bypass => record.reason = "bypass",
            Decision::Admit(a) => {
                record.tenant = Some(a.tenant.clone());
                record.user = a.user.clone();
                record.provider = Some(a.provider.clone());
                record.plan = a.plan.clone();
            }
            Decision::Deny(d) => {
                record.decision = "deny";
                record.reason = d.reason.code();
                record.detail = Some(d.detail.clone());
                record.tenant = d.tenant.clone();
                record.user = d.user.clone();
                record.provider = d.provider.clone();
            }
        }
        record
    }

    /// Turns an admitted request's record into a denial decided after its headers (a quota
    /// refusal once the body was read).
    pub fn deny(&mut self, reason: Reason, detail: String) {
        self.decision = "deny";
        self.reason = reason.code();
        self.detail = Some(detail);
    }

    /// Notes why an admitted request was let through without a full check (the rate-limit
    /// service could not decide and `failure_mode` is `allow`).
    pub fn admitted_despite(&mut self, reason: Reason) {
        self.reason = reason.code();
    }

    /// Adds what the request used. Tokens and cost are recorded as the upstream reported
    /// them, so records sum to the upstream's own usage.
    pub fn meter(&mut self, outcome: &Outcome) {
        self.model = outcome.model.clone();
        self.input_tokens = Some(outcome.usage.map_or(0, |u| u.input_tokens));
        self.output_tokens = Some(outcome.usage.map_or(0, |u| u.output_tokens));
        self.cost_usd = outcome.cost.map(|c| c.to_decimal_usd());
        self.usage_source = Some(outcome.source.as_str());
    }

    /// The filter-state entries (`wasm.<key>`) of the decision, for access logs; absent values
    /// are not set.
    pub fn filter_state(&self) -> Vec<(&'static str, String)> {
        let mut state = vec![
            ("decision", self.decision.to_string()),
            ("reason", self.reason.to_string()),
            ("request_id", self.request_id.clone()),
        ];
        for (key, value) in [("tenant", &self.tenant), ("user", &self.user)] {
            if let Some(value) = value {
                state.push((key, value.clone()));
            }
        }
        state
    }

    /// The filter-state entries of the usage, once metered.
    pub fn usage_state(&self) -> Vec<(&'static str, String)> {
        let mut state = Vec::new();
        if let Some(model) = &self.model {
            state.push(("model", model.clone()));
        }
        let numbers = [
            ("input_tokens", self.input_tokens),
            ("output_tokens", self.output_tokens),
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
        state
    }

    /// The record as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
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
            request_id: "req-1",
            method: "POST",
            path: "/v1/chat/completions",
        }
    }

    #[test]
    fn admission_record_names_tenant_user_and_ok() {
        let decision = Decision::Admit(Box::new(Admission {
            tenant: "acme".into(),
            user: Some("alice".into()),
            provider: "corp-idp".into(),
            plan: Some("pro".into()),
            limits: Default::default(),
            header_edits: vec![],
            rerouted: false,
            body_plan: None,
            response_plan: None,
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
        let state = record.filter_state();
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
    }

    #[test]
    fn denial_record_keeps_reason_and_detail() {
        let decision = Decision::Deny(Denial {
            reason: Reason::TokenExpired,
            detail: "token expired".into(),
            tenant: None,
            user: None,
            provider: None,
        });
        let record = Record::new(&decision, info());
        assert_eq!((record.decision, record.reason), ("deny", "token_expired"));
        assert_eq!(record.detail.as_deref(), Some("token expired"));
        assert!(record.filter_state().iter().all(|(k, _)| *k != "tenant"));
    }

    #[test]
    fn long_paths_are_cut_on_a_character_boundary() {
        let path = "é".repeat(600);
        let record = Record::new(
            &Decision::Bypass,
            RequestInfo {
                path: &path,
                ..info()
            },
        );
        assert!(record.path.len() <= MAX_PATH_BYTES);
        assert!(record.path.chars().all(|c| c == 'é'));
        assert_eq!(record.reason, "bypass");
    }
}
