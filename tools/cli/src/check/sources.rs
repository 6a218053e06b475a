//! Where policies are found, and the bytes the filter receives for each.
//!
//! - a policy file: JSON (its bytes, as the JSON-string form hands them over) or YAML (as
//!   Envoy hands over a policy written as YAML: a serialized `google.protobuf.Struct`);
//! - an Envoy bootstrap or listener (LDS) file, YAML or JSON: every tenant-guard
//!   `envoy.filters.http.wasm` filter in it, its `configuration` a `StringValue` (JSON text)
//!   or a `Struct`; a bootstrap's LDS file (`path_config_source`) is read too;
//! - Kubernetes manifests: an Istio `WasmPlugin` (`pluginConfig`) or an Envoy Gateway
//!   `EnvoyExtensionPolicy` (`wasm[].config`), which both hand the filter JSON text.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::structpb::encode_struct;
use super::yaml::{self, Node, Rules};

const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";
const STRUCT: &str = "type.googleapis.com/google.protobuf.Struct";
/// Keys only an Envoy bootstrap or discovery file has at its top level.
const ENVOY_KEYS: [&str; 7] = [
    "static_resources",
    "dynamic_resources",
    "resources",
    "admin",
    "node",
    "layered_runtime",
    "stats_config",
];

/// How the policy reaches the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// JSON text (`google.protobuf.StringValue`, Istio, Envoy Gateway, a JSON policy file).
    Json,
    /// A serialized `google.protobuf.Struct` (a policy written as YAML in Envoy's config).
    Struct,
}

impl Form {
    pub fn name(self) -> &'static str {
        match self {
            Form::Json => "JSON text",
            Form::Struct => "google.protobuf.Struct",
        }
    }
}

/// One plugin configuration, as the filter receives it.
pub struct Policy {
    /// Where it is in the file (empty for a file that is the policy).
    pub location: String,
    pub form: Form,
    pub bytes: Vec<u8>,
    /// The environment the filter's VM gets, where the file says (not for a policy file).
    pub env: Option<Environment>,
}

/// The variables a Wasm VM's environment holds, by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Environment {
    /// From the Envoy process (`host_env_keys`; Istio `valueFrom: HOST`; Envoy Gateway
    /// `env.hostKeys`).
    pub host: Vec<String>,
    /// Written with their value in the configuration (`key_values`; Istio `INLINE`).
    pub inline: Vec<String>,
}

impl Environment {
    pub fn has(&self, name: &str) -> bool {
        self.host.iter().chain(&self.inline).any(|n| n == name)
    }
}

/// Names of a JSON list of strings (absent: none).
fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect()
}

/// The policies in `path`.
pub fn read(path: &Path) -> Result<Vec<Policy>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let yaml = matches!(extension, "yaml" | "yml")
        || extension != "json" && !text.trim_start().starts_with(['{', '[']) && !text.is_empty();
    if !yaml {
        return Ok(match serde_json::from_str::<Value>(&text) {
            Ok(value) if is_envoy(&value) => envoy_file(path, &value)?,
            // Anything else is handed to the filter as it is, malformed or not.
            _ => vec![Policy {
                location: String::new(),
                form: Form::Json,
                bytes: text.into_bytes(),
                env: None,
            }],
        });
    }
    let docs = yaml::documents(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if docs
        .iter()
        .any(|d| d.get("apiVersion").is_some() && d.get("kind").is_some())
    {
        return Ok(docs.iter().flat_map(kubernetes).collect());
    }
    let mut out = Vec::new();
    for doc in &docs {
        let value = doc.to_json(Rules::Envoy);
        if is_envoy(&value) {
            out.extend(envoy_file(path, &value)?);
        } else {
            out.push(Policy {
                location: String::new(),
                form: Form::Struct,
                bytes: struct_bytes(&value),
                env: None,
            });
        }
    }
    Ok(out)
}

fn is_envoy(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|map| ENVOY_KEYS.iter().any(|k| map.contains_key(*k)))
}

fn struct_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::Object(map) => encode_struct(map),
        // Not a map: the bytes Envoy would hand over cannot be a Struct; let the filter say so.
        other => other.to_string().into_bytes(),
    }
}

/// Every tenant-guard Wasm filter of a bootstrap or listener file, and of the LDS file a
/// bootstrap names.
fn envoy_file(path: &Path, value: &Value) -> Result<Vec<Policy>, String> {
    let mut out = Vec::new();
    walk(value, &mut String::new(), &mut out)?;
    let lds = &value["dynamic_resources"]["lds_config"];
    let lds_path = lds["path_config_source"]["path"]
        .as_str()
        .or_else(|| lds["path"].as_str());
    if let Some(lds_path) = lds_path {
        let file = resolve(path, lds_path);
        for mut policy in read(&file)? {
            policy.location = format!("{} {}", file.display(), policy.location);
            out.push(policy);
        }
    }
    Ok(out)
}

/// A path in a bootstrap is relative to Envoy's working directory: the current one, else the
/// bootstrap's own directory.
fn resolve(bootstrap: &Path, name: &str) -> PathBuf {
    let as_given = PathBuf::from(name);
    if as_given.is_absolute() || as_given.exists() {
        return as_given;
    }
    bootstrap
        .parent()
        .map(|dir| dir.join(name))
        .unwrap_or(as_given)
}

fn walk(value: &Value, at: &mut String, out: &mut Vec<Policy>) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            if map.get("@type").and_then(Value::as_str) == Some(WASM_FILTER) {
                let plugin = &value["config"];
                if is_tenant_guard(&[&plugin["root_id"], &plugin["vm_config"]["code"]]) {
                    let mut policy = wasm_configuration(at, &plugin["configuration"])?;
                    let vars = &plugin["vm_config"]["environment_variables"];
                    policy.env = Some(Environment {
                        host: names(&vars["host_env_keys"]),
                        inline: vars["key_values"]
                            .as_object()
                            .map(|m| m.keys().cloned().collect())
                            .unwrap_or_default(),
                    });
                    out.push(policy);
                }
                return Ok(());
            }
            for (key, child) in map {
                let len = at.len();
                if !at.is_empty() {
                    at.push('.');
                }
                at.push_str(key);
                walk(child, at, out)?;
                at.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                walk(child, at, out)?;
                at.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// A plugin is tenant-guard's when its root id or its module names it.
fn is_tenant_guard(names: &[&Value]) -> bool {
    names.iter().any(|v| {
        let text = v.to_string();
        text.contains("tenant_guard") || text.contains("tenant-guard")
    })
}

fn wasm_configuration(at: &str, configuration: &Value) -> Result<Policy, String> {
    let location = at.to_string();
    let kind = configuration["@type"].as_str();
    match kind {
        // No configuration: the filter gets no bytes.
        None if configuration.is_null() => Ok(Policy {
            location,
            form: Form::Json,
            bytes: Vec::new(),
            env: None,
        }),
        Some(STRING_VALUE) => Ok(Policy {
            location,
            form: Form::Json,
            bytes: configuration["value"]
                .as_str()
                .unwrap_or_default()
                .as_bytes()
                .to_vec(),
            env: None,
        }),
        Some(STRUCT) => Ok(Policy {
            location,
            form: Form::Struct,
            bytes: match &configuration["value"] {
                Value::Null => Vec::new(),
                value => struct_bytes(value),
            },
            env: None,
        }),
        other => Err(format!(
            "{at}: configuration of type {}: tenant-guard reads a google.protobuf.StringValue \
             or a google.protobuf.Struct",
            other.unwrap_or("(none)")
        )),
    }
}

/// The policies of an Istio `WasmPlugin` or an Envoy Gateway `EnvoyExtensionPolicy`, as the
/// JSON text each hands the filter.
fn kubernetes(doc: &Node) -> Vec<Policy> {
    let value = doc.to_json(Rules::Kubernetes);
    let name = format!(
        "{} {}/{}",
        value["kind"].as_str().unwrap_or_default(),
        value["metadata"]["namespace"].as_str().unwrap_or("default"),
        value["metadata"]["name"].as_str().unwrap_or_default()
    );
    let spec = &value["spec"];
    let json = |location: String, config: &Value, env: Environment| Policy {
        location,
        form: Form::Json,
        bytes: if config.is_null() {
            Vec::new()
        } else {
            config.to_string().into_bytes()
        },
        env: Some(env),
    };
    match value["kind"].as_str() {
        Some("WasmPlugin") if is_tenant_guard(&[&spec["pluginName"], &spec["url"]]) => {
            // vmConfig.env: valueFrom HOST, or INLINE (the default) with its value.
            let mut env = Environment::default();
            for var in spec["vmConfig"]["env"].as_array().into_iter().flatten() {
                let Some(name) = var["name"].as_str() else {
                    continue;
                };
                match var["valueFrom"].as_str() {
                    Some("HOST") => env.host.push(name.to_string()),
                    _ => env.inline.push(name.to_string()),
                }
            }
            vec![json(
                format!("{name} pluginConfig"),
                &spec["pluginConfig"],
                env,
            )]
        }
        Some("EnvoyExtensionPolicy") => spec["wasm"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .filter(|(_, w)| is_tenant_guard(&[&w["rootID"], &w["name"], &w["code"]]))
            .map(|(i, w)| {
                let env = Environment {
                    host: names(&w["env"]["hostKeys"]),
                    inline: Vec::new(),
                };
                json(format!("{name} wasm[{i}].config"), &w["config"], env)
            })
            .collect(),
        _ => Vec::new(),
    }
}
