//! `tenant-guard api-key`: a new random API key for a tenant, shown once, and the entry of
//! `tenants.<id>.api_keys` that holds only its SHA-256.

use std::process::ExitCode;

use serde_json::{json, Value};
use tenant_guard::policy::{rfc3339, tenant::is_valid_tenant_id};

use crate::audit::record::to_hex;

pub const USAGE: &str = "\
tenant-guard api-key: a new API key for a tenant

USAGE:
  tenant-guard api-key --tenant T [--id ID] [--user U] [--expires TIME] [--json]
      Prints a new random key (tgk_ and 64 hex digits: 256 bits from the operating system)
      once, then the entry to paste under tenants.T.api_keys: the key's SHA-256, never the
      key. Keep the key only where the client is; the gateway cannot show it again.
      --id ID        the key's id in records (default: key- and 8 hex digits of its SHA-256)
      --user U       who the key stands for in records and per-user quotas (default: its id)
      --expires TIME RFC 3339 (2026-12-31T23:59:59Z): refused from then on
      --json         one JSON object: {\"tenant\", \"key\", \"entry\"}
      The client sends the key as `authorization: Bearer <key>` (OpenAI SDKs) or
      `x-api-key: <key>` (Anthropic SDKs): whatever identity.api_key_sources lists.
";

/// Runs `tenant-guard api-key ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tenant-guard api-key: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let mut tenant = None;
    let mut id = None;
    let mut user = None;
    let mut expires = None;
    let mut as_json = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--tenant" => tenant = Some(value()?),
            "--id" => id = Some(value()?),
            "--user" => user = Some(value()?),
            "--expires" => expires = Some(value()?),
            "--json" => as_json = true,
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    let tenant = tenant.ok_or("--tenant is required")?;
    if !is_valid_tenant_id(&tenant) {
        return Err(format!(
            "tenant id {tenant:?} is not 1-128 characters of A-Z a-z 0-9 . _ -"
        ));
    }
    if let Some(at) = &expires {
        rfc3339::parse(at).ok_or(format!(
            "--expires {at:?} is not an RFC 3339 date-time such as 2026-12-31T23:59:59Z"
        ))?;
    }
    let key = new_key()?;
    let sha256 = to_hex(&hmac_sha256::Hash::hash(key.as_bytes()));
    let id = id.unwrap_or_else(|| format!("key-{}", &sha256[..8]));
    let mut entry = json!({"id": id, "sha256": sha256});
    if let Some(user) = user {
        entry["user"] = Value::String(user);
    }
    if let Some(at) = expires {
        entry["expires"] = Value::String(at);
    }
    if as_json {
        println!("{}", json!({"tenant": tenant, "key": key, "entry": entry}));
        return Ok(());
    }
    eprintln!(
        "A new API key for tenant {tenant}, shown this once (the policy keeps only its SHA-256):"
    );
    println!("{key}");
    eprintln!("Add this entry to tenants.{tenant}.api_keys (YAML or JSON):");
    println!("- {entry}");
    Ok(())
}

/// `tgk_` and 64 hex digits of the operating system's randomness.
fn new_key() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(format!("tgk_{}", to_hex(&bytes)))
}
