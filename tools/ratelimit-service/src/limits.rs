//! Loading and checking a Limitador limits file.
//!
//! The file is Limitador's own format: a YAML list of limits, each with `namespace`,
//! `max_value`, `seconds`, `conditions` (CEL predicates, all must hold) and `variables` (CEL
//! expressions, one counter per distinct value), optionally `name` and `id`. Each item is turned
//! into a `limitador::limit::Limit` by limitador's own deserializer (which also parses the CEL).
//! On top of that this loader is stricter than limitador-server, so a typo fails at start
//! instead of silently never matching: unknown keys, a missing `max_value` (limitador would
//! default it to 0), `seconds: 0`, an empty namespace, and two limits limitador would treat as
//! the same one (same namespace, seconds, conditions and variables) are errors.

use limitador::limit::Limit;
use serde_yaml::Value;
use std::collections::HashSet;
use std::fmt;
use std::path::Path;

const KNOWN_KEYS: &[&str] = &[
    "namespace",
    "max_value",
    "seconds",
    "conditions",
    "variables",
    "name",
    "id",
];
const REQUIRED_KEYS: &[&str] = &[
    "namespace",
    "max_value",
    "seconds",
    "conditions",
    "variables",
];

/// Why a limits file was refused; the message names the file and the offending limit.
#[derive(Debug)]
pub struct LimitsError(pub String);

impl fmt::Display for LimitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitsError {}

/// Reads and checks the limits file at `path`.
pub fn load_limits_file(path: &Path) -> Result<Vec<Limit>, LimitsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LimitsError(format!("limits file {}: cannot read: {e}", path.display())))?;
    parse_limits(&text).map_err(|e| LimitsError(format!("limits file {}: {}", path.display(), e.0)))
}

/// Parses and checks limits from YAML text.
pub fn parse_limits(text: &str) -> Result<Vec<Limit>, LimitsError> {
    let doc: Value =
        serde_yaml::from_str(text).map_err(|e| LimitsError(format!("not valid YAML: {e}")))?;
    let items = match doc {
        // An empty file is an empty list, as for limitador-server.
        Value::Null => Vec::new(),
        Value::Sequence(items) => items,
        other => {
            return Err(LimitsError(format!(
                "expected a YAML list of limits at the top level, found {}",
                kind(&other)
            )))
        }
    };

    let mut limits = Vec::with_capacity(items.len());
    let mut seen: HashSet<Limit> = HashSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let map = match &item {
            Value::Mapping(map) => map,
            other => {
                return Err(LimitsError(format!(
                    "limit #{i}: expected a mapping, found {}",
                    kind(other)
                )))
            }
        };
        let label = match map.get("namespace").and_then(Value::as_str) {
            Some(ns) => format!("limit #{i} (namespace {ns:?})"),
            None => format!("limit #{i}"),
        };
        for key in map.keys() {
            match key.as_str() {
                Some(k) if KNOWN_KEYS.contains(&k) => {}
                Some(k) => {
                    return Err(LimitsError(format!(
                        "{label}: unknown key {k:?} (known: {})",
                        KNOWN_KEYS.join(", ")
                    )))
                }
                None => return Err(LimitsError(format!("{label}: non-string key {key:?}"))),
            }
        }
        for key in REQUIRED_KEYS {
            if !map.contains_key(*key) {
                return Err(LimitsError(format!(
                    "{label}: missing required key {key:?}"
                )));
            }
        }
        let limit: Limit = serde_yaml::from_value(item.clone())
            .map_err(|e| LimitsError(format!("{label}: {e}")))?;
        if limit.namespace().as_ref().is_empty() {
            return Err(LimitsError(format!("{label}: namespace must not be empty")));
        }
        if limit.seconds() == 0 {
            return Err(LimitsError(format!("{label}: seconds must be at least 1")));
        }
        if let Some(previous) = seen.get(&limit) {
            return Err(LimitsError(format!(
                "{label}: same namespace, seconds, conditions and variables as an earlier limit \
                 (max_value {}); limitador would keep only one of them",
                previous.max_value()
            )));
        }
        seen.insert(limit.clone());
        limits.push(limit);
    }
    Ok(limits)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
- namespace: tenant-guard
  max_value: 5
  seconds: 60
  conditions: ["descriptors[0]['usage'] == 'requests'"]
  variables: ["descriptors[0]['tenant_id']"]
"#;

    #[test]
    fn parses_limitador_format() {
        let limits = parse_limits(GOOD).unwrap();
        assert_eq!(limits.len(), 1);
        assert_eq!(limits[0].max_value(), 5);
        assert_eq!(limits[0].seconds(), 60);
        assert_eq!(limits[0].namespace().as_ref(), "tenant-guard");
    }

    #[test]
    fn empty_file_is_no_limits() {
        assert!(parse_limits("").unwrap().is_empty());
        assert!(parse_limits("[]").unwrap().is_empty());
    }

    #[test]
    fn rejects_unknown_and_missing_keys() {
        let e = parse_limits(&GOOD.replace("max_value", "max_values")).unwrap_err();
        assert!(e.0.contains("unknown key \"max_values\""), "{e}");
        let e = parse_limits(&GOOD.replace("  seconds: 60\n", "")).unwrap_err();
        assert!(e.0.contains("missing required key \"seconds\""), "{e}");
    }

    #[test]
    fn rejects_bad_cel_and_bad_values() {
        let e = parse_limits(&GOOD.replace("== 'requests'", "=== 'requests'")).unwrap_err();
        assert!(e.0.contains("limit #0"), "{e}");
        let refused = |text: &str| parse_limits(text).unwrap_err().0;
        assert_eq!(
            refused(&GOOD.replace("seconds: 60", "seconds: 0")),
            "limit #0 (namespace \"tenant-guard\"): seconds must be at least 1"
        );
        let negative = refused(&GOOD.replace("max_value: 5", "max_value: -5"));
        assert!(
            negative.starts_with(
                "limit #0 (namespace \"tenant-guard\"): invalid value: integer `-5`, expected u64"
            ),
            "{negative}"
        );
        assert_eq!(
            refused("namespace: x"),
            "expected a YAML list of limits at the top level, found a mapping"
        );
        assert_eq!(
            refused("- [1, 2]"),
            "limit #0: expected a mapping, found a list"
        );
    }

    #[test]
    fn rejects_duplicates() {
        let twice = format!("{GOOD}{}", GOOD.replace("max_value: 5", "max_value: 7"));
        let e = parse_limits(&twice).unwrap_err();
        assert!(e.0.contains("limit #1"), "{e}");
    }
}
