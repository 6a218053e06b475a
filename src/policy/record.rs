//! The per-request audit and cost record: one for every request the filter decides, allowed or
//! denied. The shell writes it as Envoy filter state (`wasm.<key>`) and as one JSON log line.
//! A record never holds the token.

use serde::Serialize;

use crate::policy::decision::Decision;

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

    /// The filter-state entries (`wasm.<key>`) for access logs; absent values are not set.
    pub fn filter_state(&self) -> Vec<(&'static str, &str)> {
        let mut state = vec![
            ("decision", self.decision),
            ("reason", self.reason),
            ("request_id", self.request_id.as_str()),
        ];
        for (key, value) in [("tenant", &self.tenant), ("user", &self.user)] {
            if let Some(value) = value {
                state.push((key, value.as_str()));
            }
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
        let decision = Decision::Admit(Admission {
            tenant: "acme".into(),
            user: Some("alice".into()),
            provider: "corp-idp".into(),
            plan: Some("pro".into()),
            header_edits: vec![],
        });
        let record = Record::new(&decision, info());
        let json: serde_json::Value = serde_json::from_str(&record.to_json()).unwrap();
        assert_eq!(json["type"], "tenant_guard.request");
        assert_eq!(json["tenant"], "acme");
        assert_eq!(json["user"], "alice");
        assert_eq!(json["decision"], "allow");
        assert_eq!(json["reason"], "ok");
        assert_eq!(json["request_id"], "req-1");
        assert!(json.get("detail").is_none());
        assert_eq!(
            record.filter_state(),
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
