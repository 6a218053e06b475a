use super::*;
use crate::policy::cost::Price;
use crate::policy::global_rate_limit::FailureMode;
use crate::policy::lease::{self, LeaseRules};
use crate::policy::plan::{OutputCap, Window, DEFAULT_MIN_OUTPUT_TOKENS};
use serde_json::{json, Value};
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// base64url of 32 bytes "0123456789abcdef0123456789abcdef": a test-only HMAC key.
const OCT_K: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";

/// The contract's example document, with an HMAC key standing in for the RSA one.
fn contract_example() -> Value {
    json!({
      "providers": {
        "corp-idp": {
          "issuer": "https://idp.example.com",
          "audiences": ["genai-gateway"],
          "jwks": {"keys": [{"kty": "oct", "kid": "k1", "k": OCT_K}]},
          "remote_jwks": {"cluster": "idp", "authority": "idp.example.com",
                          "path": "/.well-known/jwks.json", "refresh_s": 300}
        },
        "globex-idp": {
          "issuer": "https://globex.example.com",
          "audiences": "any",
          "jwks": {"keys": [{"kty": "oct", "kid": "g1", "k": OCT_K}]}
        }
      },
      "identity": {
        "token_sources": [{"header": "authorization", "prefix": "Bearer "}],
        "tenant_claim": "tenant_id",
        "user_claim": "sub",
        "clock_skew_s": 60,
        "tenant_header": "x-tenant-id",
        "forward_claims": {"sub": "x-user-id"},
        "strip_token": false
      },
      "tenants": {
        "acme":   {"status": "active",    "providers": ["corp-idp"], "plan": "pro",
                   "namespace": "acme"},
        "globex": {"status": "suspended", "providers": ["globex-idp"], "plan": "free"}
      },
      "default_tenant": {"providers": ["corp-idp"], "plan": "free"},
      "plans": {
        "free": {"requests": [{"limit": 60, "window_s": 60}],
                 "tokens":   [{"limit": 100000, "window_s": 86400}],
                 "monthly_budget_usd": 10.0},
        "pro":  {"requests": [{"limit": 600, "window_s": 60}, {"limit": 20, "window_s": 1}],
                 "tokens":   [{"limit": 2000000, "window_s": 86400}],
                 "monthly_budget_usd": 500.0}
      },
      "global_rate_limit": {"cluster": "ratelimit", "domain": "tenant-guard",
                            "timeout_ms": 50, "failure_mode": "deny", "extra_entries": []},
      "routing": {"path_prefix": "/tenants/{namespace}",
                  "authority": "{namespace}.models.internal",
                  "namespace_header": "x-tenant-namespace"},
      "pricing": {"models": {"gpt-4o": {"input_per_million": 2.5, "output_per_million": 10.0}},
                  "default": {"input_per_million": 1.0, "output_per_million": 3.0}},
      "bypass_paths": ["/healthz"]
    })
}

fn parse(doc: &Value) -> Result<Config, ConfigError> {
    Config::parse(doc.to_string().as_bytes())
}

/// Applies `edit` to the example and returns the error path and message.
fn refused(edit: impl FnOnce(&mut Value)) -> ConfigError {
    let mut doc = contract_example();
    edit(&mut doc);
    match parse(&doc) {
        Ok(_) => panic!("configuration was accepted: {doc}"),
        Err(e) => e,
    }
}

#[test]
fn contract_example_is_accepted_whole() {
    let config = parse(&contract_example()).unwrap();
    assert_eq!(config.providers.len(), 2);
    assert_eq!(config.remote_jwks.len(), 1);
    assert_eq!(config.remote_jwks[0].authority, "idp.example.com");
    assert_eq!(config.tenant_header.as_deref(), Some("x-tenant-id"));
    assert!(config.bypass_paths.contains("/healthz"));
    assert_eq!(
        config.pricing.models["gpt-4o"],
        Price::flat(2_500_000, 10_000_000)
    );
    let acme = config.tenants.bind("acme", 0).unwrap();
    assert_eq!(acme.limits.requests.len(), 2);
    assert_eq!(acme.limits.monthly_budget_micro_usd, Some(500_000_000));
    assert_eq!(
        config.global_rate_limit.unwrap().failure_mode,
        FailureMode::Deny
    );
}

#[test]
fn minimal_document_gets_safe_defaults() {
    let config = parse(&json!({"providers": {"p": {
        "issuer": "https://i", "audiences": ["gw"],
        "jwks": {"keys": [{"kty": "oct", "k": OCT_K}]}}}}))
    .unwrap();
    assert!(!config.providers[0].require_kid);
    assert_eq!(
        config.token_sources,
        vec![TokenSource {
            header: "authorization".into(),
            prefix: Some("Bearer ".into())
        }]
    );
    assert_eq!(config.identity.tenant_claim.as_str(), "tenant_id");
    assert_eq!(config.identity.clock_skew_s, 60);
    assert!(!config.strip_token);
    // No tenants and no default tenant: nobody is admitted.
    assert_eq!(
        config.tenants.bind("acme", 0).unwrap_err().reason,
        crate::policy::denial::Reason::UnknownTenant
    );
}

#[test]
fn unknown_field_is_refused_with_its_path() {
    let e = refused(|d| d["tenants"]["acme"]["plna"] = json!("pro"));
    assert_eq!(e.path, "tenants.acme.plna");
    assert!(e.message.starts_with("unknown field `plna`"), "{e}");
    let e = refused(|d| d["surprise"] = json!(1));
    assert_eq!(e.path, "surprise");
}

#[test]
fn an_object_written_as_a_list_is_refused() {
    // serde's structs also take their fields as an array, in order; the contract never did.
    let e = refused(|d| d["identity"] = json!([[], "tenant_id"]));
    assert_eq!(e.path, "identity");
    assert!(
        e.message
            .starts_with("invalid type: sequence, expected struct RawIdentity"),
        "{e}"
    );
    let e = refused(|d| d["tenants"]["acme"]["limits"] = json!([]));
    assert_eq!(e.path, "tenants.acme.limits");
}

#[test]
fn a_word_of_an_enum_is_checked_as_serde_did() {
    let e = refused(|d| d["tenants"]["acme"]["status"] = json!("paused"));
    assert_eq!(e.path, "tenants.acme.status");
    assert!(
        e.message
            .starts_with("unknown variant `paused`, expected `active` or `suspended`"),
        "{e}"
    );
    let e = refused(|d| d["tenants"]["acme"]["status"] = json!(1));
    assert!(
        e.message
            .starts_with("invalid type: integer `1`, expected enum Status"),
        "{e}"
    );
    let e = refused(|d| d["tenants"]["acme"]["status"] = json!({"active": null}));
    assert!(
        e.message
            .starts_with("invalid type: map, expected enum Status"),
        "{e}"
    );
}

#[test]
fn unknown_plan_is_refused() {
    let e = refused(|d| d["tenants"]["acme"]["plan"] = json!("gold"));
    assert_eq!(e.to_string(), "tenants.acme.plan: unknown plan \"gold\"");
}

#[test]
fn unknown_provider_reference_is_refused() {
    let e = refused(|d| d["tenants"]["acme"]["providers"] = json!(["corp-idp", "nope"]));
    assert_eq!(
        e.to_string(),
        "tenants.acme.providers[1]: unknown provider \"nope\""
    );
    let e = refused(|d| d["default_tenant"]["providers"] = json!(["nope"]));
    assert_eq!(e.path, "default_tenant.providers[0]");
}

#[test]
fn tenant_without_providers_is_refused() {
    let e = refused(|d| d["tenants"]["acme"]["providers"] = json!([]));
    assert_eq!(e.path, "tenants.acme.providers");
}

#[test]
fn empty_providers_are_refused() {
    let e = refused(|d| d["providers"] = json!({}));
    assert_eq!(e.path, "providers");
}

#[test]
fn provider_without_any_keys_is_refused() {
    let e = refused(|d| {
        d["providers"]["globex-idp"]
            .as_object_mut()
            .unwrap()
            .remove("jwks");
    });
    assert_eq!(e.path, "providers.globex-idp");
}

#[test]
fn bad_jwk_is_refused_with_the_key_path() {
    let e = refused(|d| d["providers"]["corp-idp"]["jwks"]["keys"][0]["k"] = json!("%%%"));
    assert!(e.path.starts_with("providers.corp-idp.jwks.keys[0]"), "{e}");
}

#[test]
fn duplicate_key_ids_within_a_provider_are_refused() {
    let e = refused(|d| {
        d["providers"]["corp-idp"]["jwks"]["keys"] = json!([
            {"kty": "oct", "kid": "k1", "k": OCT_K},
            {"kty": "oct", "kid": "k1", "k": OCT_K}
        ])
    });
    assert!(e.path.starts_with("providers.corp-idp.jwks"), "{e}");
}

#[test]
fn wrong_types_are_refused_with_their_path() {
    let e = refused(|d| d["plans"]["free"]["requests"][0]["limit"] = json!("sixty"));
    assert_eq!(e.path, "plans.free.requests[0].limit");
    let e = refused(|d| d["tenants"]["globex"]["status"] = json!("paused"));
    assert_eq!(e.path, "tenants.globex.status");
}

#[test]
fn zero_windows_and_negative_money_are_refused() {
    let e = refused(|d| d["plans"]["pro"]["requests"][1]["window_s"] = json!(0));
    assert_eq!(e.path, "plans.pro.requests[1].window_s");
    let e = refused(|d| d["plans"]["pro"]["monthly_budget_usd"] = json!(-1.0));
    assert_eq!(e.path, "plans.pro.monthly_budget_usd");
    let e = refused(|d| d["pricing"]["default"]["output_per_million"] = json!(-3));
    assert_eq!(e.path, "pricing.default.output_per_million");
}

#[test]
fn tenant_limits_override_their_plan_field_by_field() {
    let mut doc = contract_example();
    doc["tenants"]["acme"]["limits"] = json!({"tokens": [{"limit": 5, "window_s": 60}]});
    let config = parse(&doc).unwrap();
    let acme = config.tenants.bind("acme", 0).unwrap();
    assert_eq!(
        acme.limits.tokens,
        vec![Window {
            limit: 5,
            window_s: 60
        }]
    );
    assert_eq!(
        acme.limits.requests.len(),
        2,
        "requests still from plan pro"
    );
}

#[test]
fn tenant_ids_unfit_for_paths_are_refused() {
    let e = refused(|d| d["tenants"]["a/b"] = json!({"providers": ["corp-idp"]}));
    assert_eq!(e.path, "tenants.a/b");
    let e = refused(|d| d["tenants"]["acme"]["namespace"] = json!("../x"));
    assert_eq!(e.path, "tenants.acme.namespace");
}

#[test]
fn remote_jwks_needs_a_path_and_a_real_timeout() {
    let e = refused(|d| d["providers"]["corp-idp"]["remote_jwks"]["path"] = json!("jwks"));
    assert_eq!(e.path, "providers.corp-idp.remote_jwks.path");
    let e = refused(|d| d["providers"]["corp-idp"]["remote_jwks"]["timeout_ms"] = json!(0));
    assert_eq!(e.path, "providers.corp-idp.remote_jwks.timeout_ms");
}

#[test]
fn remote_keys_may_go_stale_after_max_stale_s() {
    let config = parse(&contract_example()).unwrap();
    // Default: an hour (refresh_s 300, timeout 5 s).
    assert_eq!(config.remote_jwks[0].max_stale_s, 3600);
    let mut doc = contract_example();
    doc["providers"]["corp-idp"]["remote_jwks"]["refresh_s"] = json!(7200);
    // Longer refreshes: two of them and a timeout.
    assert_eq!(parse(&doc).unwrap().remote_jwks[0].max_stale_s, 14_405);
    doc["providers"]["corp-idp"]["remote_jwks"]["max_stale_s"] = json!(86_400);
    assert_eq!(parse(&doc).unwrap().remote_jwks[0].max_stale_s, 86_400);
    // At least one refresh and its timeout (300 s + 5 s).
    let mut doc = contract_example();
    doc["providers"]["corp-idp"]["remote_jwks"]["max_stale_s"] = json!(305);
    assert_eq!(parse(&doc).unwrap().remote_jwks[0].max_stale_s, 305);
    let e = refused(|d| d["providers"]["corp-idp"]["remote_jwks"]["max_stale_s"] = json!(304));
    assert_eq!(e.path, "providers.corp-idp.remote_jwks.max_stale_s");
    assert!(
        e.message
            .contains("at least refresh_s plus the fetch timeout (305 s)"),
        "{e}"
    );
    let e = refused(|d| d["providers"]["corp-idp"]["remote_jwks"]["max_stale_s"] = json!(-1));
    assert_eq!(e.path, "providers.corp-idp.remote_jwks.max_stale_s");
}

#[test]
fn token_types_default_to_none_jwt_and_at_jwt() {
    let config = parse(&contract_example()).unwrap();
    let types = &config.providers[0].token_types;
    assert_eq!(*types, TokenTypes::default());
    assert!(types.accepts(None) && types.accepts(Some("JWT")) && types.accepts(Some("at+jwt")));
    assert!(!types.accepts(Some("logout+jwt")));
    let mut doc = contract_example();
    doc["providers"]["corp-idp"]["token_types"] = json!(["", "application/secevent+jwt"]);
    let config = parse(&doc).unwrap();
    let types = &config.providers[0].token_types;
    assert!(types.accepts(None) && types.accepts(Some("secevent+jwt")));
    assert!(!types.accepts(Some("JWT")));
}

#[test]
fn bad_token_types_are_refused_with_their_path() {
    let e = refused(|d| d["providers"]["corp-idp"]["token_types"] = json!(["JWT", "jose"]));
    assert_eq!(e.path, "providers.corp-idp.token_types[1]");
    let e = refused(|d| d["providers"]["corp-idp"]["token_types"] = json!([]));
    assert_eq!(e.path, "providers.corp-idp.token_types");
    let e = refused(|d| d["providers"]["corp-idp"]["token_types"] = json!(["jwt", "JWT"]));
    assert_eq!(
        e.to_string(),
        "providers.corp-idp.token_types[1]: listed twice"
    );
    let e = refused(|d| d["providers"]["corp-idp"]["token_types"] = json!("JWT"));
    assert_eq!(e.path, "providers.corp-idp.token_types");
}

#[test]
fn inline_keys_must_be_signature_keys_long_enough_for_their_alg() {
    let e = refused(|d| {
        d["providers"]["corp-idp"]["jwks"]["keys"][0]["alg"] = json!("HS512");
    });
    assert_eq!(
        e.to_string(),
        "providers.corp-idp.jwks.keys[0].k: HMAC secret is 32 bytes; HS512 needs at least 64 \
         (RFC 7518 §3.2)"
    );
    let e = refused(|d| {
        d["providers"]["corp-idp"]["jwks"]["keys"][0]["key_ops"] = json!(["encrypt"]);
    });
    assert_eq!(e.path, "providers.corp-idp.jwks.keys[0].key_ops");
}

#[test]
fn header_names_are_checked_and_lower_cased() {
    let e = refused(|d| d["identity"]["tenant_header"] = json!("x tenant"));
    assert_eq!(e.path, "identity.tenant_header");
    let e = refused(|d| d["identity"]["forward_claims"] = json!({"sub": "X-Tenant-Id"}));
    assert_eq!(e.path, "identity.forward_claims.sub");
    let mut doc = contract_example();
    doc["identity"]["tenant_header"] = json!("X-Tenant-ID");
    assert_eq!(
        parse(&doc).unwrap().tenant_header.as_deref(),
        Some("x-tenant-id")
    );
}

#[test]
fn routing_templates_know_only_tenant_and_namespace() {
    let e = refused(|d| d["routing"]["path_prefix"] = json!("/t/{org}"));
    assert_eq!(e.path, "routing.path_prefix");
    for bad in [
        "/t/{tenant}/",
        "/a//{namespace}",
        "/a/../{tenant}",
        "/%2e/{tenant}",
        "t",
    ] {
        let e = refused(|d| d["routing"]["path_prefix"] = json!(bad));
        assert_eq!(e.path, "routing.path_prefix", "{bad}");
    }
}

#[test]
fn global_rate_limit_failure_mode_is_deny_or_allow() {
    let e = refused(|d| d["global_rate_limit"]["failure_mode"] = json!("maybe"));
    assert_eq!(e.path, "global_rate_limit.failure_mode");
    let e = refused(|d| d["global_rate_limit"]["extra_entries"] = json!(["tenant_id"]));
    assert_eq!(e.path, "global_rate_limit.extra_entries[0]");
}

#[test]
fn lease_gets_safe_defaults_and_names_what_is_wrong() {
    let mut doc = contract_example();
    doc["global_rate_limit"]["lease"] = json!({"window_s": 60});
    let lease = parse(&doc)
        .unwrap()
        .global_rate_limit
        .unwrap()
        .lease
        .unwrap();
    assert_eq!(
        lease,
        LeaseRules {
            window_ms: 60_000,
            block_ms: 5_000,
            low_water_permille: 500,
            requests: lease::Blocks { min: 1, max: 1000 },
            tokens: lease::Blocks {
                min: 1000,
                max: 1_000_000
            },
            stale_ms: 1_100,
        }
    );
    let lease_error = |lease: Value| refused(|d| d["global_rate_limit"]["lease"] = lease);
    let e = lease_error(json!({}));
    assert_eq!(e.path, "global_rate_limit.lease.window_s");
    assert!(e.message.starts_with("required"), "{e}");
    for (lease, path) in [
        (json!({"window_s": 0}), "window_s"),
        (json!({"window_s": 60, "block_seconds": 0}), "block_seconds"),
        (json!({"window_s": 60, "low_water": 0}), "low_water"),
        (json!({"window_s": 60, "low_water": 1.5}), "low_water"),
        (
            json!({"window_s": 60, "requests": {"min_block": 0}}),
            "requests.min_block",
        ),
        (
            json!({"window_s": 60, "tokens": {"min_block": 10, "max_block": 5}}),
            "tokens.max_block",
        ),
        (json!({"window_s": 60, "enabled": true}), "enabled"),
    ] {
        let e = lease_error(lease.clone());
        assert_eq!(
            e.path,
            format!("global_rate_limit.lease.{path}"),
            "{lease}: {e}"
        );
    }
    let e = refused(|d| {
        d["global_rate_limit"]["lease"] = json!({"window_s": 60});
        d["global_rate_limit"]["extra_entries"] = json!(["user_id"]);
    });
    assert_eq!(e.path, "global_rate_limit.lease");
    // A min_block above the default largest block raises the largest block with it.
    let mut doc = contract_example();
    doc["global_rate_limit"]["lease"] = json!({"window_s": 60, "requests": {"min_block": 5000}});
    let lease = parse(&doc)
        .unwrap()
        .global_rate_limit
        .unwrap()
        .lease
        .unwrap();
    assert_eq!(
        lease.requests,
        lease::Blocks {
            min: 5000,
            max: 5000
        }
    );
}

#[test]
fn bypass_paths_are_exact_paths() {
    let e = refused(|d| d["bypass_paths"] = json!(["/healthz", "healthz"]));
    assert_eq!(e.path, "bypass_paths[1]");
}

#[test]
fn not_json_is_refused() {
    for document in [&b"{not json"[..], b"", b"[]"] {
        let Err(e) = Config::parse(document) else {
            panic!("accepted {document:?}");
        };
        assert_eq!(e.path, "configuration");
    }
}

#[test]
fn output_cap_is_opt_in_per_plan_with_a_minimum() {
    let config = parse(&contract_example()).unwrap();
    assert_eq!(
        config.tenants.bind("acme", 0).unwrap().limits.output_cap,
        None
    );

    let mut doc = contract_example();
    doc["plans"]["pro"]["output_cap"] = json!("clamp");
    let config = parse(&doc).unwrap();
    assert_eq!(
        config.tenants.bind("acme", 0).unwrap().limits.output_cap,
        Some(OutputCap {
            min_output_tokens: DEFAULT_MIN_OUTPUT_TOKENS
        })
    );
    // A tenant's own limits may set the minimum.
    doc["tenants"]["acme"]["limits"] = json!({"min_output_tokens": 64});
    let config = parse(&doc).unwrap();
    assert_eq!(
        config.tenants.bind("acme", 0).unwrap().limits.output_cap,
        Some(OutputCap {
            min_output_tokens: 64
        })
    );

    let e = refused(|d| d["plans"]["pro"]["output_cap"] = json!("trim"));
    assert_eq!(e.path, "plans.pro.output_cap");
    let e = refused(|d| {
        d["plans"]["pro"]["output_cap"] = json!("clamp");
        d["plans"]["pro"]["min_output_tokens"] = json!(0);
    });
    assert_eq!(
        e.to_string(),
        "plans.pro.min_output_tokens: must be at least 1"
    );
}

#[test]
fn audiences_are_required_unless_a_provider_says_any() {
    let e = refused(|d| {
        d["providers"]["corp-idp"]
            .as_object_mut()
            .unwrap()
            .remove("audiences");
    });
    assert_eq!(e.path, "providers.corp-idp.audiences");
    assert!(e.message.starts_with("required"), "{e}");
    let e = refused(|d| d["providers"]["corp-idp"]["audiences"] = json!([]));
    assert_eq!(e.path, "providers.corp-idp.audiences");
    assert!(e.message.contains("at least one"), "{e}");
    let e = refused(|d| d["providers"]["corp-idp"]["audiences"] = json!("all"));
    assert_eq!(
        e.to_string(),
        "providers.corp-idp.audiences: must be a list of audiences or \"any\", not \"all\""
    );
    let e = refused(|d| d["providers"]["corp-idp"]["audiences"] = json!([""]));
    assert_eq!(e.path, "providers.corp-idp.audiences");
    let e = refused(|d| d["providers"]["corp-idp"]["audiences"] = json!(7));
    assert_eq!(e.path, "providers.corp-idp.audiences");

    let config = parse(&contract_example()).unwrap();
    assert_eq!(
        config.providers[0].audiences,
        Audiences::OneOf(vec!["genai-gateway".into()])
    );
    assert_eq!(config.providers[1].audiences, Audiences::Any);
}

#[test]
fn require_kid_is_an_optional_bool_per_provider() {
    let mut doc = contract_example();
    doc["providers"]["globex-idp"]["require_kid"] = json!(true);
    let config = parse(&doc).unwrap();
    assert!(!config.providers[0].require_kid);
    assert!(config.providers[1].require_kid);
    let e = refused(|d| d["providers"]["corp-idp"]["require_kid"] = json!("yes"));
    assert_eq!(e.path, "providers.corp-idp.require_kid");
}

// === Default tenants and namespaces ===

#[test]
fn two_listed_tenants_cannot_share_a_namespace() {
    let e = refused(|d| d["tenants"]["globex"]["namespace"] = json!("acme"));
    assert_eq!(
        e.to_string(),
        "tenants.globex.namespace: namespace \"acme\" is also tenant acme's"
    );
    let e = refused(|d| {
        d["tenants"]["acme"]["namespace"] = json!("shared");
        d["tenants"]["globex"]["namespace"] = json!("shared");
    });
    assert_eq!(e.path, "tenants.globex.namespace");
}

#[test]
fn a_listed_namespace_cannot_be_another_tenants_id() {
    // acme in namespace "globex" would sit where globex's `{tenant}` templates place it.
    let e = refused(|d| {
        d["tenants"]["acme"]["namespace"] = json!("globex");
        d["tenants"]["globex"]["namespace"] = json!("globex-ns");
    });
    assert_eq!(
        e.to_string(),
        "tenants.acme.namespace: namespace \"globex\" is the id of another tenant"
    );
}

#[test]
fn default_tenants_get_a_provider_scoped_namespace_and_a_cap() {
    let config = parse(&contract_example()).unwrap();
    let d = config.tenants.default_tenant().unwrap();
    assert_eq!(d.max_tenants, 1000);
    assert_eq!(d.providers, vec![(0, "corp-idp".to_string())]);
    let hooli = config.tenants.bind("hooli", 0).unwrap();
    assert_eq!(hooli.namespace, "corp-idp.hooli");
    assert_eq!(hooli.quota_id(), "corp-idp/hooli");

    let mut doc = contract_example();
    doc["default_tenant"]["namespace"] = json!("self-{tenant}.at.{provider}");
    doc["default_tenant"]["max_tenants"] = json!(100_000);
    let config = parse(&doc).unwrap();
    assert_eq!(
        config.tenants.default_tenant().unwrap().max_tenants,
        100_000
    );
    let hooli = config.tenants.bind("hooli", 0).unwrap();
    assert_eq!(hooli.namespace, "self-hooli.at.corp-idp");
}

#[test]
fn default_tenant_max_tenants_is_bounded() {
    for bad in [json!(0), json!(100_001), json!(-1)] {
        let e = refused(|d| d["default_tenant"]["max_tenants"] = bad);
        assert_eq!(e.path, "default_tenant.max_tenants");
    }
}

#[test]
fn default_tenant_namespace_template_is_checked() {
    for (template, needle) in [
        ("{tenant}", "must contain {provider} and {tenant}"),
        ("{provider}", "must contain {provider} and {tenant}"),
        ("{provider}{tenant}", "needs a separator"),
        ("{provider}/{tenant}", "at most 64 characters"),
        ("{provider}.{tenant}.{tenant}", "once each"),
        ("{provider}.{tenant}.{namespace}", "once each"),
    ] {
        let e = refused(|d| d["default_tenant"]["namespace"] = json!(template));
        assert_eq!(e.path, "default_tenant.namespace", "{template}");
        assert!(e.message.contains(needle), "{template}: {e}");
    }
}

#[test]
fn a_listed_namespace_in_the_default_tenants_shape_is_refused() {
    // acme-ns's namespace is what tenant "acme" of corp-idp would get as a default tenant.
    let e = refused(|d| d["tenants"]["acme"]["namespace"] = json!("corp-idp.acme"));
    assert_eq!(e.path, "tenants.acme.namespace");
    assert!(e.message.contains("provider corp-idp"), "{e}");
    // The same namespace is fine when corp-idp admits no default tenants.
    let mut doc = contract_example();
    doc["tenants"]["acme"]["namespace"] = json!("corp-idp.acme");
    doc["default_tenant"]["providers"] = json!(["globex-idp"]);
    assert!(parse(&doc).is_ok());
}

#[test]
fn default_provider_names_must_fit_in_namespaces_and_not_overlap() {
    let mut doc = contract_example();
    let corp = doc["providers"]["corp-idp"].clone();
    doc["providers"]["corp idp"] = corp.clone();
    doc["default_tenant"]["providers"] = json!(["corp idp"]);
    let e = parse(&doc).err().unwrap();
    assert_eq!(e.path, "default_tenant.providers[0]");

    // "a" then ".b.c" and "a.b" then ".c" would both be "a.b.c".
    let mut doc = contract_example();
    doc["providers"]["a"] = corp.clone();
    doc["providers"]["a.b"] = corp.clone();
    doc["default_tenant"]["providers"] = json!(["a", "a.b"]);
    let e = parse(&doc).err().unwrap();
    assert_eq!(
        e.to_string(),
        "default_tenant.namespace: providers a and a.b would share namespaces under this template"
    );
    // With the tenant first, suffixes matter: "x.a" and "x.b.a" overlap, "a" and "a.b" not.
    doc["default_tenant"]["namespace"] = json!("{tenant}_{provider}");
    assert!(parse(&doc).is_ok());
    doc["providers"]["b.a"] = corp;
    doc["default_tenant"]["providers"] = json!(["a", "b.a"]);
    doc["default_tenant"]["namespace"] = json!("{tenant}.{provider}");
    let e = parse(&doc).err().unwrap();
    assert_eq!(e.path, "default_tenant.namespace");
}

#[test]
fn tenant_placeholders_are_refused_when_default_providers_may_share_ids() {
    let mut doc = contract_example();
    doc["default_tenant"]["providers"] = json!(["corp-idp", "globex-idp"]);
    // The example routes by {namespace}: fine.
    let config = parse(&doc).unwrap();
    let corp = config.tenants.bind("hooli", 0).unwrap();
    let globex = config.tenants.bind("hooli", 1).unwrap();
    assert_ne!(corp.namespace, globex.namespace);
    assert_ne!(corp.quota_id(), globex.quota_id());

    doc["routing"]["authority"] = json!("{tenant}.models.internal");
    let e = parse(&doc).err().unwrap();
    assert_eq!(e.path, "routing.authority");
    doc["routing"]["authority"] = json!("{namespace}.models.internal");
    // A shared store's tenant value defaults to {tenant}.
    doc["vector_stores"] = json!([
        {"path_prefix": "/q", "kind": "qdrant"},
        {"path_prefix": "/s", "kind": "metadata_filter", "dialect": "qdrant",
         "collections": ["docs"]}
    ]);
    let e = parse(&doc).err().unwrap();
    assert_eq!(e.path, "vector_stores[1].value");
    doc["vector_stores"][1]["value"] = json!("{namespace}");
    assert!(parse(&doc).is_ok());
    // One default provider: {tenant} is unique (listed ids are never default ids).
    doc["default_tenant"]["providers"] = json!(["corp-idp"]);
    doc["routing"]["path_prefix"] = json!("/tenants/{tenant}");
    assert!(parse(&doc).is_ok());
}

#[test]
fn an_unknown_field_with_an_empty_name_is_refused_with_a_path() {
    // Found by the `config` fuzz target: the error named no field path at all.
    for doc in [&b"{\"\""[..], b"{\"\": 1}", b"{\"providers\": {}, \"\": 1}"] {
        let e = Config::parse(doc).err().unwrap();
        assert_eq!(e.path, "configuration", "{e}");
        assert!(e.message.contains("unknown field ``"), "{e}");
    }
}

#[test]
fn the_log_line_names_the_field_and_the_problem() {
    let e = refused(|doc| doc["tenants"]["acme"]["plan"] = json!("gold"));
    assert_eq!(
        e.log_line(),
        "tenant-guard: invalid configuration: tenants.acme.plan: unknown plan \"gold\""
    );
}

#[test]
fn the_audit_key_is_named_by_its_environment_variable_only() {
    let config = parse(&json!({
      "providers": {"p": {"issuer": "i", "audiences": "any",
                          "jwks": {"keys": [{"kty": "oct", "k": OCT_K}]}}},
      "audit": {"key_env": "TG_AUDIT_KEY"}
    }))
    .unwrap();
    let key = config.audit_key.unwrap();
    assert_eq!((key.env(), key.value()), ("TG_AUDIT_KEY", None));
    let e = refused(|d| d["audit"] = json!({"key_env": "tg-audit"}));
    assert_eq!(e.path, "audit.key_env");
    let e = refused(|d| d["audit"] = json!({"key": "0123456789abcdef0123456789abcdef"}));
    assert_eq!(e.path, "audit.key");
    assert!(e.message.contains("unknown field `key`"), "{e}");
    assert!(parse(&contract_example()).unwrap().audit_key.is_none());
}

#[test]
fn records_log_line_is_a_bool_on_by_default() {
    assert!(parse(&contract_example()).unwrap().records.log_line);
    for on in [true, false] {
        let mut doc = contract_example();
        doc["records"] = json!({"log_line": on});
        let records = parse(&doc).unwrap().records;
        assert_eq!(
            (records.log_line, records.filter_state),
            (on, StateFields::ALL)
        );
    }
    let mut doc = contract_example();
    doc["records"] = json!({});
    assert!(parse(&doc).unwrap().records.log_line);
}

#[test]
fn records_options_are_refused_with_their_path() {
    let e = refused(|d| d["records"] = json!({"log_line": "no"}));
    assert_eq!(e.path, "records.log_line");
    let e = refused(|d| d["records"] = json!({"log_line": null}));
    assert_eq!(e.path, "records.log_line");
    let e = refused(|d| d["records"] = json!({"log_lines": false}));
    assert_eq!(e.path, "records.log_lines");
    assert!(e.message.starts_with("unknown field `log_lines`"), "{e}");
    let e = refused(|d| d["records"] = json!(false));
    assert_eq!(e.path, "records");
    let e = refused(|d| d["records"] = json!({"filter_state": ["tenant", "plan"]}));
    assert_eq!(e.path, "records.filter_state[1]");
    assert!(
        e.message
            .starts_with("unknown variant `plan`, expected one of `tenant`"),
        "{e}"
    );
    let e = refused(|d| d["records"] = json!({"filter_state": "tenant"}));
    assert_eq!(e.path, "records.filter_state");
}

#[test]
fn records_filter_state_lists_the_fields_set() {
    let mut doc = contract_example();
    doc["records"] = json!({"filter_state": []});
    assert!(parse(&doc).unwrap().records.filter_state.is_empty());
    doc["records"] = json!({"filter_state": ["decision", "tenant", "input_tokens"]});
    let fields = parse(&doc).unwrap().records.filter_state;
    assert!(!fields.is_empty() && fields != StateFields::ALL);
}
