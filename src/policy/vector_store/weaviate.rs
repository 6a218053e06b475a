//! **`weaviate`** (REST and GraphQL, native multi-tenancy: one Weaviate tenant per gateway
//! tenant, in shared multi-tenant collections). Every data request is set to the tenant's
//! Weaviate tenant (the `tenant` template); one that names another is refused (403
//! `cross_tenant_namespace`). Since every request carries a tenant, a request to a collection
//! without multi-tenancy fails at Weaviate, and one to a multi-tenant collection cannot go
//! without a tenant. `collections` (optional) lists the collections tenants may use; any other
//! is refused (403).
//!
//! Paths below the prefix, with or without Weaviate's `/v1`:
//! - `GET /objects?class=C` (a class is required), `GET|HEAD|PUT|PATCH|DELETE /objects/C/{id}`,
//!   `POST|PUT|DELETE /objects/C/{id}/references/{property}`: the `tenant` query parameter is
//!   set (other spellings of it refused); `POST /objects` and the bodies of `PUT|PATCH`: the
//!   body's `tenant` is set (its `class` must be a shared collection);
//! - `POST /batch/objects`: every object's `tenant` set; `DELETE /batch/objects`: the query's
//!   `tenant` set, the body's `match.class` checked; `POST /batch/references`: every
//!   reference's `tenant` set, the `from` beacon's collection checked;
//! - `POST /graphql`: `Get` and `Aggregate` queries, every collection given the tenant (see
//!   `graphql.rs` for what is refused);
//! - `GET /meta`, `GET /.well-known/{ready,live,openid-configuration}`: passed (clients ask at
//!   start);
//! - with `allow: ["read_schema"]`: `GET /schema` and `GET /schema/C`; with
//!   `allow: ["own_tenant"]`: `POST|PUT|DELETE /schema/C/tenants` whose body names only the
//!   tenant's own Weaviate tenant, `GET|HEAD /schema/C/tenants/{own}` (creating, updating and
//!   removing its own tenant; never listing tenants, which names everybody's).
//!
//! Refused (403 `vector_operation_not_allowed`): everything else: schema changes, tenant
//! listing, `/objects/{id}` without a class, `/graphql/batch`, `/nodes`, `/cluster`,
//! `/backups`, `/authz`, `/users`, `/aliases`, `/replication`, ... Weaviate's gRPC API
//! (`/weaviate.v1.Weaviate/*`, which the v4 clients use for queries and batch imports) is
//! refused for every confined store: it is not parsed (see `route`).
//!
//! Weaviate reads JSON with Go's case-insensitive decoder: a body key that is another spelling
//! of `tenant`, `class`, `objects`, `match`, `from` is refused (400 `invalid_body`).

use serde::Deserialize;
use serde_json::Value;

use super::body::{check_spellings, Object};
use super::pinecone::scan_query_with;
use super::{
    check_value_template, cross_tenant, graphql, invalid_body, not_allowed, not_shared, BodyEdit,
    RawVectorStore, Request, Rule, Shape, VectorRoute,
};
use crate::policy::config_error::{err, ConfigError};
use crate::policy::denial::Reason;
use crate::policy::namespace::{is_unreserved, push_escape, quoted, PathRefusal};

const DEFAULT_TENANT: &str = "{namespace}";
/// The keys the rules read, each with its folded spelling.
const KEYS: [(&str, &str); 5] = [
    ("tenant", "tenant"),
    ("class", "class"),
    ("objects", "objects"),
    ("match", "match"),
    ("from", "from"),
];

/// What a `weaviate` store allows beyond data (`allow`).
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WeaviateAllow {
    /// `GET /schema`, `GET /schema/{collection}`.
    ReadSchema,
    /// Create, update and remove the tenant's own Weaviate tenant; read it.
    OwnTenant,
}

/// How a Weaviate body is confined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeaviateEdit {
    /// The tenant's Weaviate tenant.
    pub tenant: String,
    /// The collections tenants may use (`None`: any).
    pub collections: Option<Vec<String>>,
    pub body: WeaviateBody,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeaviateBody {
    /// One object (`POST /objects`, `PUT|PATCH /objects/C/{id}`).
    Object,
    /// `POST /batch/objects`: `objects`.
    BatchObjects,
    /// `DELETE /batch/objects`: `match.class`.
    BatchDelete,
    /// `POST /batch/references`: a list of references.
    BatchReferences,
    /// `POST /graphql`.
    Graphql,
    /// `POST|PUT|DELETE /schema/C/tenants`: a list of tenants, each the tenant's own.
    OwnTenants,
}

pub(super) fn compile_weaviate(path: &str, raw: &RawVectorStore) -> Result<Rule, ConfigError> {
    let tenant = raw.tenant.as_deref().unwrap_or(DEFAULT_TENANT);
    check_value_template(&format!("{path}.tenant"), tenant)?;
    if let Some(collections) = &raw.collections {
        for (i, c) in collections.iter().enumerate() {
            if !is_collection_name(c) {
                return err(
                    format!("{path}.collections[{i}]"),
                    "a Weaviate collection: an upper-case letter, then A-Z a-z 0-9 _",
                );
            }
        }
    }
    let mut allow = Vec::new();
    for (i, name) in raw.allow.iter().flatten().enumerate() {
        match serde_json::from_value::<WeaviateAllow>(Value::String(name.clone())) {
            Ok(a) => allow.push(a),
            Err(_) => {
                return err(
                    format!("{path}.allow[{i}]"),
                    "for kind weaviate: read_schema or own_tenant",
                )
            }
        }
    }
    Ok(Rule::Weaviate {
        tenant: tenant.to_string(),
        collections: raw.collections.clone(),
        allow,
    })
}

/// Weaviate's collection (class) names: `/^[A-Z][_0-9A-Za-z]*$/`.
fn is_collection_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_uppercase())
        && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
        && name.len() <= 255
}

pub(super) fn weaviate(
    request: &Request<'_>,
    own: &str,
    collections: Option<&[String]>,
    allow: &[WeaviateAllow],
) -> Result<VectorRoute, PathRefusal> {
    let segments = match request.segments.as_slice() {
        ["v1", rest @ ..] => rest,
        all => all,
    };
    let shared = |collection: &str| check_collection(collections, collection);
    let edit = |body| {
        BodyEdit::Weaviate(WeaviateEdit {
            tenant: own.to_string(),
            collections: collections.map(<[String]>::to_vec),
            body,
        })
    };
    let with_body = |body| Ok(request.body(request.unchanged(), edit(body), Shape::Single));
    let with_tenant_query = |required_class: bool| -> Result<VectorRoute, PathRefusal> {
        Ok(VectorRoute::Forward {
            path: tenant_query(request, own, collections, required_class)?,
        })
    };
    match (request.method, segments) {
        ("GET", ["objects"]) => with_tenant_query(true),
        ("POST", ["objects"]) => with_body(WeaviateBody::Object),
        ("GET" | "HEAD" | "DELETE", ["objects", class, _id]) => {
            shared(class)?;
            with_tenant_query(false)
        }
        ("PUT" | "PATCH", ["objects", class, _id]) => {
            shared(class)?;
            Ok(request.body(
                tenant_query(request, own, collections, false)?,
                edit(WeaviateBody::Object),
                Shape::Single,
            ))
        }
        ("POST" | "PUT" | "DELETE", ["objects", class, _id, "references", _property]) => {
            shared(class)?;
            with_tenant_query(false)
        }
        ("POST", ["batch", "objects"]) => with_body(WeaviateBody::BatchObjects),
        ("DELETE", ["batch", "objects"]) => Ok(request.body(
            tenant_query(request, own, collections, false)?,
            edit(WeaviateBody::BatchDelete),
            Shape::Single,
        )),
        ("POST", ["batch", "references"]) => with_body(WeaviateBody::BatchReferences),
        ("POST", ["graphql"]) => with_body(WeaviateBody::Graphql),
        ("GET", ["meta"]) | ("GET", [".well-known", "ready" | "live" | "openid-configuration"]) => {
            Ok(VectorRoute::Forward {
                path: request.unchanged(),
            })
        }
        ("GET", ["schema"]) if allow.contains(&WeaviateAllow::ReadSchema) => {
            Ok(VectorRoute::Forward {
                path: request.unchanged(),
            })
        }
        ("GET", ["schema", class]) if allow.contains(&WeaviateAllow::ReadSchema) => {
            shared(class)?;
            Ok(VectorRoute::Forward {
                path: request.unchanged(),
            })
        }
        ("POST" | "PUT" | "DELETE", ["schema", class, "tenants"])
            if allow.contains(&WeaviateAllow::OwnTenant) =>
        {
            shared(class)?;
            with_body(WeaviateBody::OwnTenants)
        }
        ("GET" | "HEAD", ["schema", class, "tenants", name])
            if allow.contains(&WeaviateAllow::OwnTenant) =>
        {
            shared(class)?;
            let named = super::pinecone::percent_decode(name, false)
                .ok_or_else(|| PathRefusal::new(Reason::InvalidPath, "tenant is not UTF-8"))?;
            if named != own {
                return Err(cross_tenant("Weaviate tenant", &named));
            }
            Ok(VectorRoute::Forward {
                path: request.unchanged(),
            })
        }
        (_, ["schema", ..]) => Err(not_allowed("Weaviate schema and tenant management")),
        (_, ["objects", _]) => Err(not_allowed("Weaviate objects without their collection")),
        _ => Err(not_allowed(&format!(
            "weaviate operation {} {}",
            request.method,
            quoted(request.rest)
        ))),
    }
}

fn check_collection(collections: Option<&[String]>, collection: &str) -> Result<(), PathRefusal> {
    match collections {
        Some(shared) if !shared.iter().any(|c| c == collection) => {
            Err(not_shared("collection", collection))
        }
        _ => Ok(()),
    }
}

/// The request's target with exactly one `tenant` query parameter, the tenant's own: each one
/// sent (however spelled) must be empty or own. `required_class`: a `class` parameter must name
/// a shared collection (listing objects of every collection is refused).
fn tenant_query(
    request: &Request<'_>,
    own: &str,
    collections: Option<&[String]>,
    required_class: bool,
) -> Result<String, PathRefusal> {
    let mut kept = scan_query_with(request.query, "tenant", |named| {
        if named.is_empty() || named == own {
            Ok(())
        } else {
            Err(cross_tenant("Weaviate tenant", named))
        }
    })?;
    if required_class {
        let classes: Vec<String> = kept
            .iter()
            .filter_map(|p| {
                let (key, value) = p.split_once('=').unwrap_or((p, ""));
                let key = super::pinecone::percent_decode(key, true)?;
                (super::body::fold_key(&key) == "class")
                    .then(|| super::pinecone::percent_decode(value, true))
                    .flatten()
            })
            .collect();
        match classes.as_slice() {
            [class] => check_collection(collections, class)?,
            [] => return Err(not_allowed("listing objects of every collection")),
            _ => return Err(invalid_body("`class` given twice")),
        }
    }
    let mut parameter = String::from("tenant=");
    for b in own.bytes() {
        if is_unreserved(b) {
            parameter.push(char::from(b));
        } else {
            push_escape(&mut parameter, b);
        }
    }
    kept.push(&parameter);
    Ok(format!(
        "{}{}?{}",
        request.prefix,
        request.rest,
        kept.join("&")
    ))
}

/// Confines a Weaviate body (decoded JSON) as `edit` says.
pub(super) fn rewrite(edit: &WeaviateEdit, body: &mut Value) -> Result<(), PathRefusal> {
    let shared = edit.collections.as_deref();
    match edit.body {
        WeaviateBody::Object => set_tenant(object(body)?, edit, true),
        WeaviateBody::BatchObjects => {
            let body = object(body)?;
            match body.get_mut("objects") {
                Some(Value::Array(objects)) => objects
                    .iter_mut()
                    .try_for_each(|o| set_tenant(object(o)?, edit, true)),
                _ => Err(invalid_body("a batch needs an `objects` list")),
            }
        }
        WeaviateBody::BatchDelete => {
            let body = object(body)?;
            if body.contains_key("tenant") {
                return Err(invalid_body(
                    "the tenant of a batch delete is a query parameter",
                ));
            }
            let class = body
                .get_mut("match")
                .map(object)
                .transpose()?
                .and_then(|m| m.get("class"));
            match class {
                Some(Value::String(class)) => check_collection(shared, class),
                _ => Err(invalid_body("`match.class` must be a string")),
            }
        }
        WeaviateBody::BatchReferences => match body {
            Value::Array(references) => references.iter_mut().try_for_each(|r| {
                let reference = object(r)?;
                let from = match reference.get("from") {
                    Some(Value::String(from)) => from.clone(),
                    _ => return Err(invalid_body("a reference needs a `from` beacon")),
                };
                check_collection(shared, beacon_collection(&from)?)?;
                set_tenant(reference, edit, false)
            }),
            _ => Err(invalid_body("batch references must be a list")),
        },
        WeaviateBody::Graphql => {
            let body = object(body)?;
            let confined = match body.get("query") {
                Some(Value::String(query)) => graphql::confine(query, &edit.tenant, shared)?,
                _ => return Err(invalid_body("a GraphQL request needs a `query` string")),
            };
            body.insert("query".into(), Value::String(confined));
            Ok(())
        }
        WeaviateBody::OwnTenants => match body {
            Value::Array(tenants) => tenants.iter_mut().try_for_each(|t| {
                let name = match t {
                    Value::String(name) => Some(name.as_str()),
                    Value::Object(tenant) => {
                        check_spellings(tenant, &[("name", "name")])?;
                        tenant.get("name").and_then(Value::as_str)
                    }
                    _ => None,
                };
                match name {
                    Some(name) if name == edit.tenant => Ok(()),
                    Some(name) => Err(cross_tenant("Weaviate tenant", name)),
                    None => Err(invalid_body("each tenant needs a `name` string")),
                }
            }),
            _ => Err(invalid_body("tenants must be a list")),
        },
    }
}

fn object(value: &mut Value) -> Result<&mut Object, PathRefusal> {
    let object = value
        .as_object_mut()
        .ok_or_else(|| invalid_body("expected a JSON object"))?;
    check_spellings(object, &KEYS)?;
    Ok(object)
}

/// Sets an object's (or reference's) `tenant` to the tenant's: absent, `null`, `""` or own.
/// `class`: the object names a collection, which must be a shared one.
fn set_tenant(object: &mut Object, edit: &WeaviateEdit, class: bool) -> Result<(), PathRefusal> {
    if class {
        match object.get("class") {
            Some(Value::String(name)) => check_collection(edit.collections.as_deref(), name)?,
            _ => return Err(invalid_body("an object needs its `class`")),
        }
    }
    match object.get("tenant") {
        None | Some(Value::Null) => {}
        Some(Value::String(named)) if named.is_empty() || *named == edit.tenant => {}
        Some(Value::String(named)) => return Err(cross_tenant("Weaviate tenant", named)),
        Some(_) => return Err(invalid_body("`tenant` must be a string")),
    }
    object.insert("tenant".into(), Value::String(edit.tenant.clone()));
    Ok(())
}

/// The collection of a beacon `weaviate://localhost/C/{id}[/property]`.
fn beacon_collection(beacon: &str) -> Result<&str, PathRefusal> {
    let rest = beacon
        .strip_prefix("weaviate://")
        .ok_or_else(|| invalid_body("a beacon starts with weaviate://"))?;
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [_host, class, _id, ..] if is_collection_name(class) => Ok(class),
        _ => Err(invalid_body(format!(
            "beacon {} names no collection",
            quoted(beacon)
        ))),
    }
}

#[cfg(test)]
mod tests;
