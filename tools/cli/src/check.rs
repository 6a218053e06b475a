//! `tenant-guard check`: a policy compiled with the code the filter runs
//! (`tenant_guard::policy::config::Config::parse`), from a policy file, an Envoy bootstrap or
//! listener file, or a Kubernetes manifest. A refused policy prints exactly the line the
//! filter logs in Envoy; an accepted one a summary and warnings for risky choices.

pub mod report;
pub mod sources;
pub mod structpb;
pub mod yaml;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;
use tenant_guard::policy::config::Config;
use tenant_guard::policy::secret;

use sources::{Environment, Form, Policy};

pub const USAGE: &str = "\
tenant-guard check: compile policies with the filter's own code

USAGE:
  tenant-guard check [--print-policy] FILE...
      FILE is a policy (JSON, or YAML as written under a google.protobuf.Struct's value:),
      an Envoy bootstrap or listener file (YAML or JSON: every tenant-guard
      envoy.filters.http.wasm filter's configuration, a StringValue or a Struct, and the
      LDS file a bootstrap names), or Kubernetes manifests (an Istio WasmPlugin's
      pluginConfig, an Envoy Gateway EnvoyExtensionPolicy's wasm[].config).
      YAML is read as its consumer reads it: Envoy's loader (decimals such as 2.5 reach a
      Struct as strings, integers beyond 32 bits too) or Kubernetes' (YAML 1.2).
      A refused policy prints the line the filter logs in Envoy
      (tenant-guard: invalid configuration: <field path>: <problem>); an accepted one a
      summary and warnings for valid but risky choices.
      --print-policy  write each policy as the filter received it, as JSON, to standard
                      output (the summary then goes to standard error)
      Exit status 0: every policy accepted (warnings or not); 1: a policy refused;
      2: a file could not be read or holds no tenant-guard policy.
";

pub fn main(args: &[String]) -> ExitCode {
    let print_policy = args.iter().any(|a| a == "--print-policy");
    let files: Vec<&String> = args.iter().filter(|a| *a != "--print-policy").collect();
    if let Some(flag) = files.iter().find(|f| f.starts_with("--")) {
        eprintln!("tenant-guard check: unknown option {flag} (try --help)");
        return ExitCode::from(2);
    }
    if files.is_empty() {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    }
    let mut status = 0u8;
    for file in files {
        status = status.max(check_file(Path::new(file), print_policy));
    }
    ExitCode::from(status)
}

fn check_file(path: &Path, print_policy: bool) -> u8 {
    let policies = match sources::read(path) {
        Ok(p) if p.is_empty() => {
            eprintln!(
                "{}: no tenant-guard plugin configuration found",
                path.display()
            );
            return 2;
        }
        Ok(p) => p,
        Err(e) => {
            eprintln!("tenant-guard check: {e}");
            return 2;
        }
    };
    let mut status = 0;
    for policy in policies {
        status = status.max(check_policy(path, &policy, print_policy));
    }
    status
}

fn check_policy(path: &Path, policy: &Policy, print_policy: bool) -> u8 {
    let name = if policy.location.is_empty() {
        format!("{} ({})", path.display(), policy.form.name())
    } else {
        format!(
            "{}: {} ({})",
            path.display(),
            policy.location.trim(),
            policy.form.name()
        )
    };
    let config = match Config::parse(&policy.bytes) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{name}: INVALID");
            eprintln!("{}", e.log_line());
            return 1;
        }
    };
    let variables = config.secret_variables();
    // The filter refuses a policy whose variable the VM lacks: where the file says what the VM
    // gets, so does this.
    if let Some(env) = &policy.env {
        if let Some((path, variable)) = variables.iter().find(|(_, v)| !env.has(v)) {
            eprintln!("{name}: INVALID");
            eprintln!("{}", secret::not_set(path, variable).log_line());
            return 1;
        }
    }
    let document = match policy.form {
        Form::Struct => tenant_guard::policy::structpb::decode(&policy.bytes).ok(),
        Form::Json => serde_json::from_slice::<Value>(&policy.bytes).ok(),
    }
    .unwrap_or_default();
    let mut lines = vec![format!("{name}: OK")];
    lines.extend(
        report::summary(&document)
            .into_iter()
            .map(|l| format!("  {l}")),
    );
    lines.extend(secrets(&variables, policy.env.as_ref()));
    lines.extend(
        report::warnings(&document)
            .into_iter()
            .map(|w| format!("  warning: {w}")),
    );
    let text = lines.join("\n") + "\n";
    if print_policy {
        let json = serde_json::to_string_pretty(&document).unwrap_or_default();
        println!("{json}");
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    let _ = std::io::stdout().flush();
    0
}

/// The summary's line on the variables the policy names (names only), and a warning for each
/// one whose value is written in the configuration itself.
fn secrets(variables: &[(String, &str)], env: Option<&Environment>) -> Vec<String> {
    if variables.is_empty() {
        return Vec::new();
    }
    let mut names: Vec<&str> = Vec::new();
    for (_, name) in variables {
        if !names.contains(name) {
            names.push(name);
        }
    }
    let list = names.join(", ");
    let mut lines = vec![match env {
        Some(_) => format!("  secrets:   from the VM's environment: {list}"),
        None => format!(
            "  secrets:   needs environment variables {list} in the Wasm VM (Envoy: \
             vm_config.environment_variables.host_env_keys; Istio: vmConfig.env with valueFrom: \
             HOST)"
        ),
    }];
    for name in names {
        if env.is_some_and(|e| e.inline.iter().any(|n| n == name)) {
            lines.push(format!(
                "  warning: environment variable {name} is written with its value in the \
                 configuration (key_values, or Istio valueFrom: INLINE): the secret is in the \
                 manifest and in Envoy's /config_dump; hand it over from the proxy's \
                 environment (host_env_keys, valueFrom: HOST)"
            ));
        }
    }
    lines
}
