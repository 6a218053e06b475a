use super::*;
use crate::policy::config::Config;
use crate::policy::provider_api::from_path;
use serde_json::{json, Value};
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn list(entries: &[&str]) -> Rc<ModelList> {
    let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
    check("plans.free.models", &entries).unwrap();
    compile(&entries)
}

fn rule(entries: &[&str]) -> ModelRule {
    ModelRule {
        list: list(entries),
        plan: Some("free".into()),
        tenant: "acme".into(),
    }
}

fn free() -> ModelRule {
    rule(&["gpt-4o-mini", "claude-3-5-haiku-*", "gemini-1.5-flash*"])
}

fn message(refused: &Refused) -> String {
    let body: Value = serde_json::from_str(&refused.reply.body).unwrap();
    assert_eq!(body["error"]["code"], refused.reason.code());
    body["error"]["message"].as_str().unwrap().to_string()
}

fn path_check(rule: &ModelRule, path: &str) -> Result<(), Refused> {
    rule.check_path(from_path(path).as_ref())
}

fn body_check(rule: &ModelRule, method: &str, path: &str, body: &Value) -> Result<(), Refused> {
    let api = from_path(path).map(|found| found.api);
    rule.check_body(endpoint(method, path, api), body.to_string().as_bytes())
}

#[test]
fn exact_names_match_whole_and_prefixes_match_the_start() {
    let free = list(&["gpt-4o-mini", "claude-3-5-haiku-*"]);
    assert!(free.allows("gpt-4o-mini"));
    assert!(!free.allows("gpt-4o"));
    assert!(!free.allows("gpt-4o-mini-2024-07-18"));
    assert!(
        !free.allows("GPT-4o-mini"),
        "names are compared byte for byte"
    );
    assert!(!free.allows(" gpt-4o-mini"));
    assert!(free.allows("claude-3-5-haiku-20241022"));
    assert!(free.allows("claude-3-5-haiku-"));
    assert!(!free.allows("claude-3-5-haiku"));
    assert!(!free.allows("claude-3-5-sonnet-20241022"));
    assert!(!free.allows(""));
    assert!(!free.allows_all());
    let all = list(&["gpt-4o", "*"]);
    assert!(all.allows_all() && all.allows("anything") && all.allows(""));
}

#[test]
fn bad_lists_are_refused_with_their_path() {
    let cases: [(&[&str], &str, &str); 7] = [
        (&[], "plans.free.models", "at least one model"),
        (&["gpt-4o", ""], "plans.free.models[1]", "must not be empty"),
        (
            &["gpt-*-mini"],
            "plans.free.models[0]",
            "may only end a pattern",
        ),
        (&["*gpt"], "plans.free.models[0]", "may only end a pattern"),
        (&["gpt**"], "plans.free.models[0]", "may only end a pattern"),
        (&["gpt 4o"], "plans.free.models[0]", "printable ASCII"),
        (&["gpt-4o\n"], "plans.free.models[0]", "printable ASCII"),
    ];
    for (entries, path, message) in cases {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        let e = check("plans.free.models", &entries).unwrap_err();
        assert_eq!(e.path, path, "{entries:?}");
        assert!(e.message.contains(message), "{entries:?}: {}", e.message);
    }
    let long = vec!["x".repeat(257)];
    assert!(check("m", &long).is_err());
    assert!(check("m", &["x".repeat(256)]).is_ok());
}

#[test]
fn endpoints_that_take_a_model_in_the_body() {
    for path in [
        "/v1/chat/completions",
        "/v1/completions?x=1",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
        "/anthropic/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/audio/speech",
        "/v1/images/generations",
        "/v1/fine_tuning/jobs",
        "/openai/v1/chat/completions?api-version=preview",
        "/tenants/acme/v1/chat/completions/",
    ] {
        assert_eq!(endpoint("POST", path, None), Endpoint::Required, "{path}");
        assert_eq!(endpoint("GET", path, None), Endpoint::None, "{path}");
    }
    for path in [
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
        "/v1/images/edits",
        "/v1/images/variations",
    ] {
        assert_eq!(endpoint("POST", path, None), Endpoint::Form, "{path}");
    }
    for path in [
        "/v1/models",
        "/v1/files",
        "/v1/threads/thread_1/messages",
        "/v1/responses/resp_1/cancel",
        "/v1/chat/completions/chatcmpl-1",
        "/v1/moderations",
    ] {
        assert_eq!(endpoint("POST", path, None), Endpoint::None, "{path}");
    }
    let azure = from_path("/openai/deployments/d/chat/completions").map(|f| f.api);
    assert_eq!(endpoint("POST", "x", azure), Endpoint::InPath);
    assert_eq!(endpoint("GET", "x", azure), Endpoint::InPath);
}

#[test]
fn every_model_member_of_the_body_is_read() {
    let read = |text: &str| body_model(text.as_bytes());
    assert_eq!(
        read(r#"{"model":"gpt-4o","messages":[{"model":"x"}]}"#),
        BodyModel::Named(vec!["gpt-4o".into()])
    );
    assert_eq!(
        read(r#"{"model":"gpt-4o-mini","model":"gpt-4o"}"#),
        BodyModel::Named(vec!["gpt-4o-mini".into(), "gpt-4o".into()])
    );
    assert_eq!(
        read(r#"{"mod\u0065l":"gpt\u002d4o"}"#),
        BodyModel::Named(vec!["gpt-4o".into()])
    );
    assert_eq!(read(r#"{"messages":[]}"#), BodyModel::Missing);
    assert_eq!(read(r#"{"model":null}"#), BodyModel::NotString);
    assert_eq!(read(r#"{"model":["gpt-4o-mini"]}"#), BodyModel::NotString);
    assert_eq!(
        read(r#"{"model":"gpt-4o-mini","model":7}"#),
        BodyModel::NotString
    );
    for text in [
        "",
        "[]",
        "\"gpt-4o\"",
        "{",
        r#"{"model":"a"} x"#,
        "not json",
    ] {
        assert_eq!(read(text), BodyModel::NotJson, "{text}");
    }
}

#[test]
fn a_model_outside_the_list_is_refused_naming_the_model_and_the_plan() {
    let free = free();
    let chat = "/v1/chat/completions";
    assert!(body_check(&free, "POST", chat, &json!({"model": "gpt-4o-mini"})).is_ok());
    assert!(body_check(&free, "POST", chat, &json!({"model": "claude-3-5-haiku-1"})).is_ok());
    let refused = body_check(&free, "POST", chat, &json!({"model": "gpt-4o"})).unwrap_err();
    assert_eq!(refused.reason, Reason::ModelNotAllowed);
    assert_eq!(refused.reply.status, 403);
    assert_eq!(
        message(&refused),
        "The model 'gpt-4o' is not available on plan 'free'."
    );
    assert!(refused.detail.starts_with("model \"gpt-4o\" (in the body)"));
    let body: Value = serde_json::from_str(&refused.reply.body).unwrap();
    assert_eq!(body["error"]["type"], "permission_error");
}

#[test]
fn a_body_naming_two_models_is_refused_unless_both_are_allowed() {
    let free = free();
    let text = br#"{"model":"gpt-4o-mini","model":"gpt-4o"}"#;
    let refused = free.check_body(Endpoint::Required, text).unwrap_err();
    assert!(refused.detail.contains("gpt-4o\""), "{}", refused.detail);
    let twice = br#"{"model":"gpt-4o-mini","model":"claude-3-5-haiku-x"}"#;
    assert!(free.check_body(Endpoint::Required, twice).is_ok());
}

#[test]
fn a_missing_or_non_string_model_is_required_where_the_endpoint_needs_one() {
    let free = free();
    for body in [
        &b"{}"[..],
        b"",
        b"[1]",
        br#"{"model": 4}"#,
        br#"{"model": null}"#,
    ] {
        let refused = free.check_body(Endpoint::Required, body).unwrap_err();
        assert_eq!(refused.reason, Reason::ModelRequired, "{body:?}");
        assert_eq!(refused.reply.status, 400);
        assert!(message(&refused).contains("plan 'free'"));
    }
    // Where the path names the model, the body need not; a body model that is no string is
    // still refused.
    assert!(free.check_body(Endpoint::InPath, b"{}").is_ok());
    assert!(free.check_body(Endpoint::InPath, b"").is_ok());
    let refused = free
        .check_body(Endpoint::InPath, br#"{"model": {"id": "gpt-4o"}}"#)
        .unwrap_err();
    assert_eq!(refused.reason, Reason::ModelRequired);
    // Endpoints that name no model are not read.
    assert!(free.check_body(Endpoint::None, b"garbage").is_ok());
}

#[test]
fn multipart_endpoints_are_refused_while_a_list_applies() {
    let refused = free().check_body(Endpoint::Form, b"").unwrap_err();
    assert_eq!(refused.reason, Reason::ModelNotAllowed);
    assert!(message(&refused).contains("cannot tell the model"));
}

#[test]
fn path_models_of_azure_gemini_and_bedrock_are_checked() {
    let free = free();
    for path in [
        "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
        "/v1beta/models/gemini-1.5-flash:generateContent",
        "/v1beta/models/gemini-1.5-flash-8b:streamGenerateContent?alt=sse",
        "/model/claude-3-5-haiku-20241022/converse",
        "/v1/chat/completions",
        "/v1/models",
    ] {
        assert!(path_check(&free, path).is_ok(), "{path}");
    }
    for (path, model) in [
        ("/openai/deployments/gpt-4o/chat/completions", "gpt-4o"),
        ("/v1beta/models/gemini-1.5-pro:generateContent", "gemini-1.5-pro"),
        (
            "/v1/projects/p/locations/l/publishers/google/models/gemini-2.0-pro:streamGenerateContent",
            "gemini-2.0-pro",
        ),
        (
            "/model/anthropic.claude-3-opus/invoke-with-response-stream",
            "anthropic.claude-3-opus",
        ),
        // Resolved as the upstream resolves it.
        (
            "/openai/deployments/gpt-4o-mini/../gpt-4o/chat/completions",
            "gpt-4o",
        ),
        (
            "/openai/deployments/gpt%2D4o/chat/completions",
            "gpt-4o",
        ),
    ] {
        let refused = path_check(&free, path).unwrap_err();
        assert_eq!(refused.reason, Reason::ModelNotAllowed, "{path}");
        assert!(
            refused.detail.starts_with(&format!("model \"{model}\" (in the path)")),
            "{path}: {}",
            refused.detail
        );
    }
    // A path whose model cannot be read is no listed model.
    for path in [
        "/v1/projects/p/locations/l/endpoints/123:generateContent",
        "/openai/deployments/%zz/chat/completions",
    ] {
        let refused = path_check(&free, path).unwrap_err();
        assert_eq!(refused.reason, Reason::ModelNotAllowed, "{path}");
        assert!(!refused.detail.contains('"'), "{}", refused.detail);
    }
}

#[test]
fn body_and_path_models_that_disagree_must_both_be_allowed() {
    let free = free();
    let allowed = "/openai/deployments/gpt-4o-mini/chat/completions";
    let refused = body_check(&free, "POST", allowed, &json!({"model": "gpt-4o"})).unwrap_err();
    assert_eq!(refused.reason, Reason::ModelNotAllowed);
    assert!(path_check(&free, allowed).is_ok());
    let denied = "/openai/deployments/gpt-4o/chat/completions";
    assert!(body_check(&free, "POST", denied, &json!({"model": "gpt-4o-mini"})).is_ok());
    assert!(path_check(&free, denied).is_err());
}

#[test]
fn a_refusal_quotes_what_the_client_sent_safely() {
    let free = free();
    let body = json!({"model": format!("evil\"\n{}", "x".repeat(1000))});
    let refused = body_check(&free, "POST", "/v1/chat/completions", &body).unwrap_err();
    assert!(
        refused.detail.starts_with("model \"evil%22%0A"),
        "{}",
        refused.detail
    );
    assert!(refused.detail.len() < 400);
    assert!(!message(&refused).contains('\n'));
}

// === Configuration ===

fn document(plans: Value, tenants: Value) -> Value {
    json!({
        "providers": {"idp": {
            "issuer": "https://idp.example.com",
            "audiences": ["gw"],
            "jwks": {"keys": [{"kty": "oct", "kid": "k1",
                               "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}
        }},
        "plans": plans,
        "tenants": tenants,
        "default_tenant": {"providers": ["idp"], "plan": "free"}
    })
}

fn models_of(config: &Config, tenant: &str) -> Option<Rc<ModelList>> {
    config
        .tenants
        .bind_key_owner(tenant)
        .unwrap()
        .limits
        .models
        .clone()
}

#[test]
fn plans_list_models_and_tenants_replace_the_list() {
    let doc = document(
        json!({"free": {"models": ["gpt-4o-mini", "claude-3-5-haiku-*"]}, "pro": {}}),
        json!({
            "acme": {"providers": ["idp"], "plan": "free"},
            "globex": {"providers": ["idp"], "plan": "free", "models": ["gpt-4o"]},
            "initech": {"providers": ["idp"], "plan": "pro"},
            "hooli": {"providers": ["idp"], "models": ["*"]}
        }),
    );
    let config = Config::parse(doc.to_string().as_bytes()).unwrap();
    let acme = models_of(&config, "acme").unwrap();
    assert!(acme.allows("gpt-4o-mini") && !acme.allows("gpt-4o") && !acme.by_tenant);
    let globex = models_of(&config, "globex").unwrap();
    assert!(globex.allows("gpt-4o") && !globex.allows("gpt-4o-mini") && globex.by_tenant);
    assert_eq!(models_of(&config, "initech"), None);
    assert!(models_of(&config, "hooli").unwrap().allows_all());
    let default = config.tenants.default_tenant().unwrap();
    assert!(default
        .limits
        .models
        .as_ref()
        .unwrap()
        .allows("gpt-4o-mini"));
    // The refusal names the tenant when its own list refused.
    let rule = ModelRule {
        list: globex,
        plan: Some("free".into()),
        tenant: "globex".into(),
    };
    let refused = rule
        .check_body(Endpoint::Required, br#"{"model":"o1"}"#)
        .unwrap_err();
    assert_eq!(
        message(&refused),
        "The model 'o1' is not available on tenant 'globex'."
    );
}

#[test]
fn bad_model_lists_in_the_configuration_name_their_path() {
    let cases = [
        (
            json!({"free": {"models": ["gpt-*-mini"]}}),
            json!({}),
            "plans.free.models[0]",
        ),
        (
            json!({"free": {"models": []}}),
            json!({}),
            "plans.free.models",
        ),
        (
            json!({"free": {}}),
            json!({"acme": {"providers": ["idp"], "plan": "free", "models": ["", "x"]}}),
            "tenants.acme.models[0]",
        ),
        (
            json!({"free": {}}),
            json!({"acme": {"providers": ["idp"], "plan": "free",
                            "limits": {"models": ["x"]}}}),
            "tenants.acme.limits.models",
        ),
    ];
    for (plans, tenants, path) in cases {
        let doc = document(plans, tenants);
        let e = Config::parse(doc.to_string().as_bytes()).err().unwrap();
        assert_eq!(e.path, path, "{}", e.message);
    }
}
