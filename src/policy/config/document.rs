//! Reading the policy document: JSON text, or the same document as a serialized
//! `google.protobuf.Struct` (policies written as YAML), into the contract's serde types; a
//! document serde refuses gets an error naming the field at fault (`position.rs`).

use serde_json::error::Category;

use super::position;
use super::{compile, Config, RawConfig};
use crate::policy::config_error::ConfigError;
use crate::policy::json;
use crate::policy::structpb;

impl Config {
    /// Parses and validates the plugin configuration document: JSON text, or the same document
    /// as a serialized `google.protobuf.Struct` (configuration written as YAML).
    ///
    /// A JSON document starts with `{` (after whitespace); a Struct starts with its first map
    /// entry (`\n`, then a length that may be any byte, `{` too). So a document that does not
    /// start like JSON is read as a Struct first, and one that does is read as JSON first; the
    /// other form is tried when the first is not even well-formed.
    pub fn parse(document: &[u8]) -> Result<Config, ConfigError> {
        let looks_like_json = document.trim_ascii_start().starts_with(b"{");
        let struct_error = if looks_like_json {
            None
        } else {
            match Config::parse_struct(document) {
                Ok(parsed) => return parsed,
                Err(e) => Some(e),
            }
        };
        let raw = match raw_document(document) {
            Ok(raw) => raw,
            Err(e) => {
                let malformed = matches!(e.error.classify(), Category::Syntax | Category::Eof);
                return Err(match struct_error {
                    // Neither form: say what each reader found.
                    Some(struct_error) if malformed => {
                        let json = document_error(e);
                        ConfigError {
                            path: "configuration".into(),
                            message: format!(
                                "neither JSON ({}) nor a serialized google.protobuf.Struct ({}{})",
                                json.message,
                                if struct_error.path == "configuration" {
                                    String::new()
                                } else {
                                    format!("{}: ", struct_error.path)
                                },
                                struct_error.message
                            ),
                        }
                    }
                    Some(_) => document_error(e),
                    None if malformed => match Config::parse_struct(document) {
                        Ok(parsed) => return parsed,
                        Err(_) => document_error(e),
                    },
                    None => document_error(e),
                });
            }
        };
        compile(raw, document)
    }

    /// The Struct form: `Err` when the bytes are not a Struct (the error says why), else the
    /// outcome of loading it.
    ///
    /// Envoy's YAML loader turns every number that is not an integer into a string (`2.5`
    /// arrives as `"2.5"`; seen on 1.40): decimal strings at the contract's dollar fields
    /// ([`STRUCT_DECIMALS`]) become numbers again. The decoded document then goes through the
    /// same JSON reader as the string form, as canonical JSON text.
    fn parse_struct(document: &[u8]) -> Result<Result<Config, ConfigError>, ConfigError> {
        let mut value = structpb::decode(document).map_err(|e| ConfigError {
            path: if e.path.is_empty() {
                "configuration".into()
            } else {
                e.path
            },
            message: e.message,
        })?;
        for path in STRUCT_DECIMALS {
            structpb::numbers_at(&mut value, path);
        }
        // Envoy serializes a Struct's map in no fixed order, so the document's identity (its
        // hash, the derived isolation key) comes from the canonical text (serde_json's map is
        // sorted), not from the bytes.
        let canonical = serde_json::to_vec(&value).unwrap_or_default();
        Ok(match raw_document(&canonical) {
            Ok(raw) => compile(raw, &canonical),
            Err(e) => {
                // A position in the canonical text would mean nothing to the operator.
                let position = format!(" at line {} column {}", e.error.line(), e.error.column());
                let mut error = document_error(e);
                if let Some(message) = error.message.strip_suffix(&position) {
                    error.message = message.to_string();
                }
                Err(error)
            }
        })
    }
}

/// Where the contract wants a decimal number (`*`: any key): the fields Envoy's YAML loader
/// hands over as strings. A new `f64` field of the contract belongs here too.
const STRUCT_DECIMALS: [&[&str]; 8] = [
    &["plans", "*", "monthly_budget_usd"],
    &["global_rate_limit", "lease", "low_water"],
    &["tenants", "*", "limits", "monthly_budget_usd"],
    &["pricing", "default", "input_per_million"],
    &["pricing", "default", "output_per_million"],
    &["pricing", "default", "cached_input_per_million"],
    &["pricing", "default", "cache_write_per_million"],
    &["pricing", "models", "*", "*"],
];

/// The document's serde types, their structs read from JSON objects only ([`json`]).
fn raw_document(text: &[u8]) -> Result<RawConfig, DocumentError<'_>> {
    json::from_slice(text).map_err(|error| DocumentError { error, text })
}

/// A document serde_json refused, with the text it read, to name the field at fault.
struct DocumentError<'a> {
    error: serde_json::Error,
    text: &'a [u8],
}

fn document_error(e: DocumentError<'_>) -> ConfigError {
    let path = position::path_at(e.text, e.error.line(), e.error.column());
    ConfigError {
        // An empty path is the document itself, an unknown position (not JSON at all), or an
        // unknown field named "" (found by the config fuzz target).
        path: if path.is_empty() {
            "configuration".into()
        } else {
            path
        },
        message: e.error.to_string(),
    }
}
