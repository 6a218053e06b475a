//! Which models a tenant may use (`plans.<p>.models`, `tenants.<id>.models`): exact names and
//! `prefix*` patterns. No list: every model, as before lists existed.
//!
//! The model is read where the API puts it, and every place counts:
//! - the path, for the APIs that name it there ([`crate::policy::provider_api`]: Azure OpenAI
//!   deployments, Gemini and Vertex AI `models/{model}:{method}`, Bedrock `model/{id}/...`);
//!   such a path whose model cannot be read (a Vertex AI endpoint, a malformed escape) is
//!   refused, since an unknown model is never a listed one;
//! - the JSON body's top-level `model`, on a `POST` to an endpoint that takes one
//!   ([`Endpoint`]). Every `model` member counts (a body naming two is refused unless both
//!   are allowed: upstreams disagree on which of two wins); on an endpoint that needs a model,
//!   a body without one, or with one that is not a string, is refused (`model_required`).
//!
//! A body model and a path model that disagree are both checked: the request is refused
//! unless both are allowed. Endpoints that take their model in a multipart form (audio
//! transcriptions and translations, image edits and variations) are refused while a list
//! applies: the filter does not read forms, and a model it cannot read is not a listed one.
//! A list holding `*` allows every model and reads nothing.

use std::rc::Rc;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::policy::config_error::{err, ConfigError};
use crate::policy::denial::{self, LocalReply, Reason};
use crate::policy::provider_api::{PathApi, ProviderApi};

/// Longest pattern (and longest model name quoted in a refusal).
const MAX_NAME_BYTES: usize = 256;

/// One entry of a model list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// `prefix*`: every model whose name starts with `prefix` (`*` alone: every model).
    Prefix(String),
}

/// A compiled `models` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelList {
    patterns: Vec<Pattern>,
    /// The list is the tenant's own (`tenants.<id>.models`), not its plan's.
    pub by_tenant: bool,
}

impl ModelList {
    /// Whether `model` (compared byte for byte, case included) is on the list.
    pub fn allows(&self, model: &str) -> bool {
        self.patterns.iter().any(|p| match p {
            Pattern::Exact(name) => name == model,
            Pattern::Prefix(prefix) => model.starts_with(prefix.as_str()),
        })
    }

    /// The list holds `*`: nothing needs to be read.
    pub fn allows_all(&self) -> bool {
        self.patterns
            .iter()
            .any(|p| matches!(p, Pattern::Prefix(prefix) if prefix.is_empty()))
    }
}

/// Checks a `models` list found at `path`: at least one entry; each 1-256 bytes of printable
/// ASCII without spaces, with `*` only as its last character.
pub(crate) fn check(path: &str, list: &[String]) -> Result<(), ConfigError> {
    if list.is_empty() {
        return err(
            path,
            "must name at least one model (leave it out to allow every model, or write [\"*\"])",
        );
    }
    for (i, entry) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if entry.is_empty() {
            return err(at, "must not be empty");
        }
        if entry.len() > MAX_NAME_BYTES || !entry.bytes().all(|b| b.is_ascii_graphic()) {
            return err(
                at,
                "must be 1-256 characters of printable ASCII without spaces",
            );
        }
        if entry.trim_end_matches('*').contains('*') || entry.ends_with("**") {
            return err(
                at,
                format!(
                    "\"{entry}\": '*' may only end a pattern (a prefix such as \"claude-3-5-haiku-*\")"
                ),
            );
        }
    }
    Ok(())
}

/// Compiles a list [`check`] accepted.
pub(crate) fn compile(list: &[String]) -> Rc<ModelList> {
    Rc::new(ModelList {
        patterns: list
            .iter()
            .map(|entry| match entry.strip_suffix('*') {
                Some(prefix) => Pattern::Prefix(prefix.to_string()),
                None => Pattern::Exact(entry.clone()),
            })
            .collect(),
        by_tenant: false,
    })
}

/// What an endpoint says about the body's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The body must name the model (OpenAI chat completions, completions, embeddings,
    /// responses, audio speech, image generations, fine-tuning jobs; Anthropic messages and
    /// token counts).
    Required,
    /// The path names the model; a body `model` is checked too when it has one.
    InPath,
    /// The model is in a multipart form the filter does not read.
    Form,
    /// The request names no model (listings, files, ...): nothing to check.
    None,
}

/// The endpoint of a request: `path_api` is what [`crate::policy::provider_api::from_path`]
/// says of its path.
pub fn endpoint(method: &str, path: &str, path_api: Option<ProviderApi>) -> Endpoint {
    if path_api.is_some() {
        return Endpoint::InPath;
    }
    if method != "POST" {
        return Endpoint::None;
    }
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut segments = path.rsplit('/').filter(|s| !s.is_empty());
    match (segments.next(), segments.next()) {
        (Some("completions"), _)
        | (Some("embeddings"), _)
        | (Some("responses"), _)
        | (Some("messages"), Some("v1"))
        | (Some("count_tokens"), Some("messages"))
        | (Some("speech"), Some("audio"))
        | (Some("generations"), Some("images"))
        | (Some("jobs"), Some("fine_tuning")) => Endpoint::Required,
        (Some("transcriptions" | "translations"), Some("audio"))
        | (Some("edits" | "variations"), Some("images")) => Endpoint::Form,
        _ => Endpoint::None,
    }
}

/// The models a JSON body names at its top level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyModel {
    /// A JSON object without `model`.
    Missing,
    /// Not a JSON object (or not JSON).
    NotJson,
    /// A `model` member that is not a string.
    NotString,
    /// Every `model` string, in order (more than one when the body repeats the member).
    Named(Vec<String>),
}

/// Reads the models a request body names (nothing else is materialised).
pub fn body_model(body: &[u8]) -> BodyModel {
    match crate::policy::json::from_slice::<Models>(body) {
        Ok(Models {
            not_string: true, ..
        }) => BodyModel::NotString,
        Ok(Models { names, .. }) if names.is_empty() => BodyModel::Missing,
        Ok(Models { names, .. }) => BodyModel::Named(names),
        Err(_) => BodyModel::NotJson,
    }
}

struct Models {
    names: Vec<String>,
    not_string: bool,
}

impl<'de> Deserialize<'de> for Models {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ModelsVisitor)
    }
}

struct ModelsVisitor;

impl<'de> Visitor<'de> for ModelsVisitor {
    type Value = Models;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Models, A::Error> {
        let mut models = Models {
            names: Vec::new(),
            not_string: false,
        };
        while let Some(key) = map.next_key::<String>()? {
            if key != "model" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            match map.next_value::<Value>()? {
                Value::String(name) => models.names.push(name),
                _ => models.not_string = true,
            }
        }
        Ok(models)
    }
}

/// A client's model name fit to quote: at most 256 bytes, printable ASCII without `"`, other
/// bytes as `%XX`.
fn quotable(model: &str) -> String {
    let mut out = String::with_capacity(model.len().min(MAX_NAME_BYTES));
    for b in model.bytes().take(MAX_NAME_BYTES) {
        if (b == b' ' || b.is_ascii_graphic()) && b != b'"' && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whose list a request is held to, for the refusal's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRule {
    pub list: Rc<ModelList>,
    pub plan: Option<String>,
    pub tenant: String,
}

/// A refused request: the reason, a detail for logs and audit (the model quoted first), and
/// the client's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub reason: Reason,
    pub detail: String,
    pub reply: LocalReply,
}

impl ModelRule {
    /// The path's model, for an API that names it there.
    pub fn check_path(&self, path_api: Option<&PathApi>) -> Result<(), Refused> {
        let Some(found) = path_api else {
            return Ok(());
        };
        match &found.model {
            Some(model) => self.check_name(model, "path"),
            None => Err(self.not_allowed(None, "the path names no model the gateway can read")),
        }
    }

    /// The body's models, on `endpoint`.
    pub fn check_body(&self, endpoint: Endpoint, body: &[u8]) -> Result<(), Refused> {
        match endpoint {
            Endpoint::None => Ok(()),
            Endpoint::Form => Err(self.not_allowed(
                None,
                "the model of a multipart form is not read while a model list applies",
            )),
            Endpoint::Required | Endpoint::InPath => match body_model(body) {
                BodyModel::Named(names) => names
                    .iter()
                    .try_for_each(|name| self.check_name(name, "body")),
                BodyModel::NotString => Err(self.required("the body's model is not a string")),
                BodyModel::Missing | BodyModel::NotJson if endpoint == Endpoint::InPath => Ok(()),
                BodyModel::Missing => Err(self.required("the body names no model")),
                BodyModel::NotJson => Err(self.required("the body is not a JSON object")),
            },
        }
    }

    fn check_name(&self, model: &str, place: &str) -> Result<(), Refused> {
        if self.list.allows(model) {
            Ok(())
        } else {
            Err(self.not_allowed(Some(model), place))
        }
    }

    /// Whose list it is, for messages: `plan 'free'`, `tenant 'acme'`.
    fn owner(&self) -> String {
        match (&self.plan, self.list.by_tenant) {
            (Some(plan), false) => format!("plan '{plan}'"),
            _ => format!("tenant '{}'", self.tenant),
        }
    }

    fn not_allowed(&self, model: Option<&str>, place: &str) -> Refused {
        let owner = self.owner();
        let (detail, message) = match model {
            Some(model) => {
                let model = quotable(model);
                (
                    format!("model \"{model}\" (in the {place}) is not one of {owner}'s models"),
                    format!("The model '{model}' is not available on {owner}."),
                )
            }
            None => (
                format!("{place} ({owner} has a model list)"),
                format!("The gateway cannot tell the model of this request, and {owner} allows only listed models."),
            ),
        };
        Refused {
            reason: Reason::ModelNotAllowed,
            detail,
            reply: denial::reply_saying(Reason::ModelNotAllowed, &message),
        }
    }

    fn required(&self, detail: &str) -> Refused {
        let message = format!(
            "The request must name its model as a string: {} allows only listed models.",
            self.owner()
        );
        Refused {
            reason: Reason::ModelRequired,
            detail: detail.to_string(),
            reply: denial::reply_saying(Reason::ModelRequired, &message),
        }
    }
}

#[cfg(test)]
mod tests;
