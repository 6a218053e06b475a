//! Provider-side prompt caches and end-user identifiers, scoped to the tenant.
//!
//! A provider account shares its prompt cache among everyone who calls it: a tenant could time
//! its own requests to learn whether another recently sent the same prefix. OpenAI splits its
//! cache by `prompt_cache_key`, and is told who the end user is by `safety_identifier` (and the
//! older `user`); Anthropic by `metadata.user_id`. The filter sets them all to keyed hashes:
//!
//! - `prompt_cache_key` = tag(tenant, the client's own key or none): a tenant keeps its own
//!   cache buckets, never one shared with another tenant;
//! - `safety_identifier`, `user` (when the client sent one) and `metadata.user_id` =
//!   tag(tenant, verified user or none): stable per tenant and user, not reversible, never a
//!   raw id.
//!
//! A tag is `tg-` and 32 hex digits of HMAC-SHA-256 under the gateway's isolation key.

use serde_json::{Map, Value};

use crate::policy::denial::Reason;
use crate::policy::json_edit::{self, EditError};
use crate::policy::namespace::PathRefusal;

/// Which provider API a request body speaks, as far as these fields go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Chat completions and the Responses API.
    OpenAi,
    /// Messages.
    Anthropic,
}

/// The API of a `method` `path` (normalised, no query) whose body can carry these fields.
pub fn api(method: &str, path: &str) -> Option<Api> {
    if method != "POST" {
        return None;
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., "chat", "completions"] | [.., "responses"] => Some(Api::OpenAi),
        [.., "v1", "messages"] => Some(Api::Anthropic),
        _ => None,
    }
}

/// Who a request is for.
pub struct Scope<'a> {
    /// The gateway's isolation key.
    pub key: &'a [u8; 32],
    /// The tenant's quota id.
    pub tenant: &'a str,
    /// The verified user, when the token names one.
    pub user: Option<&'a str>,
}

/// The body with its cache key and user identifiers scoped to the tenant; `Ok(None)` for a
/// body that is not a JSON object (the provider refuses it anyway).
pub fn scope(body: &[u8], api: Api, scope: &Scope<'_>) -> Result<Option<Vec<u8>>, PathRefusal> {
    let Ok(fields) = crate::policy::json::from_slice::<Map<String, Value>>(body) else {
        return Ok(None);
    };
    let user_tag = json_string(&tag(scope, "user", scope.user.unwrap_or_default()));
    let edited = match api {
        Api::OpenAi => {
            let client_key = fields
                .get("prompt_cache_key")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let cache_tag = json_string(&tag(scope, "cache", client_key));
            let mut edited = json_edit::set(body, &["prompt_cache_key"], &cache_tag);
            edited = edited.and_then(|b| json_edit::set(&b, &["safety_identifier"], &user_tag));
            if fields.contains_key("user") {
                edited = edited.and_then(|b| json_edit::set(&b, &["user"], &user_tag));
            }
            edited
        }
        Api::Anthropic => json_edit::set(body, &["metadata", "user_id"], &user_tag),
    };
    edited.map(Some).map_err(|e| {
        PathRefusal::new(
            Reason::InvalidBody,
            match e {
                EditError::DuplicateKey => "a key the gateway sets appears twice in the body",
                EditError::NotAnObject => "metadata must be an object",
            },
        )
    })
}

/// `tg-` and 32 hex digits of HMAC-SHA-256(key, purpose NUL tenant NUL value).
pub fn tag(scope: &Scope<'_>, purpose: &str, value: &str) -> String {
    let message = [
        purpose.as_bytes(),
        b"\0",
        scope.tenant.as_bytes(),
        b"\0",
        value.as_bytes(),
    ]
    .concat();
    let mac = hmac_sha256::HMAC::mac(message, scope.key);
    let mut out = String::from("tg-");
    for b in mac.iter().take(16) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn json_string(text: &str) -> Vec<u8> {
    serde_json::to_vec(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const KEY: [u8; 32] = [7; 32];

    fn scoped(body: &str, api: Api, tenant: &str, user: Option<&str>) -> Map<String, Value> {
        let s = Scope {
            key: &KEY,
            tenant,
            user,
        };
        let out = scope(body.as_bytes(), api, &s).unwrap().unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn openai_bodies_get_a_tenant_cache_key_and_user_tags() {
        let a = scoped(
            r#"{"model":"gpt-4o","prompt_cache_key":"mine","user":"bob"}"#,
            Api::OpenAi,
            "acme",
            Some("alice"),
        );
        let key = a["prompt_cache_key"].as_str().unwrap();
        assert!(key.starts_with("tg-") && key.len() == 35, "{key}");
        assert_eq!(a["safety_identifier"], a["user"]);
        assert_ne!(a["user"], "bob");
        assert_eq!(a["model"], "gpt-4o");
    }

    #[test]
    fn one_client_key_is_one_bucket_per_tenant_and_never_shared_across_tenants() {
        let body = r#"{"prompt_cache_key":"shared-prefix"}"#;
        let acme = scoped(body, Api::OpenAi, "acme", None);
        let again = scoped(body, Api::OpenAi, "acme", None);
        let globex = scoped(body, Api::OpenAi, "globex", None);
        assert_eq!(acme["prompt_cache_key"], again["prompt_cache_key"]);
        assert_ne!(acme["prompt_cache_key"], globex["prompt_cache_key"]);
        let none = scoped("{}", Api::OpenAi, "acme", None);
        assert_ne!(none["prompt_cache_key"], acme["prompt_cache_key"]);
    }

    #[test]
    fn user_tags_are_stable_per_tenant_and_user_and_differ_across_tenants() {
        let tag = |tenant, user| {
            scoped("{}", Api::Anthropic, tenant, Some(user))["metadata"]["user_id"].clone()
        };
        assert_eq!(tag("acme", "alice"), tag("acme", "alice"));
        assert_ne!(tag("acme", "alice"), tag("acme", "bob"));
        assert_ne!(tag("acme", "alice"), tag("globex", "alice"));
        let anthropic = scoped(
            r#"{"metadata":{"user_id":"raw-id","x":1},"messages":[]}"#,
            Api::Anthropic,
            "acme",
            Some("alice"),
        );
        assert_ne!(anthropic["metadata"]["user_id"], "raw-id");
        assert_eq!(anthropic["metadata"]["x"], 1);
    }

    #[test]
    fn a_duplicate_key_the_gateway_sets_is_refused() {
        let s = Scope {
            key: &KEY,
            tenant: "acme",
            user: None,
        };
        let body = br#"{"prompt_cache_key":"a","prompt_cache_key":"b"}"#;
        let refused = scope(body, Api::OpenAi, &s).unwrap_err();
        assert_eq!(refused.reason, Reason::InvalidBody);
        assert_eq!(scope(b"not json", Api::OpenAi, &s).unwrap(), None);
    }

    #[test]
    fn apis_are_told_by_method_and_path() {
        assert_eq!(api("POST", "/v1/chat/completions"), Some(Api::OpenAi));
        assert_eq!(api("POST", "/tenants/acme/v1/responses"), Some(Api::OpenAi));
        assert_eq!(api("POST", "/v1/messages"), Some(Api::Anthropic));
        assert_eq!(api("POST", "/v1/messages/batches"), None);
        assert_eq!(api("GET", "/v1/chat/completions"), None);
        assert_eq!(api("POST", "/v1/embeddings"), None);
    }
}
