use super::*;
use crate::policy::config::Config;
use serde_json::{json, Value};
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const ACME_KEY: &str = "sk-acme-0123456789abcdef";
const GLOBEX_KEY: &str = "sk-globex-0123456789abcdef";
const PLATFORM_KEY: &str = "sk-platform-0123456789abcdef";

fn jwks() -> Value {
    json!({"keys": [{"kty": "oct", "kid": "k",
                     "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]})
}

/// A policy with two upstreams: acme has keys for both, globex for openai only, the platform a
/// default for anthropic.
fn document() -> Value {
    json!({
      "providers": {"corp-idp": {"issuer": "https://corp", "audiences": "any",
                                 "jwks": jwks()}},
      "identity": {"tenant_header": "x-tenant-id", "forward_claims": {"sub": "x-user-id"}},
      "upstreams": {
        "openai": {"path_prefixes": ["/v1/chat", "/v1/responses"]},
        "anthropic": {"path_prefixes": ["/v1/messages"]},
        "azure": {"authorities": ["azure.example.com"]}
      },
      "default_credentials": {
        "anthropic": {"header": "x-api-key", "env": "PLATFORM_ANTHROPIC_KEY"}
      },
      "tenants": {
        "acme": {"providers": ["corp-idp"],
                 "credentials": {
                   "openai": {"header": "authorization", "prefix": "Bearer ",
                              "env": "ACME_OPENAI_KEY"},
                   "anthropic": {"header": "x-api-key", "env": "ACME_ANTHROPIC_KEY"}},
                 "upstream_headers": {"openai-project": "proj_acme"}},
        "globex": {"providers": ["corp-idp"],
                   "credentials": {
                     "openai": {"header": "Authorization", "prefix": "Bearer ",
                                "env": "GLOBEX_OPENAI_KEY"}}}
      }
    })
}

fn parse(doc: &Value) -> Result<Config, ConfigError> {
    Config::parse(doc.to_string().as_bytes())
}

fn environment(name: &str) -> Option<String> {
    match name {
        "ACME_OPENAI_KEY" => Some(ACME_KEY.into()),
        "ACME_ANTHROPIC_KEY" => Some("sk-ant-acme-0123456789".into()),
        "GLOBEX_OPENAI_KEY" => Some(GLOBEX_KEY.into()),
        "PLATFORM_ANTHROPIC_KEY" => Some(PLATFORM_KEY.into()),
        _ => None,
    }
}

fn loaded(doc: &Value) -> Config {
    let mut config = parse(doc).unwrap();
    config.upstreams.load(&mut environment).unwrap();
    config
}

fn error(doc: &Value) -> ConfigError {
    match parse(doc) {
        Ok(_) => panic!("accepted: {doc}"),
        Err(e) => e,
    }
}

fn load_error(doc: &Value, env: &mut dyn FnMut(&str) -> Option<String>) -> ConfigError {
    let mut config = parse(doc).unwrap();
    config.upstreams.load(env).unwrap_err()
}

fn index(config: &Config, name: &str) -> usize {
    (0..3).find(|i| config.upstreams.name(*i) == name).unwrap()
}

#[test]
fn each_tenant_gets_its_own_key_and_the_platforms_only_where_it_has_none() {
    let config = loaded(&document());
    let up = &config.upstreams;
    let (openai, anthropic) = (index(&config, "openai"), index(&config, "anthropic"));
    let acme = up.plan(openai, Some("acme")).unwrap();
    let (header, value) = acme.set.unwrap();
    assert_eq!(header, "authorization");
    assert_eq!(value.expose(), format!("Bearer {ACME_KEY}"));
    let digest = Secret::new(ACME_KEY).fingerprint();
    assert_eq!(
        acme.fingerprint,
        Some(format!("acme/openai#{digest}").as_str())
    );
    let globex = up.plan(openai, Some("globex")).unwrap();
    assert_eq!(
        globex.set.unwrap().1.expose(),
        format!("Bearer {GLOBEX_KEY}")
    );
    assert!(globex.fingerprint.unwrap().starts_with("globex/openai#"));
    // globex has no anthropic key of its own: the platform's, never acme's.
    let globex = up.plan(anthropic, Some("globex")).unwrap();
    assert_eq!(globex.set.unwrap().1.expose(), PLATFORM_KEY);
    assert!(globex
        .fingerprint
        .unwrap()
        .starts_with("(default)/anthropic#"));
    let acme = up.plan(anthropic, Some("acme")).unwrap();
    assert_eq!(
        acme.set.unwrap(),
        ("x-api-key", &Secret::new("sk-ant-acme-0123456789"))
    );
    // A tenant admitted through default_tenant has the platform's credentials only.
    assert!(up
        .plan(anthropic, None)
        .unwrap()
        .fingerprint
        .unwrap()
        .starts_with("(default)/"));
}

#[test]
fn a_tenant_without_a_credential_is_refused_where_one_is_required() {
    let config = loaded(&document());
    let up = &config.upstreams;
    let openai = index(&config, "openai");
    let refusal = up.plan(openai, Some("initech")).unwrap_err();
    assert!(
        refusal.contains("no credential for upstream openai"),
        "{refusal}"
    );
    assert!(up.plan(openai, None).is_err());
    // No credential for azure anywhere: its requests lose the client's keys and get none.
    let azure = up.plan(index(&config, "azure"), Some("acme")).unwrap();
    assert_eq!((azure.set, azure.fingerprint), (None, None));
    assert!(azure.remove.contains(&"authorization".to_string()));
}

#[test]
fn the_clients_credential_headers_go_whatever_the_tenant() {
    let config = loaded(&document());
    let up = &config.upstreams;
    for name in ["openai", "anthropic"] {
        let plan = up.plan(index(&config, name), Some("acme")).unwrap();
        for header in CREDENTIAL_HEADERS {
            assert!(plan.remove.iter().any(|h| h == header), "{name}: {header}");
        }
    }
    // A credential header of the policy's own is stripped too.
    let doc = json!({
      "providers": {"p": {"issuer": "i", "audiences": "any", "jwks": jwks()}},
      "upstreams": {"internal": {"path_prefixes": ["/"]}},
      "tenants": {"acme": {"providers": ["p"], "credentials": {
          "internal": {"header": "x-internal-token", "env": "ACME_INTERNAL"}}}}
    });
    let config = parse(&doc).unwrap();
    let plan = config.upstreams.plan(0, Some("globex"));
    assert!(plan.is_err());
    let mut config = config;
    config
        .upstreams
        .load(&mut |_| Some("t-0123".into()))
        .unwrap();
    let plan = config.upstreams.plan(0, Some("acme")).unwrap();
    assert!(plan.remove.iter().any(|h| h == "x-internal-token"));
}

#[test]
fn requests_are_told_by_path_prefix_at_segment_boundaries_and_by_authority() {
    let config = loaded(&document());
    let up = &config.upstreams;
    let route = |path: &str, authority: Option<&str>| up.route(path, authority).map(|i| up.name(i));
    assert_eq!(route("/v1/chat/completions", None), Some("openai"));
    assert_eq!(route("/v1/chat", None), Some("openai"));
    assert_eq!(route("/V1/Chat/completions", None), Some("openai"));
    assert_eq!(route("/v1/chatty", None), None);
    assert_eq!(
        route("/v1/messages", Some("gw.example.com")),
        Some("anthropic")
    );
    assert_eq!(route("/v1/models", None), None);
    // An authority match outranks a path prefix.
    assert_eq!(
        route("/v1/chat/completions", Some("azure.example.com")),
        Some("azure")
    );
    assert_eq!(
        route("/anything", Some("AZURE.example.com:443")),
        Some("azure")
    );
    assert_eq!(route("/anything", Some("azure.example.com.evil")), None);
    assert_eq!(route("/anything", Some("evil:azure.example.com")), None);
    assert!(up.by_authority());
}

#[test]
fn the_longest_path_prefix_wins() {
    let doc = json!({
      "providers": {"p": {"issuer": "i", "audiences": "any", "jwks": jwks()}},
      "upstreams": {"all": {"path_prefixes": ["/"]},
                    "openai": {"path_prefixes": ["/v1/"]},
                    "batch": {"path_prefixes": ["/v1/batches"]}},
      "tenants": {}
    });
    let config = parse(&doc).unwrap();
    let up = &config.upstreams;
    let route = |path: &str| up.route(path, None).map(|i| up.name(i));
    assert_eq!(route("/v1/batches/b1"), Some("batch"));
    assert_eq!(route("/v1/files"), Some("openai"));
    assert_eq!(route("/v2"), Some("all"));
    assert_eq!(route("/"), Some("all"));
    assert!(!up.by_authority());
}

#[test]
fn upstream_headers_replace_the_clients_for_every_tenant() {
    let config = loaded(&document());
    let (names, acme) = config.upstreams.tenant_headers(Some("acme"));
    assert_eq!(names, ["openai-project".to_string()]);
    assert_eq!(
        acme,
        [("openai-project".to_string(), "proj_acme".to_string())]
    );
    let (names, globex) = config.upstreams.tenant_headers(Some("globex"));
    assert_eq!((names.len(), globex.len()), (1, 0));
}

#[test]
fn a_missing_or_unusable_variable_refuses_the_configuration_naming_it() {
    let e = load_error(&document(), &mut |name| {
        (name != "GLOBEX_OPENAI_KEY")
            .then(|| environment(name))
            .flatten()
    });
    assert_eq!(e.path, "tenants.globex.credentials.openai.env");
    assert!(e.message.contains("GLOBEX_OPENAI_KEY is not set"), "{e}");
    assert!(e.message.contains("host_env_keys"), "{e}");
    let e = load_error(&document(), &mut |name| {
        environment(name).map(|v| {
            if name == "ACME_OPENAI_KEY" {
                format!("{v}\n")
            } else {
                v
            }
        })
    });
    assert_eq!(e.path, "tenants.acme.credentials.openai.env");
    assert!(e.message.contains("line break"), "{e}");
    assert!(!e.to_string().contains(ACME_KEY));
    let e = load_error(&document(), &mut |name| {
        environment(name).map(|v| {
            if name == "PLATFORM_ANTHROPIC_KEY" {
                String::new()
            } else {
                v
            }
        })
    });
    assert_eq!(
        e.to_string(),
        "default_credentials.anthropic.env: environment variable PLATFORM_ANTHROPIC_KEY is empty"
    );
}

#[test]
fn one_key_never_serves_two_tenants() {
    // The same value under two variables.
    let e = load_error(&document(), &mut |name| {
        Some(if name == "GLOBEX_OPENAI_KEY" {
            ACME_KEY.into()
        } else {
            environment(name)?
        })
    });
    assert!(
        e.message
            .contains("same value as tenants.acme.credentials.openai"),
        "{e}"
    );
    assert!(!e.to_string().contains(ACME_KEY));
    // The same variable twice.
    let mut doc = document();
    doc["tenants"]["globex"]["credentials"]["openai"]["env"] = json!("ACME_OPENAI_KEY");
    let e = error(&doc);
    assert_eq!(e.path, "tenants.globex.credentials.openai.env");
    assert!(e.message.contains("also holds acme's credential"), "{e}");
    let mut doc = document();
    doc["tenants"]["globex"]["credentials"]["openai"]["env"] = json!("PLATFORM_ANTHROPIC_KEY");
    assert!(error(&doc).message.contains("the platform's credential"));
    // One tenant may use one key for two upstreams.
    let mut doc = document();
    doc["tenants"]["acme"]["credentials"]["anthropic"]["env"] = json!("ACME_OPENAI_KEY");
    assert!(parse(&doc)
        .unwrap()
        .upstreams
        .load(&mut environment)
        .is_ok());
}

#[test]
fn the_configuration_is_checked_field_by_field() {
    type Case = (fn(&mut Value), &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (
            |d| d["tenants"]["acme"]["credentials"]["gemini"] = json!({"header": "x", "env": "E"}),
            "tenants.acme.credentials.gemini",
            "unknown upstream \"gemini\"",
        ),
        (
            |d| d["default_credentials"]["anthropic"]["env"] = json!("1BAD"),
            "default_credentials.anthropic.env",
            "environment variable name",
        ),
        (
            |d| d["tenants"]["acme"]["credentials"]["openai"]["value"] = json!("sk-x"),
            "tenants.acme.credentials.openai.value",
            "unknown field `value`",
        ),
        (
            |d| d["tenants"]["acme"]["credentials"]["openai"]["header"] = json!("x-tenant-id"),
            "tenants.acme.credentials.openai.header",
            "already set by the filter",
        ),
        (
            |d| d["upstreams"]["empty"] = json!({}),
            "upstreams.empty",
            "needs path_prefixes, authorities, or both",
        ),
        (
            |d| d["upstreams"]["twin"] = json!({"path_prefixes": ["/V1/chat/"]}),
            "upstreams.twin",
            "same requests as upstreams.openai",
        ),
        (
            |d| d["upstreams"]["dots"] = json!({"path_prefixes": ["/v1/../x"]}),
            "upstreams.dots.path_prefixes[0]",
            "non-empty segments",
        ),
        (
            |d| d["upstreams"]["host"] = json!({"authorities": ["a b"]}),
            "upstreams.host.authorities[0]",
            "host name",
        ),
        (
            |d| d["upstreams"]["a/b"] = json!({"authorities": ["x"]}),
            "upstreams.a/b",
            "upstream name",
        ),
        (
            |d| d["tenants"]["acme"]["upstream_headers"]["authorization"] = json!("Bearer sk"),
            "tenants.acme.upstream_headers.authorization",
            "carries credentials",
        ),
        (
            |d| d["tenants"]["acme"]["upstream_headers"]["content-length"] = json!("1"),
            "tenants.acme.upstream_headers.content-length",
            "cannot be set here",
        ),
        (
            |d| d["tenants"]["acme"]["upstream_headers"]["x-user-id"] = json!("1"),
            "tenants.acme.upstream_headers.x-user-id",
            "cannot be set here",
        ),
        (
            |d| d["tenants"]["acme"]["upstream_headers"]["openai-project"] = json!("a\nb"),
            "tenants.acme.upstream_headers.openai-project",
            "printable ASCII",
        ),
    ];
    for (change, path, message) in cases {
        let mut doc = document();
        change(&mut doc);
        let e = error(&doc);
        assert_eq!(e.path, path, "{e}");
        assert!(e.message.contains(message), "{e}");
    }
    // Authorities of one upstream and prefixes of another never tie.
    let mut doc = document();
    doc["upstreams"]["azure-chat"] =
        json!({"authorities": ["azure.example.com"], "path_prefixes": ["/v1/chat"]});
    assert!(parse(&doc).is_ok());
}

#[test]
fn secrets_are_never_printed() {
    let config = loaded(&document());
    let printed = format!("{:?}", config.upstreams);
    for secret in [ACME_KEY, GLOBEX_KEY, PLATFORM_KEY, "sk-ant-acme"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert!(printed.contains("<redacted>"));
    let fingerprints = config.upstreams.fingerprints();
    assert_eq!(fingerprints.len(), 4);
    assert!(fingerprints
        .iter()
        .all(|f| f.len() == f.find('#').unwrap() + 9));
    assert_eq!(
        config.upstreams.variables(),
        vec![
            ("default_credentials.anthropic", "PLATFORM_ANTHROPIC_KEY"),
            ("tenants.acme.credentials.anthropic", "ACME_ANTHROPIC_KEY"),
            ("tenants.acme.credentials.openai", "ACME_OPENAI_KEY"),
            ("tenants.globex.credentials.openai", "GLOBEX_OPENAI_KEY"),
        ]
    );
}

#[test]
fn an_unloaded_credential_is_refused_not_skipped() {
    let config = parse(&document()).unwrap();
    let openai = index(&config, "openai");
    let refusal = config.upstreams.plan(openai, Some("acme")).unwrap_err();
    assert!(refusal.contains("not loaded"), "{refusal}");
}
