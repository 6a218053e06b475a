//! `tenant-guard api-key`: a fresh key every time, shown once, and an entry the filter's own
//! code accepts and matches to the key (and only to it).

use std::process::{Command, Output};

use serde_json::{json, Value};
use tenant_guard::policy::config::Config;

const BIN: &str = env!("CARGO_BIN_EXE_tenant-guard");

fn api_key(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("api-key")
        .args(args)
        .output()
        .unwrap()
}

fn minted(args: &[&str]) -> Value {
    let out = api_key(&[&["--json"], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A policy reading keys from `authorization: Bearer`, with `entry` under acme.
fn policy_with(entry: &Value) -> Config {
    let doc = json!({
        "providers": {},
        "identity": {"api_key_sources": [{"header": "authorization", "prefix": "Bearer "}]},
        "tenants": {"acme": {"api_keys": [entry]}}
    });
    Config::parse(doc.to_string().as_bytes()).unwrap()
}

#[test]
fn a_new_key_is_random_and_its_entry_holds_only_its_digest() {
    let one = minted(&["--tenant", "acme", "--user", "ci-bot"]);
    let two = minted(&["--tenant", "acme"]);
    let key = one["key"].as_str().unwrap();
    assert!(key.starts_with("tgk_") && key.len() == 68, "{key}");
    assert_ne!(key, two["key"].as_str().unwrap());
    let entry = &one["entry"];
    assert_eq!(one["tenant"], "acme");
    assert_eq!(entry["user"], "ci-bot");
    assert!(!entry.to_string().contains(&key[4..]), "{entry}");
    // The filter's own code takes the entry, finds the key by it, and nothing else.
    let config = policy_with(entry);
    let found = config.api_keys.check(key, 1_700_000_000).unwrap();
    assert_eq!((found.tenant.as_str(), found.user()), ("acme", "ci-bot"));
    assert_eq!(found.id, entry["id"].as_str().unwrap());
    assert!(config
        .api_keys
        .check(two["key"].as_str().unwrap(), 1_700_000_000)
        .is_err());
}

#[test]
fn the_plain_output_is_the_key_then_the_entry() {
    let out = api_key(&[
        "--tenant",
        "globex",
        "--id",
        "ci",
        "--expires",
        "2030-01-01T00:00:00Z",
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("tgk_"));
    let entry: Value = serde_json::from_str(lines[1].strip_prefix("- ").unwrap()).unwrap();
    assert_eq!(entry["id"], "ci");
    assert_eq!(entry["expires"], "2030-01-01T00:00:00Z");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("shown this once") && stderr.contains("tenants.globex.api_keys"));
    assert!(!stderr.contains(lines[0]));
}

#[test]
fn bad_arguments_exit_with_2() {
    for args in [
        &[][..],
        &["--tenant", "a/b"],
        &["--tenant", "acme", "--expires", "tomorrow"],
        &["--tenant", "acme", "--bogus"],
        &["--tenant"],
    ] {
        assert_eq!(api_key(args).status.code(), Some(2), "{args:?}");
    }
}
