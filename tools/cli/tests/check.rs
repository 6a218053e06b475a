//! `tenant-guard check` on the repository's examples and on policies written here: every
//! example is accepted, a refused policy prints the filter's own log line and exits 1, and
//! YAML reaches the filter as Envoy's loader hands it over.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_tenant-guard");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tenant-guard check ARGS`, from the repository root (bootstraps name paths from there).
fn check(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("check")
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct TempFile(PathBuf);

impl TempFile {
    fn new(extension: &str, content: &str) -> TempFile {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "tenant-guard-check-{}-{}.{extension}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, content).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const KEY: &str = r#"{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}"#;

fn policy_yaml(budget: &str) -> String {
    format!(
        "providers:\n  idp:\n    issuer: https://idp\n    audiences: [gw]\n    jwks: {{keys: [{KEY}]}}\n\
         tenants:\n  acme: {{providers: [idp], plan: pro}}\n\
         plans:\n  pro:\n    requests: [{{limit: 60, window_s: 60}}]\n    monthly_budget_usd: {budget}\n\
         isolation: {{key: 0123456789abcdef0123456789abcdef}}\n\
         default_tenant: {{providers: [idp], plan: pro, namespace: '{{provider}}-{{tenant}}'}}\n"
    )
}

#[test]
fn every_example_in_envoy_is_accepted() {
    let examples = [
        "envoy/demo.yaml",
        "envoy/global.yaml",
        "envoy/dynamic/bootstrap.yaml",
        "envoy/dynamic/listeners.yaml",
        "envoy/istio/wasmplugin.yaml",
        "envoy/envoy-gateway/extension-policy.yaml",
    ];
    for example in examples {
        let out = check(&[example]);
        assert!(out.status.success(), "{example}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).matches(": OK\n").count(), 1, "{example}");
    }
}

#[test]
fn a_refused_policy_prints_the_filters_log_line() {
    let bad = policy_yaml("5").replace("plan: pro}", "plan: gold}");
    let file = TempFile::new("yaml", &bad);
    let out = check(&[file.path()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.lines().any(|l| l
            == "tenant-guard: invalid configuration: tenants.acme.plan: unknown plan \"gold\""),
        "{stderr}"
    );
    assert!(text(&out.stdout).is_empty());
}

#[test]
fn decimals_reach_the_filter_as_envoy_hands_them_over() {
    // Envoy's YAML loader makes `2.5` the string "2.5"; the filter reads it back at a dollar
    // field and refuses it elsewhere, naming the path.
    let file = TempFile::new("yaml", &policy_yaml("2.5"));
    let out = check(&["--print-policy", file.path()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["plans"]["pro"]["monthly_budget_usd"], "2.5");
    let bad = policy_yaml("5").replace("limit: 60", "limit: 2.5");
    let file = TempFile::new("yaml", &bad);
    let out = check(&[file.path()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(
        "tenant-guard: invalid configuration: plans.pro.requests[0].limit: invalid type: \
         string \"2.5\", expected u64"
    ));
}

#[test]
fn a_json_policy_is_handed_over_byte_for_byte() {
    let json = r#"{"providers": {"idp": {"issuer": "https://idp", "audiences": "any",
        "jwks": {"keys": [KEY]}}}, "tennants": {}}"#
        .replace("KEY", KEY);
    let file = TempFile::new("json", &json);
    let out = check(&[file.path()]);
    assert_eq!(out.status.code(), Some(1));
    // The position is the document's own: the bytes reached the filter unchanged.
    assert!(text(&out.stderr).contains(
        "tenant-guard: invalid configuration: tennants: unknown field `tennants`, expected \
         one of"
    ));
    assert!(text(&out.stderr).contains("at line 2 column"));
}

#[test]
fn an_accepted_policy_is_summarised_and_its_risks_named() {
    let file = TempFile::new(
        "yaml",
        &policy_yaml("5").replace(", namespace: '{provider}-{tenant}'", ""),
    );
    let out = check(&[file.path()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("tenants:   1 listed (1 active, 0 suspended), default tenants from idp")
    );
    assert!(stdout.contains("plans:     1: pro (requests 60/60s, 5 USD a month)"));
    assert!(
        stdout.contains("warning: default_tenant.namespace is not set"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("warning:").count(), 1, "{stdout}");
}

#[test]
fn a_file_without_a_policy_is_an_error_of_its_own() {
    let file = TempFile::new("yaml", "static_resources: {listeners: []}\n");
    let out = check(&[file.path()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no tenant-guard plugin configuration found"));
    assert_eq!(check(&["/nonexistent.yaml"]).status.code(), Some(2));
}

/// A policy naming three variables: acme's OpenAI key, the platform's, and the audit key.
const SECRET_POLICY: &str = r#"{
  "providers": {"idp": {"issuer": "https://idp", "audiences": ["gw"],
                        "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}}},
  "tenants": {"acme": {"providers": ["idp"],
                       "credentials": {"openai": {"header": "authorization", "prefix": "Bearer ",
                                                  "env": "ACME_OPENAI_KEY"}}}},
  "upstreams": {"openai": {"path_prefixes": ["/v1/"]}},
  "default_credentials": {"openai": {"header": "authorization", "prefix": "Bearer ",
                                     "env": "PLATFORM_OPENAI_KEY"}},
  "audit": {"key_env": "TG_AUDIT_KEY"}
}"#;

/// An Envoy listener file running `SECRET_POLICY` with `environment_variables`.
fn listener_with(environment: &str) -> String {
    let policy = serde_json::to_string(SECRET_POLICY).unwrap();
    format!(
        r#"{{"resources": [{{"@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
          "filter_chains": [{{"filters": [{{"typed_config": {{"http_filters": [{{
            "typed_config": {{"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
              "config": {{"root_id": "tenant_guard",
                "vm_config": {{"code": {{"local": {{"filename": "tenant_guard.wasm"}}}},
                              "environment_variables": {environment}}},
                "configuration": {{"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": {policy}}}}}}}}}]}}}}]}}]}}]}}"#
    )
}

#[test]
fn a_variable_the_vm_will_lack_refuses_the_policy_as_the_filter_does() {
    let file = TempFile::new(
        "json",
        &listener_with(r#"{"host_env_keys": ["ACME_OPENAI_KEY", "TG_AUDIT_KEY"]}"#),
    );
    let out = check(&[file.path()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains(
            "tenant-guard: invalid configuration: default_credentials.openai.env: environment \
             variable PLATFORM_OPENAI_KEY is not set in the Wasm VM (list it in \
             vm_config.environment_variables.host_env_keys"
        ),
        "{}",
        text(&out.stderr)
    );
    let all = TempFile::new(
        "json",
        &listener_with(
            r#"{"host_env_keys": ["ACME_OPENAI_KEY", "PLATFORM_OPENAI_KEY", "TG_AUDIT_KEY"]}"#,
        ),
    );
    let out = check(&[all.path()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(
        "secrets:   from the VM's environment: PLATFORM_OPENAI_KEY, ACME_OPENAI_KEY, TG_AUDIT_KEY"
    ));
    assert!(!text(&out.stdout).contains("warning: environment variable"));
}

#[test]
fn a_secret_written_into_the_configuration_is_warned_about() {
    let file = TempFile::new(
        "json",
        &listener_with(
            r#"{"host_env_keys": ["ACME_OPENAI_KEY", "TG_AUDIT_KEY"],
                "key_values": {"PLATFORM_OPENAI_KEY": "sk-written-here"}}"#,
        ),
    );
    let out = check(&[file.path()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(
        "warning: environment variable PLATFORM_OPENAI_KEY is written with its value in the \
         configuration"
    ));
    assert!(!text(&out.stdout).contains("sk-written-here"));
}

#[test]
fn a_policy_file_says_which_variables_it_needs() {
    let file = TempFile::new("json", SECRET_POLICY);
    let out = check(&[file.path()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(
        "secrets:   needs environment variables PLATFORM_OPENAI_KEY, ACME_OPENAI_KEY, \
         TG_AUDIT_KEY in the Wasm VM"
    ));
}

#[test]
fn istio_and_envoy_gateway_environments_are_read() {
    let policy: serde_json::Value = serde_json::from_str(SECRET_POLICY).unwrap();
    let istio = format!(
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: tg}}\n\
         spec:\n  url: oci://example/tenant-guard:1\n  vmConfig:\n    env:\n\
         \x20   - {{name: ACME_OPENAI_KEY, valueFrom: HOST}}\n\
         \x20   - {{name: TG_AUDIT_KEY, valueFrom: HOST}}\n\
         \x20   - {{name: PLATFORM_OPENAI_KEY, value: sk-inline}}\n  pluginConfig: {policy}\n"
    );
    let file = TempFile::new("yaml", &istio);
    let out = check(&[file.path()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("warning: environment variable PLATFORM_OPENAI_KEY"));
    let gateway = format!(
        "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyExtensionPolicy\n\
         metadata: {{name: tg}}\nspec:\n  wasm:\n  - name: tenant-guard\n\
         \x20   env: {{hostKeys: [ACME_OPENAI_KEY, TG_AUDIT_KEY]}}\n    config: {policy}\n"
    );
    let file = TempFile::new("yaml", &gateway);
    let out = check(&[file.path()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("PLATFORM_OPENAI_KEY is not set in the Wasm VM"));
}

#[test]
fn users_limits_beside_leased_credit_are_named_per_process() {
    let policy = r#"{"providers": {"idp": {"issuer": "https://idp", "audiences": "any",
        "jwks": {"keys": [KEY]}}},
      "tenants": {"acme": {"plan": "team", "providers": ["idp"]}},
      "plans": {"team": {"requests": [{"limit": 100, "window_s": 60}],
                         "per_user": {"requests": [{"limit": 10, "window_s": 60}]}}},
      "global_rate_limit": {"cluster": "ratelimit", "domain": "tenant-guard",
                            "lease": {"window_s": 60}}}"#
        .replace("KEY", KEY);
    let file = TempFile::new("json", &policy);
    let out = check(&[file.path()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "warning: plans.team.per_user: with global_rate_limit.lease, users' limits are \
             not leased and hold per Envoy process only"
        ),
        "{stdout}"
    );
    // Asked for every request, the service holds them: no warning.
    let file = TempFile::new(
        "json",
        &policy.replace(r#""lease": {"window_s": 60}"#, r#""timeout_ms": 50"#),
    );
    let out = check(&[file.path()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("not leased"));
}
