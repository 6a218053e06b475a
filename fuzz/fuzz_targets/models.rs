//! `models`: reading a body's models (`models::body_model`) and a path's model
//! (`provider_api::from_path`) and ruling on them never panics, and never lets through a
//! request naming a model off the list: when a body is allowed, every string `model` it names
//! is on the list; when a path is allowed and names a model, that model is on the list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_guard::policy::config::Config;
use tenant_guard::policy::models::{self, BodyModel, Endpoint, ModelRule};
use tenant_guard::policy::provider_api;

fn rule() -> ModelRule {
    // Built once per thread (libFuzzer runs one) and kept: `Config` is not `Sync`.
    thread_local! {
        static CONFIG: &'static Config = Box::leak(Box::new({
            let doc = serde_json::json!({
              "providers": {"corp": {"issuer": "https://corp", "audiences": ["gw"],
                "jwks": {"keys": [{"kty": "oct", "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}}},
              "plans": {"free": {"models": ["gpt-4o-mini", "claude-3-5-haiku-*", "gemini-*"]}},
              "tenants": {"acme": {"providers": ["corp"], "plan": "free"}}
            });
            Config::parse(doc.to_string().as_bytes()).expect("fixture configuration")
        }));
    }
    let config = CONFIG.with(|config| *config);
    let bound = config
        .tenants
        .bind_key_owner("acme")
        .expect("fixture tenant");
    ModelRule {
        list: bound.limits.models.clone().expect("fixture list"),
        plan: Some("free".into()),
        tenant: "acme".into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let rule = rule();
    if selector % 2 == 0 {
        let endpoint = if selector % 4 == 0 {
            Endpoint::Required
        } else {
            Endpoint::InPath
        };
        let verdict = rule.check_body(endpoint, rest);
        if verdict.is_ok() {
            match models::body_model(rest) {
                BodyModel::Named(names) => {
                    for name in names {
                        assert!(rule.list.allows(&name), "{name} let through");
                    }
                }
                BodyModel::NotString => panic!("a model that is no string let through"),
                BodyModel::Missing | BodyModel::NotJson => {
                    assert_eq!(endpoint, Endpoint::InPath, "no model let through")
                }
            }
        }
    } else {
        let Ok(path) = std::str::from_utf8(rest) else {
            return;
        };
        let found = provider_api::from_path(path);
        if rule.check_path(found.as_ref()).is_ok() {
            if let Some(found) = found {
                let model = found.model.expect("an unreadable path model let through");
                assert!(rule.list.allows(&model), "{model} let through");
            }
        }
    }
});
