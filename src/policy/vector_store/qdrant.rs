//! **`qdrant`** (REST API, collection per tenant). `/collections/{name}` and everything below it
//! reach the collection named by the `collection` template, with the client's name always
//! wrapped, so names round-trip through `GET /collections`. Client names are 1-128 characters of
//! `A-Z a-z 0-9 . _ -`, and may not contain the template's separator character next to `{name}`
//! unless the separator holds `~` (with `tenant_{namespace}_{name}`: no `_`). Without that rule
//! tenant `a` naming `b_c` would reach tenant `a_b`'s collection `c`; with it, every name maps to
//! one tenant, and a name that already carries a tenant prefix (the tenant's own or another's)
//! is refused (400 `invalid_path`) instead of being wrapped twice. Allowed below a collection:
//! the collection itself (any method), `exists`, `facet`, `index/...`, `points/...`. Collection
//! names inside bodies (`init_from`, `lookup_from`, `with_lookup`) are wrapped the same way (400
//! `invalid_body` for a name that is refused). Refused (403): the root,
//! `/collections/aliases`, per-collection `aliases`, `snapshots`, `shards`, `cluster`, and
//! everything not listed (`/aliases`, `/cluster`, `/snapshots`, `/telemetry`, `/metrics`, ...).

use serde_json::Value;

use super::body::{check_spellings, Object, RULE_KEYS};
use super::{
    invalid_body, not_allowed, BodyEdit, RawVectorStore, Request, ResponsePlan, Rule, Shape,
    VectorRoute, TENANT_PLACEHOLDERS,
};
use crate::policy::config_error::{err, ConfigError};
use crate::policy::denial::Reason;
use crate::policy::namespace::{expand, quoted, PathRefusal};
use crate::policy::word::words;

const DEFAULT_COLLECTION: &str = "{namespace}~{name}";
const MAX_CLIENT_NAME_CHARS: usize = 128;

/// What `GET /collections` does on a `qdrant` store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListCollections {
    #[default]
    Filter,
    Deny,
}

words!(ListCollections: "enum ListCollections", Filter = "filter", Deny = "deny");

/// A `collection` template, split around its two placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CollectionTemplate {
    head: String,
    /// `{tenant}` or `{namespace}`.
    pub(super) placeholder: String,
    separator: String,
    tail: String,
    /// Whether the tenant's placeholder comes before `{name}`.
    tenant_first: bool,
}

impl CollectionTemplate {
    /// The tenant's collection names: `prefix` + client name + `suffix`.
    pub(super) fn for_tenant(&self, tenant: &str, namespace: &str) -> CollectionNaming {
        let value = expand(&self.placeholder, tenant, namespace);
        let (prefix, suffix) = if self.tenant_first {
            (
                format!("{}{value}{}", self.head, self.separator),
                self.tail.clone(),
            )
        } else {
            (
                self.head.clone(),
                format!("{}{value}{}", self.separator, self.tail),
            )
        };
        CollectionNaming {
            prefix,
            suffix,
            forbidden: self.forbidden_in_names(),
        }
    }

    /// The character client names may not contain so that names cannot cross tenants: none
    /// when the separator holds `~` (which tenant ids and client names never contain), else the
    /// separator's character next to `{name}`.
    fn forbidden_in_names(&self) -> Option<char> {
        if self.separator.contains('~') {
            None
        } else if self.tenant_first {
            self.separator.chars().last()
        } else {
            self.separator.chars().next()
        }
    }
}

/// One tenant's Qdrant collections: the client's `name` is `prefix` + `name` + `suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionNaming {
    pub prefix: String,
    pub suffix: String,
    /// A character client names may not contain (see [`CollectionTemplate`]).
    pub forbidden: Option<char>,
}

impl CollectionNaming {
    /// The tenant's collection for a client's name, or why the name is refused.
    pub fn collection_for(&self, name: &str) -> Result<String, String> {
        self.check_name(name)?;
        Ok(format!("{}{name}{}", self.prefix, self.suffix))
    }

    /// The client's name for one of the tenant's collections; `None` for anybody else's.
    pub fn client_name<'a>(&self, collection: &'a str) -> Option<&'a str> {
        let name = collection
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?;
        self.check_name(name).ok().map(|()| name)
    }

    fn check_name(&self, name: &str) -> Result<(), String> {
        let valid = (1..=MAX_CLIENT_NAME_CHARS).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(format!(
                "collection name {} must be 1-128 characters of A-Z a-z 0-9 . _ -",
                quoted(name)
            ));
        }
        match self.forbidden {
            Some(c) if name.contains(c) => Err(format!(
                "collection name {} may not contain '{c}' here",
                quoted(name)
            )),
            _ => Ok(()),
        }
    }
}

pub(super) fn compile_qdrant(path: &str, raw: &RawVectorStore) -> Result<Rule, ConfigError> {
    let template = raw.collection.as_deref().unwrap_or(DEFAULT_COLLECTION);
    Ok(Rule::Qdrant {
        collection: parse_collection(&format!("{path}.collection"), template)?,
        list_collections: raw.list_collections.unwrap_or_default(),
    })
}

fn parse_collection(path: &str, template: &str) -> Result<CollectionTemplate, ConfigError> {
    if template.matches("{name}").count() != 1 {
        return err(path, "must contain {name} exactly once");
    }
    let found: Vec<(usize, &str)> = TENANT_PLACEHOLDERS
        .iter()
        .flat_map(|p| template.match_indices(p))
        .collect();
    let [(tenant_at, placeholder)] = found.as_slice() else {
        return err(path, "must contain exactly one of {tenant} or {namespace}");
    };
    let literal = template.replace("{name}", "").replace(placeholder, "");
    let literal_ok = literal
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~'));
    if !literal_ok || literal.len() > 64 {
        return err(
            path,
            "besides its placeholders, at most 64 characters of A-Z a-z 0-9 . _ - ~",
        );
    }
    let name_at = template.find("{name}").unwrap_or_default();
    let (tenant_at, name_end, tenant_end) = (
        *tenant_at,
        name_at + "{name}".len(),
        tenant_at + placeholder.len(),
    );
    let piece = |from: usize, to: usize| template.get(from..to).unwrap_or_default().to_string();
    let tenant_first = tenant_at < name_at;
    let (head, separator, tail) = if tenant_first {
        (
            piece(0, tenant_at),
            piece(tenant_end, name_at),
            piece(name_end, template.len()),
        )
    } else {
        (
            piece(0, name_at),
            piece(name_end, tenant_at),
            piece(tenant_end, template.len()),
        )
    };
    if separator.is_empty() {
        return err(
            path,
            format!("needs a separator between {{name}} and {placeholder}, e.g. '~'"),
        );
    }
    Ok(CollectionTemplate {
        head,
        placeholder: placeholder.to_string(),
        separator,
        tail,
        tenant_first,
    })
}

pub(super) fn qdrant(
    request: &Request<'_>,
    naming: &CollectionNaming,
    list: ListCollections,
) -> Result<VectorRoute, PathRefusal> {
    match request.segments.as_slice() {
        ["collections"] => list_collections(request, naming, list),
        ["collections", "aliases", ..] => Err(not_allowed("changing collection aliases")),
        ["collections", name, below @ ..] => {
            if !collection_part_allowed(below) {
                return Err(not_allowed(&format!(
                    "collection operation {}",
                    quoted(&below.join("/"))
                )));
            }
            let wrapped = naming
                .collection_for(name)
                .map_err(|why| PathRefusal::new(Reason::InvalidPath, why))?;
            let after_name = request
                .rest
                .strip_prefix("/collections/")
                .and_then(|r| r.strip_prefix(name))
                .unwrap_or_default();
            let path = request.target(format!(
                "{}/collections/{wrapped}{after_name}",
                request.prefix
            ));
            Ok(match body_names_collections(request.method, below) {
                Some(shape) => request.body(path, BodyEdit::WrapCollections(naming.clone()), shape),
                None => VectorRoute::Forward { path },
            })
        }
        _ => Err(not_allowed(&format!(
            "qdrant operation {}",
            quoted(request.rest)
        ))),
    }
}

fn list_collections(
    request: &Request<'_>,
    naming: &CollectionNaming,
    list: ListCollections,
) -> Result<VectorRoute, PathRefusal> {
    match (request.method, list) {
        ("GET", ListCollections::Filter) => Ok(VectorRoute::FilterResponse {
            path: request.unchanged(),
            plan: ResponsePlan {
                max_bytes: request.max_bytes,
                collections: naming.clone(),
            },
        }),
        ("GET", ListCollections::Deny) => Err(not_allowed("listing collections")),
        _ => Err(not_allowed("this method on /collections")),
    }
}

/// The parts of a collection a tenant may use: the collection itself and its data.
fn collection_part_allowed(below: &[&str]) -> bool {
    matches!(
        below,
        [] | ["exists"] | ["facet"] | ["index", ..] | ["points", ..]
    )
}

/// The operations whose body may name other collections, and how their requests sit.
fn body_names_collections(method: &str, below: &[&str]) -> Option<Shape> {
    match (method, below) {
        ("PUT" | "PATCH", []) => Some(Shape::Single),
        ("POST", ["points", "recommend" | "discover" | "query", "batch"]) => Some(Shape::Batch),
        ("POST", ["points", "recommend" | "discover" | "query"])
        | ("POST", ["points", "recommend" | "query" | "search", "groups"]) => Some(Shape::Single),
        _ => None,
    }
}

/// Wraps the collection names one Qdrant request names besides the path's.
pub(super) fn wrap_collections(
    request: &mut Object,
    naming: &CollectionNaming,
) -> Result<(), PathRefusal> {
    for key in ["init_from", "lookup_from", "with_lookup"] {
        let name = match request.get_mut(key) {
            None | Some(Value::Null) => continue,
            Some(Value::String(name)) if key == "with_lookup" => name,
            Some(Value::Object(reference)) => {
                check_spellings(reference, &RULE_KEYS)?;
                match reference.get_mut("collection") {
                    Some(Value::String(name)) => name,
                    _ => return Err(invalid_body(format!("`{key}.collection` must be a string"))),
                }
            }
            Some(_) => return Err(invalid_body(format!("`{key}` has the wrong type"))),
        };
        *name = naming.collection_for(name).map_err(invalid_body)?;
    }
    Ok(())
}

/// Filters a Qdrant collection list to the tenant's collections, under the client's names.
///
/// `None` when the body is not a collection list (or is over the cap): the shell must not
/// forward it, and answers 502 instead.
pub fn filter_response(plan: &ResponsePlan, body: &[u8]) -> Option<Vec<u8>> {
    if body.len() > plan.max_bytes {
        return None;
    }
    let mut value: Value = crate::policy::json::from_slice(body).ok()?;
    let collections = value
        .get_mut("result")?
        .get_mut("collections")?
        .as_array_mut()?;
    let listed = std::mem::take(collections);
    *collections = listed
        .into_iter()
        .filter_map(|entry| client_entry(entry, &plan.collections))
        .collect();
    serde_json::to_vec(&value).ok()
}

/// A listed collection under the client's name, if it is the tenant's.
fn client_entry(mut entry: Value, naming: &CollectionNaming) -> Option<Value> {
    let object = entry.as_object_mut()?;
    let name = naming
        .client_name(object.get("name")?.as_str()?)?
        .to_string();
    object.insert("name".into(), Value::String(name));
    Some(entry)
}

#[cfg(test)]
mod tests;
