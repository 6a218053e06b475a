//! What `check` says about a policy the filter accepted: a short summary, and warnings for
//! choices that are valid but risky. Read from the document as the filter received it.

use serde_json::{Map, Value};

/// The summary lines of an accepted policy.
pub fn summary(doc: &Value) -> Vec<String> {
    let empty = Map::new();
    let object = |key: &str| doc[key].as_object().unwrap_or(&empty);

    let providers: Vec<String> = object("providers")
        .iter()
        .map(|(name, p)| {
            let inline = p["jwks"]["keys"].as_array().map_or(0, Vec::len);
            let mut keys = Vec::new();
            if inline > 0 {
                keys.push(format!("{inline} inline key{}", plural(inline)));
            }
            if p["remote_jwks"].is_object() {
                keys.push("remote JWKS".to_string());
            }
            format!("{name} ({})", keys.join(" + "))
        })
        .collect();

    let tenants = object("tenants");
    let suspended = tenants
        .values()
        .filter(|t| t["status"].as_str() == Some("suspended"))
        .count();
    let default = match doc["default_tenant"]["providers"].as_array() {
        Some(list) => format!(
            "default tenants from {}",
            list.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "no default tenants".to_string(),
    };

    let plans: Vec<String> = object("plans")
        .iter()
        .map(|(name, plan)| format!("{name} ({})", limits(plan)))
        .collect();

    let mut request_windows = windows(doc, "requests");
    request_windows.dedup();
    let mut token_windows = windows(doc, "tokens");
    token_windows.dedup();

    let stores: Vec<String> = doc["vector_stores"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{} {}",
                s["kind"].as_str().unwrap_or("?"),
                s["path_prefix"].as_str().unwrap_or("?")
            )
        })
        .collect();

    vec![
        format!("providers: {}: {}", providers.len(), providers.join(", ")),
        format!(
            "tenants:   {} listed ({} active, {suspended} suspended), {default}",
            tenants.len(),
            tenants.len() - suspended
        ),
        format!("plans:     {}: {}", plans.len(), none_or(&plans.join("; "))),
        format!(
            "windows:   requests {}; tokens {}",
            none_or(&seconds(&request_windows)),
            none_or(&seconds(&token_windows))
        ),
        format!("stores:    {}", none_or(&stores.join(", "))),
        format!(
            "global:    {}",
            match doc["global_rate_limit"]["cluster"].as_str() {
                Some(cluster) if doc["global_rate_limit"]["lease"].is_object() =>
                    format!("rate-limit service at cluster {cluster}, leased credit"),
                Some(cluster) => format!("rate-limit service at cluster {cluster}"),
                None => "none (quotas per Envoy process)".to_string(),
            }
        ),
    ]
}

/// Warnings for valid but risky choices, each naming the field.
pub fn warnings(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let empty = Map::new();
    for (name, plan) in doc["plans"].as_object().unwrap_or(&empty) {
        if !has_quotas(plan) {
            out.push(format!(
                "plans.{name} has no request window, token window or monthly budget: its \
                 tenants have no quotas"
            ));
        }
    }
    for (id, tenant) in doc["tenants"].as_object().unwrap_or(&empty) {
        let no_plan = tenant["plan"].as_str().is_none();
        if no_plan && !has_quotas(&tenant["limits"]) && tenant["status"] != "suspended" {
            out.push(format!(
                "tenants.{id} has no plan and no limits of its own: it has no quotas"
            ));
        }
    }
    let default = &doc["default_tenant"];
    if default.is_object() {
        if default["namespace"].is_null() {
            out.push(
                "default_tenant.namespace is not set: default tenants are placed in \
                 {provider}.{tenant}; write the template your routes and stores expect"
                    .to_string(),
            );
        }
        if default["plan"].is_null() {
            out.push("default_tenant has no plan: default tenants have no quotas".to_string());
        }
    }
    let isolation = &doc["isolation"];
    if isolation["key"].is_null() && isolation["prompt_cache"].as_str() != Some("off") {
        out.push(
            "isolation.key is not set: the key of the tenant-scoped tags (prompt_cache_key, \
             safety_identifier, metadata.user_id) is derived from this policy document, so \
             whoever can read the policy can compute the tags, and they change with every \
             policy change"
                .to_string(),
        );
    }
    if doc["records"]["log_line"] == false {
        out.push(
            "records.log_line is false: records reach logs only through an Envoy access log \
             whose format names %FILTER_STATE(wasm.<key>:PLAIN)% (docs/records.md, Without the \
             log line); the provider, plan, path as received and output cap of admitted \
             requests are in no filter state"
                .to_string(),
        );
        if let Some(listed) = doc["records"]["filter_state"].as_array() {
            out.push(format!(
                "records.filter_state lists {} of the record's 16 fields and records.log_line \
                 is false: the others are in no log",
                listed.len()
            ));
        }
    }
    out.extend(remote_jwks_warnings(doc));
    out.extend(leased_user_warnings(doc));
    out
}

/// Leased credit is the tenant's: users' limits then hold per Envoy process only.
fn leased_user_warnings(doc: &Value) -> Vec<String> {
    if doc["global_rate_limit"]["lease"].is_null() {
        return Vec::new();
    }
    let empty = Map::new();
    let plans = doc["plans"].as_object().unwrap_or(&empty).iter();
    let tenants = doc["tenants"].as_object().unwrap_or(&empty).iter();
    let with_users = plans
        .filter(|(_, plan)| !plan["per_user"].is_null())
        .map(|(name, _)| format!("plans.{name}.per_user"))
        .chain(
            tenants
                .filter(|(_, tenant)| !tenant["limits"]["per_user"].is_null())
                .map(|(id, _)| format!("tenants.{id}.limits.per_user")),
        );
    with_users
        .map(|path| {
            format!(
                "{path}: with global_rate_limit.lease, users' limits are not leased and hold \
                 per Envoy process only (leased credit is the tenant's)"
            )
        })
        .collect()
}

/// A withdrawn key stays trusted until the last good key set goes stale: past a day, say so.
/// Without `max_stale_s` the filter's default (an hour, or longer for long refreshes) holds.
fn remote_jwks_warnings(doc: &Value) -> Vec<String> {
    const DAY_S: u64 = 86_400;
    let empty = Map::new();
    doc["providers"]
        .as_object()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|(name, provider)| {
            let max_stale_s = provider["remote_jwks"]["max_stale_s"].as_u64()?;
            (max_stale_s > DAY_S).then(|| {
                format!(
                    "providers.{name}.remote_jwks.max_stale_s is {max_stale_s}: when the key \
                     set cannot be fetched, a key the identity provider has withdrawn stays \
                     trusted for up to {} hours",
                    max_stale_s / 3600
                )
            })
        })
        .collect()
}

fn has_quotas(limits: &Value) -> bool {
    let non_empty = |key: &str| limits[key].as_array().is_some_and(|l| !l.is_empty());
    non_empty("requests") || non_empty("tokens") || !limits["monthly_budget_usd"].is_null()
}

fn limits(plan: &Value) -> String {
    let list = |key: &str| -> Option<String> {
        let items: Vec<String> = plan[key]
            .as_array()?
            .iter()
            .map(|w| format!("{}/{}s", w["limit"], w["window_s"]))
            .collect();
        (!items.is_empty()).then(|| format!("{key} {}", items.join(" ")))
    };
    let mut parts: Vec<String> = [list("requests"), list("tokens")]
        .into_iter()
        .flatten()
        .collect();
    match &plan["monthly_budget_usd"] {
        Value::Null => {}
        Value::String(usd) => parts.push(format!("{usd} USD a month")),
        usd => parts.push(format!("{usd} USD a month")),
    }
    if plan["output_cap"].is_string() {
        parts.push("output cap".into());
    }
    if plan["enforcement"].as_str() == Some("shadow") {
        parts.push("shadow".into());
    }
    if parts.is_empty() {
        "no quotas".into()
    } else {
        parts.join(", ")
    }
}

/// Every window length of `kind` in plans and tenants' limits, sorted.
fn windows(doc: &Value, kind: &str) -> Vec<u64> {
    let empty = Map::new();
    let plans = doc["plans"].as_object().unwrap_or(&empty).values();
    let tenants = doc["tenants"]
        .as_object()
        .unwrap_or(&empty)
        .values()
        .map(|t| &t["limits"]);
    let mut out: Vec<u64> = plans
        .chain(tenants)
        .filter_map(|limits| limits[kind].as_array())
        .flatten()
        .filter_map(|w| w["window_s"].as_u64())
        .collect();
    out.sort_unstable();
    out
}

fn seconds(list: &[u64]) -> String {
    list.iter()
        .map(|s| format!("{s}s"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn none_or(text: &str) -> String {
    if text.is_empty() {
        "none".into()
    } else {
        text.into()
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "providers": {"idp": {"issuer": "i", "audiences": "any",
                                  "remote_jwks": {"cluster": "c", "path": "/k"}}},
            "tenants": {"a": {"providers": ["idp"], "plan": "p"},
                        "b": {"providers": ["idp"]}},
            "plans": {"p": {"requests": [{"limit": 5, "window_s": 60}],
                            "monthly_budget_usd": "1.5"},
                      "empty": {"enforcement": "shadow"}},
            "default_tenant": {"providers": ["idp"], "plan": "p"},
            "isolation": {"key": "0123456789abcdef0123456789abcdef"}
        })
    }

    #[test]
    fn the_summary_counts_what_the_policy_holds() {
        let lines = summary(&doc());
        assert_eq!(lines[0], "providers: 1: idp (remote JWKS)");
        assert_eq!(
            lines[1],
            "tenants:   2 listed (2 active, 0 suspended), default tenants from idp"
        );
        assert_eq!(
            lines[2],
            "plans:     2: empty (shadow); p (requests 5/60s, 1.5 USD a month)"
        );
        assert_eq!(lines[3], "windows:   requests 60s; tokens none");
    }

    #[test]
    fn risky_choices_are_named() {
        let warnings = warnings(&doc());
        assert_eq!(warnings.len(), 3, "{warnings:#?}");
        assert!(warnings[0].starts_with("plans.empty has no request window"));
        assert!(warnings[1].starts_with("tenants.b has no plan"));
        assert!(warnings[2].starts_with("default_tenant.namespace is not set"));
        let mut derived = doc();
        derived["isolation"] = json!({});
        assert!(super::warnings(&derived)
            .iter()
            .any(|w| w.starts_with("isolation.key is not set")));
    }

    #[test]
    fn records_kept_out_of_the_envoy_log_are_named() {
        let mut off = doc();
        off["records"] = json!({"log_line": false});
        let warnings = super::warnings(&off);
        assert_eq!(warnings.len(), 4, "{warnings:#?}");
        assert!(warnings[3].starts_with("records.log_line is false: records reach logs only"));
        let mut on = doc();
        on["records"] = json!({"log_line": true});
        assert_eq!(super::warnings(&on).len(), 3);
        on["records"]["filter_state"] = json!(["decision"]);
        assert_eq!(super::warnings(&on).len(), 3);
        off["records"]["filter_state"] = json!(["decision", "tenant"]);
        let warnings = super::warnings(&off);
        assert_eq!(warnings.len(), 5, "{warnings:#?}");
        assert!(warnings[4].starts_with("records.filter_state lists 2 of the record's 16 fields"));
    }

    #[test]
    fn a_key_set_trusted_for_days_after_the_last_fetch_is_named() {
        let mut long = doc();
        long["providers"]["idp"]["remote_jwks"]["max_stale_s"] = json!(3 * 86_400);
        let warnings = super::warnings(&long);
        assert!(
            warnings.iter().any(|w| w.starts_with(
                "providers.idp.remote_jwks.max_stale_s is 259200: when the key set cannot be \
                 fetched, a key the identity provider has withdrawn stays trusted for up to 72 hours"
            )),
            "{warnings:#?}"
        );
        let mut day = doc();
        day["providers"]["idp"]["remote_jwks"]["max_stale_s"] = json!(86_400);
        assert_eq!(super::warnings(&day).len(), 3);
    }
}
