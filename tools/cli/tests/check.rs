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
