//! **`metadata_filter`** (shared collections or namespaces, listed in `collections` or
//! `namespaces`: everything else on the store, such as other tenants' private collections on the
//! same Qdrant, is refused with 403 `cross_tenant_namespace`). Reads and deletes are confined by a
//! filter on `field` and-ed into the body: Qdrant `{"must": [{"key": F, "match": {"value": V}},
//! <client filter>]}`, Pinecone `{"$and": [{F: {"$eq": V}}, <client filter>]}`; writes get
//! `field` stamped on every record (a different client value is 403). Qdrant: `POST
//! /collections/{c}/points/` `search`, `query`, `scroll`, `count`, `search/batch`, `query/batch`,
//! `search/groups`, `query/groups`, `search/matrix/pairs|offsets`, `POST /collections/{c}/facet`
//! (filter in each request of a batch and each `prefetch`); `points/delete` with a `filter` only;
//! `PUT points` (upsert, `points` or `batch` form: `payload` stamped). Pinecone: `POST /query`,
//! `/vectors/delete` with a `filter` only, `/vectors/upsert` (`metadata` stamped). Refused,
//! because they select points by id and so cannot be confined: retrieve, delete or update by
//! id, query or recommend by id or example (`query` holding an id, `recommend`, `discover`,
//! `context`, Pinecone `id`), lookups in other collections, payload and vector updates, and all
//! collection management. Limitation: ids are shared by every tenant of the collection, so an
//! upsert that reuses another tenant's id replaces that point; use unguessable ids (UUIDs) or a
//! collection per tenant where that matters.

use serde_json::Value;

use super::body::{check_spellings, fold_key, Object, RULE_KEYS};
use super::pinecone::scan_query_with;
use super::{
    check_value_template, cross_tenant, invalid_body, not_allowed, not_shared, BodyEdit,
    RawVectorStore, Request, Rule, Shape, VectorRoute,
};
use crate::policy::config_error::{err, ConfigError};
use crate::policy::namespace::{is_unreserved, quoted, PathRefusal};
use crate::policy::word::words;

const DEFAULT_FIELD: &str = "tenant_id";
const DEFAULT_VALUE: &str = "{tenant}";

/// The API of a `metadata_filter` store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Qdrant,
    Pinecone,
}

words!(Dialect: "enum Dialect", Qdrant = "qdrant", Pinecone = "pinecone");

impl Dialect {
    fn name(self) -> &'static str {
        match self {
            Dialect::Qdrant => "qdrant",
            Dialect::Pinecone => "pinecone",
        }
    }
}

/// The tenant's records in a shared collection: `field` equals `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantField {
    pub dialect: Dialect,
    pub field: String,
    pub value: String,
    /// Pinecone: the shared namespaces a body may name (absent or `null` is `""`, the default
    /// namespace). Empty for Qdrant, whose shared collections are checked in the path.
    pub namespaces: Vec<String>,
}

pub(super) fn compile_metadata_filter(
    path: &str,
    raw: &RawVectorStore,
) -> Result<Rule, ConfigError> {
    let Some(dialect) = raw.dialect else {
        return err(
            format!("{path}.dialect"),
            "required for kind metadata_filter (qdrant or pinecone)",
        );
    };
    let field = raw.field.as_deref().unwrap_or(DEFAULT_FIELD);
    let valid_field = (1..=64).contains(&field.len())
        && field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if !valid_field {
        return err(
            format!("{path}.field"),
            "must be 1-64 characters of A-Z a-z 0-9 _ - (a top-level key)",
        );
    }
    let value = raw.value.as_deref().unwrap_or(DEFAULT_VALUE);
    check_value_template(&format!("{path}.value"), value)?;
    let (list, other) = match dialect {
        Dialect::Qdrant => (
            ("collections", &raw.collections),
            ("namespaces", &raw.namespaces),
        ),
        Dialect::Pinecone => (
            ("namespaces", &raw.namespaces),
            ("collections", &raw.collections),
        ),
    };
    if other.1.is_some() {
        return err(
            format!("{path}.{}", other.0),
            format!("not for dialect {}; use `{}`", dialect.name(), list.0),
        );
    }
    let Some(shared) = list.1.clone().filter(|l| !l.is_empty()) else {
        return err(
            format!("{path}.{}", list.0),
            format!(
                "required for dialect {}: the shared {} tenants may use (nothing else is \
                 reachable)",
                dialect.name(),
                list.0
            ),
        );
    };
    for (i, name) in shared.iter().enumerate() {
        let entry = format!("{path}.{}[{i}]", list.0);
        let valid = match dialect {
            // As it appears in a normalised path: unreserved characters, not a dot segment.
            Dialect::Qdrant => {
                (1..=255).contains(&name.len())
                    && name.bytes().all(is_unreserved)
                    && name != "."
                    && name != ".."
            }
            // "" is Pinecone's default namespace.
            Dialect::Pinecone => name.len() <= 512 && name.bytes().all(|b| b.is_ascii_graphic()),
        };
        if !valid {
            return err(
                entry,
                match dialect {
                    Dialect::Qdrant => "must be 1-255 characters of A-Z a-z 0-9 - . _ ~",
                    Dialect::Pinecone => {
                        "must be at most 512 printable ASCII characters, no spaces"
                    }
                },
            );
        }
        if shared.iter().take(i).any(|n| n == name) {
            return err(entry, "listed twice");
        }
    }
    Ok(Rule::MetadataFilter {
        dialect,
        field: field.to_string(),
        value: value.to_string(),
        shared,
    })
}

pub(super) fn qdrant_shared(
    request: &Request<'_>,
    tenant: TenantField,
    shared: &[String],
) -> Result<VectorRoute, PathRefusal> {
    let ["collections", collection, operation @ ..] = request.segments.as_slice() else {
        return Err(not_allowed(&format!(
            "qdrant operation {}",
            quoted(request.rest)
        )));
    };
    if !shared.iter().any(|c| c == collection) {
        return Err(not_shared("collection", collection));
    }
    let filter = |require_filter| BodyEdit::AndTenantFilter {
        tenant: tenant.clone(),
        require_filter,
    };
    let (edit, shape) = match (request.method, operation) {
        ("POST", ["points", "search" | "query" | "scroll" | "count"])
        | ("POST", ["points", "search" | "query", "groups"])
        | ("POST", ["points", "search", "matrix", "pairs" | "offsets"])
        | ("POST", ["facet"]) => (filter(false), Shape::Single),
        ("POST", ["points", "search" | "query", "batch"]) => (filter(false), Shape::Batch),
        ("POST", ["points", "delete"]) => (filter(true), Shape::Single),
        ("PUT", ["points"]) => (BodyEdit::StampTenant(tenant.clone()), Shape::Single),
        _ => {
            return Err(not_allowed(&format!(
                "{} {} on a shared collection",
                request.method,
                quoted(&operation.join("/"))
            )))
        }
    };
    Ok(request.body(request.unchanged(), edit, shape))
}

pub(super) fn pinecone_shared(
    request: &Request<'_>,
    tenant: TenantField,
) -> Result<VectorRoute, PathRefusal> {
    scan_query_with(request.query, "namespace", |named| {
        let named = if named.is_empty() { "" } else { named };
        if tenant.namespaces.iter().any(|n| n == named) {
            Ok(())
        } else {
            Err(not_shared("namespace", named))
        }
    })?;
    let edit = match (request.method, request.segments.as_slice()) {
        ("POST", ["query"]) => BodyEdit::AndTenantFilter {
            tenant,
            require_filter: false,
        },
        ("POST", ["vectors", "delete"]) => BodyEdit::AndTenantFilter {
            tenant,
            require_filter: true,
        },
        ("POST", ["vectors", "upsert"]) => BodyEdit::StampTenant(tenant),
        _ => {
            return Err(not_allowed(&format!(
                "{} {} on a shared index",
                request.method,
                quoted(request.rest)
            )))
        }
    };
    Ok(request.body(request.unchanged(), edit, Shape::Single))
}

/// Pinecone shared index: the body's namespace must be one of the store's `namespaces`.
pub(super) fn check_shared_namespace(
    body: &Object,
    tenant: &TenantField,
) -> Result<(), PathRefusal> {
    if tenant.dialect != Dialect::Pinecone {
        return Ok(());
    }
    let named = match body.get("namespace") {
        None | Some(Value::Null) => "",
        Some(Value::String(named)) => named.as_str(),
        Some(_) => return Err(invalid_body("`namespace` must be a string")),
    };
    if tenant.namespaces.iter().any(|n| n == named) {
        Ok(())
    } else {
        Err(not_shared("namespace", named))
    }
}

/// Metadata filter: refuses selection by id, then ands the tenant condition into `filter`.
pub(super) fn and_tenant_filter(
    request: &mut Object,
    tenant: &TenantField,
    require_filter: bool,
) -> Result<(), PathRefusal> {
    if let Some(Value::Object(query)) = request.get("query") {
        check_spellings(query, &RULE_KEYS)?;
    }
    if let Some(what) = selects_by_id(request, tenant.dialect) {
        return Err(not_allowed(&format!("{what} on a shared collection")));
    }
    let client_filter = match request.remove("filter") {
        None | Some(Value::Null) if require_filter => {
            return Err(not_allowed("this operation without a `filter`"))
        }
        None | Some(Value::Null) => None,
        Some(Value::Object(filter)) => Some(filter),
        Some(_) => return Err(invalid_body("`filter` must be an object")),
    };
    request.insert("filter".into(), tenant_filter(tenant, client_filter));
    Ok(())
}

/// What in a request selects records by id (or in another collection), if anything.
fn selects_by_id(request: &Object, dialect: Dialect) -> Option<&'static str> {
    let present = |key: &str| request.get(key).is_some_and(|v| !v.is_null());
    match dialect {
        Dialect::Qdrant => {
            if present("points") {
                Some("selecting points by id")
            } else if present("lookup_from") || present("with_lookup") {
                Some("a lookup in another collection")
            } else if request.get("query").is_some_and(query_uses_points) {
                Some("a query by point id or example")
            } else {
                None
            }
        }
        Dialect::Pinecone => {
            if present("id") || present("ids") {
                Some("selecting vectors by id")
            } else if present("deleteAll") {
                Some("deleteAll")
            } else if present("queries") {
                Some("legacy `queries`")
            } else {
                None
            }
        }
    }
}

/// A Qdrant `query` that reads stored points: an id, or recommend/discover/context examples
/// (other spellings of those keys were refused before).
fn query_uses_points(query: &Value) -> bool {
    match query {
        Value::Number(_) | Value::String(_) => true,
        Value::Object(q) => {
            ["recommend", "discover", "context"]
                .iter()
                .any(|k| q.contains_key(*k))
                || q.get("nearest")
                    .is_some_and(|n| matches!(n, Value::Number(_) | Value::String(_)))
        }
        _ => false,
    }
}

/// The tenant condition, and-ed with the client's filter when there is one.
fn tenant_filter(tenant: &TenantField, client_filter: Option<Object>) -> Value {
    let field = tenant.field.clone();
    let value = Value::String(tenant.value.clone());
    match tenant.dialect {
        Dialect::Qdrant => {
            let mut must = vec![serde_json::json!({"key": field, "match": {"value": value}})];
            must.extend(client_filter.map(Value::Object));
            serde_json::json!({ "must": must })
        }
        Dialect::Pinecone => {
            let mut condition = Object::new();
            condition.insert(field, serde_json::json!({ "$eq": value }));
            match client_filter {
                Some(filter) if !filter.is_empty() => {
                    serde_json::json!({"$and": [Value::Object(condition), Value::Object(filter)]})
                }
                _ => Value::Object(condition),
            }
        }
    }
}

/// Metadata filter writes: stamps the tenant field on every record of an upsert.
pub(super) fn stamp_records(body: &mut Object, tenant: &TenantField) -> Result<(), PathRefusal> {
    let (list, holder) = match tenant.dialect {
        Dialect::Qdrant => ("points", "payload"),
        Dialect::Pinecone => ("vectors", "metadata"),
    };
    let mut stamped = false;
    if let Some(records) = body.get_mut(list) {
        let Value::Array(records) = records else {
            return Err(invalid_body(format!("`{list}` must be a list")));
        };
        for record in records {
            let record = record
                .as_object_mut()
                .ok_or_else(|| invalid_body(format!("`{list}` must hold objects")))?;
            check_spellings(record, &RULE_KEYS)?;
            let metadata = record.entry(holder).or_insert(Value::Null);
            stamp(metadata, tenant)?;
        }
        stamped = true;
    }
    if tenant.dialect == Dialect::Qdrant {
        if let Some(batch) = body.get_mut("batch") {
            stamp_qdrant_batch(batch, tenant)?;
            stamped = true;
        }
    }
    if !stamped {
        return Err(invalid_body(format!("an upsert needs `{list}`")));
    }
    Ok(())
}

/// Qdrant's column form: `{"batch": {"ids": [...], "payloads": [...]}}`.
fn stamp_qdrant_batch(batch: &mut Value, tenant: &TenantField) -> Result<(), PathRefusal> {
    let batch = batch
        .as_object_mut()
        .ok_or_else(|| invalid_body("`batch` must be an object"))?;
    check_spellings(batch, &RULE_KEYS)?;
    let count = match batch.get("ids") {
        Some(Value::Array(ids)) => ids.len(),
        _ => return Err(invalid_body("`batch.ids` must be a list")),
    };
    let payloads = batch.entry("payloads").or_insert(Value::Null);
    if payloads.is_null() {
        *payloads = Value::Array(vec![Value::Null; count]);
    }
    let Value::Array(payloads) = payloads else {
        return Err(invalid_body("`batch.payloads` must be a list"));
    };
    payloads.iter_mut().try_for_each(|p| stamp(p, tenant))
}

/// Sets the tenant field in one record's payload or metadata (absent or `null` → created);
/// a different value already there is refused.
fn stamp(metadata: &mut Value, tenant: &TenantField) -> Result<(), PathRefusal> {
    if metadata.is_null() {
        *metadata = Value::Object(Object::new());
    }
    let Value::Object(metadata) = metadata else {
        return Err(invalid_body("record metadata must be an object"));
    };
    check_spellings(metadata, &[(&tenant.field, &fold_key(&tenant.field))])?;
    match metadata.get(&tenant.field) {
        None | Some(Value::Null) => {}
        Some(Value::String(v)) if *v == tenant.value => {}
        Some(Value::String(v)) => return Err(cross_tenant(&tenant.field, v)),
        Some(other) => return Err(cross_tenant(&tenant.field, &other.to_string())),
    }
    metadata.insert(tenant.field.clone(), Value::String(tenant.value.clone()));
    Ok(())
}

#[cfg(test)]
mod tests;
