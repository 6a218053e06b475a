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
//!   reference's `tenant` set, the `from` and `to` beacons' collections checked;
//!   `POST|PUT|DELETE /objects/C/{id}/references/{property}`: the body's beacons checked, as
//!   are the beacons of an object's reference properties;
//! - `POST /graphql`: `Get` and `Aggregate` queries, every collection given the tenant (see
//!   `graphql.rs` for what is refused);
//! - `GET /meta`, `GET /.well-known/{ready,live,openid-configuration}`: passed (clients ask at
//!   start);
//! - with `allow: ["read_schema"]`: `GET /schema` and `GET /schema/C`; with
//!   `allow: ["own_tenant"]`: `POST|PUT|DELETE /schema/C/tenants` whose body names only the
//!   tenant's own Weaviate tenant, `GET|HEAD /schema/C/tenants/{own}` (creating, updating and
//!   removing its own tenant; never listing tenants, which names everybody's).
//!
//! **With `collection`** (a collection per tenant, like `qdrant`): no Weaviate tenant is set (a
//! `tenant` the client sends is left: the collection is its own) and every collection named,
//! in paths, bodies, beacons and GraphQL (`Get`, `Aggregate`, `... on C`, `nearObject`
//! beacons), must be one of the tenant's (403 `cross_tenant_namespace`): the template expanded,
//! compared as Weaviate reads names (first letter upper-cased; so the template starts with an
//! upper-case letter or `{name}`). `GET /schema` and tenant management are refused.
//!
//! Refused (403 `vector_operation_not_allowed`): everything else: schema changes, tenant
//! listing, `/objects/{id}` without a class, `/graphql/batch`, `/nodes`, `/cluster`,
//! `/backups`, `/authz`, `/users`, `/aliases`, `/replication`, ... Weaviate's gRPC API
//! (`/weaviate.v1.Weaviate/*`, which the v4 clients use for queries and batch imports) is
//! refused for every confined store: it is not parsed (see `route`).
//!
//! Weaviate reads JSON with Go's case-insensitive decoder: a body key that is another spelling
//! of `tenant`, `class`, `objects`, `match`, `from`, `to`, `beacon`, `properties` is refused
//! (400 `invalid_body`).

use serde_json::Value;

use super::body::{check_spellings, Object};
use super::pinecone::scan_query_with;
use super::{
    check_value_template, cross_tenant, graphql, invalid_body, not_allowed, not_shared, BodyEdit,
    RawVectorStore, Request, Rule, Shape, VectorRoute, TENANT_PLACEHOLDERS,
};
use crate::policy::config_error::{err, ConfigError};
use crate::policy::denial::Reason;
use crate::policy::namespace::{expand, is_unreserved, push_escape, quoted, PathRefusal};

const DEFAULT_TENANT: &str = "{namespace}";
/// The keys the rules read, each with its folded spelling.
const KEYS: [(&str, &str); 8] = [
    ("tenant", "tenant"),
    ("class", "class"),
    ("objects", "objects"),
    ("match", "match"),
    ("from", "from"),
    ("to", "to"),
    ("beacon", "beacon"),
    ("properties", "properties"),
];

/// What a `weaviate` store allows beyond data (`allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeaviateAllow {
    /// `GET /schema`, `GET /schema/{collection}`.
    ReadSchema,
    /// Create, update and remove the tenant's own Weaviate tenant; read it.
    OwnTenant,
}

/// How a Weaviate body is confined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeaviateEdit {
    /// The tenant's Weaviate tenant (native multi-tenancy); `None` for a store with a
    /// collection per tenant, whose bodies keep the tenant they name.
    pub tenant: Option<String>,
    /// The collections the tenant may use.
    pub collections: Collections,
    pub body: WeaviateBody,
}

/// The collections (classes) a `weaviate` store lets a tenant use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collections {
    /// Any: native multi-tenancy confines the data.
    Any,
    /// Only these (`collections`): shared multi-tenant collections.
    Listed(Vec<String>),
    /// Collection per tenant (`collection`): only the tenant's own.
    Own(ClassNaming),
}

impl Collections {
    /// Whether a request may name `collection` (403 `cross_tenant_namespace` otherwise).
    /// Weaviate upper-cases the first letter of a collection name it reads in REST paths and
    /// bodies, so the name is compared in that form.
    pub fn check(&self, collection: &str) -> Result<(), PathRefusal> {
        match self {
            Collections::Any => Ok(()),
            Collections::Listed(shared) if shared.iter().any(|c| c == collection) => Ok(()),
            Collections::Listed(_) => Err(not_shared("collection", collection)),
            Collections::Own(naming) if naming.owns(&upper_first(collection)) => Ok(()),
            Collections::Own(_) => Err(cross_tenant("collection", collection)),
        }
    }
}

/// One tenant's Weaviate collections (`collection` template expanded): exactly `prefix`
/// (a template without `{name}`), or `prefix` + a client name + `suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassNaming {
    pub prefix: String,
    pub suffix: String,
    /// Whether the template holds `{name}`.
    pub named: bool,
    /// A character client names may not contain: the template's separator next to `{name}`,
    /// so that no name of one tenant spells another tenant's collection.
    pub forbidden: Option<char>,
}

impl ClassNaming {
    fn owns(&self, collection: &str) -> bool {
        if !self.named {
            return collection == self.prefix;
        }
        collection
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_suffix(self.suffix.as_str()))
            .is_some_and(|name| {
                !name.is_empty()
                    && name.bytes().all(|b| b == b'_' || b.is_ascii_alphanumeric())
                    && self.forbidden.is_none_or(|c| !name.contains(c))
            })
    }
}

/// A `collection` template, checked: expanded per tenant by [`ClassTemplate::for_tenant`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClassTemplate {
    template: String,
    forbidden: Option<char>,
}

impl ClassTemplate {
    pub(super) fn template(&self) -> &str {
        &self.template
    }

    pub(super) fn for_tenant(&self, tenant: &str, namespace: &str) -> ClassNaming {
        let expanded = expand(&self.template, tenant, namespace);
        let (prefix, suffix, named) = match expanded.split_once(NAME) {
            Some((prefix, suffix)) => (prefix.to_string(), suffix.to_string(), true),
            None => (expanded.clone(), String::new(), false),
        };
        ClassNaming {
            prefix,
            suffix,
            named,
            forbidden: self.forbidden,
        }
    }
}

const NAME: &str = "{name}";

/// Weaviate's reading of a collection name: the first letter upper-cased.
fn upper_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Checks a weaviate `collection` template: `{tenant}` or `{namespace}` once, `{name}` at most
/// once (with a separator between the two), literals of `A-Z a-z 0-9 _`, starting with an
/// upper-case letter or `{name}`: Weaviate upper-cases a collection's first letter, so a
/// template starting with the tenant would give tenants `acme` and `Acme` one collection.
fn parse_class_template(path: &str, template: &str) -> Result<ClassTemplate, ConfigError> {
    let names = template.matches(NAME).count();
    let found: Vec<(usize, &str)> = TENANT_PLACEHOLDERS
        .iter()
        .flat_map(|p| template.match_indices(p))
        .collect();
    let [(tenant_at, placeholder)] = found.as_slice() else {
        return err(path, "must contain exactly one of {tenant} or {namespace}");
    };
    if names > 1 {
        return err(path, "may contain {name} at most once");
    }
    let literal = template.replace(NAME, "").replace(placeholder, "");
    if literal.contains(['{', '}'])
        || !literal
            .bytes()
            .all(|b| b == b'_' || b.is_ascii_alphanumeric())
        || literal.len() > 64
    {
        return err(
            path,
            "besides its placeholders, at most 64 characters of A-Z a-z 0-9 _",
        );
    }
    let starts_ok = template.starts_with(NAME)
        || template
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_uppercase());
    if !starts_ok {
        return err(
            path,
            "must start with an upper-case letter or {name}: Weaviate upper-cases a \
             collection's first letter, so tenants acme and Acme would share one",
        );
    }
    let forbidden = match template.find(NAME) {
        None => None,
        Some(name_at) => {
            let tenant_end = tenant_at + placeholder.len();
            let separator = if *tenant_at < name_at {
                template
                    .get(tenant_end..name_at)
                    .and_then(|s| s.chars().last())
            } else {
                template
                    .get(name_at + NAME.len()..*tenant_at)
                    .and_then(|s| s.chars().next())
            };
            match separator {
                Some(c) => Some(c),
                None => {
                    return err(
                        path,
                        format!("needs a separator between {{name}} and {placeholder}, e.g. '_'"),
                    )
                }
            }
        }
    };
    Ok(ClassTemplate {
        template: template.to_string(),
        forbidden,
    })
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
    /// `POST|PUT|DELETE /objects/C/{id}/references/{property}`: a reference or a list of them.
    References,
    /// `POST /graphql`.
    Graphql,
    /// `POST|PUT|DELETE /schema/C/tenants`: a list of tenants, each the tenant's own.
    OwnTenants,
}

pub(super) fn compile_weaviate(path: &str, raw: &RawVectorStore) -> Result<Rule, ConfigError> {
    let mut allow = Vec::new();
    for (i, name) in raw.allow.iter().flatten().enumerate() {
        match name.as_str() {
            "read_schema" => allow.push(WeaviateAllow::ReadSchema),
            "own_tenant" => allow.push(WeaviateAllow::OwnTenant),
            _ => {
                return err(
                    format!("{path}.allow[{i}]"),
                    "for kind weaviate: read_schema or own_tenant",
                )
            }
        }
    }
    if let Some(template) = &raw.collection {
        // Collection per tenant: no Weaviate tenant is set, no shared list applies.
        for (field, present) in [
            ("tenant", raw.tenant.is_some()),
            ("collections", raw.collections.is_some()),
        ] {
            if present {
                return err(
                    format!("{path}.{field}"),
                    "not with collection: a weaviate store confines by collection per tenant \
                     or by native multi-tenancy, not both",
                );
            }
        }
        if let Some(i) = allow.iter().position(|a| *a == WeaviateAllow::OwnTenant) {
            return err(
                format!("{path}.allow[{i}]"),
                "own_tenant is for native multi-tenancy, not with collection",
            );
        }
        return Ok(Rule::Weaviate {
            tenant: None,
            collections: WeaviateCollections::Own(parse_class_template(
                &format!("{path}.collection"),
                template,
            )?),
            allow,
        });
    }
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
    Ok(Rule::Weaviate {
        tenant: Some(tenant.to_string()),
        collections: match &raw.collections {
            Some(listed) => WeaviateCollections::Listed(listed.clone()),
            None => WeaviateCollections::Any,
        },
        allow,
    })
}

/// A `weaviate` store's collections as configured (the tenant's own still a template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WeaviateCollections {
    Any,
    Listed(Vec<String>),
    Own(ClassTemplate),
}

impl WeaviateCollections {
    pub(super) fn for_tenant(&self, tenant: &str, namespace: &str) -> Collections {
        match self {
            WeaviateCollections::Any => Collections::Any,
            WeaviateCollections::Listed(listed) => Collections::Listed(listed.clone()),
            WeaviateCollections::Own(template) => {
                Collections::Own(template.for_tenant(tenant, namespace))
            }
        }
    }
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
    own: Option<&str>,
    collections: &Collections,
    allow: &[WeaviateAllow],
) -> Result<VectorRoute, PathRefusal> {
    let segments = match request.segments.as_slice() {
        ["v1", rest @ ..] => rest,
        all => all,
    };
    let shared = |collection: &str| collections.check(collection);
    let edit = |body| {
        BodyEdit::Weaviate(WeaviateEdit {
            tenant: own.map(str::to_string),
            collections: collections.clone(),
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
            // The body's beacons name the referenced collection: checked too.
            Ok(request.body(
                tenant_query(request, own, collections, false)?,
                edit(WeaviateBody::References),
                Shape::Single,
            ))
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
        // The whole schema names every collection: not with a collection per tenant.
        ("GET", ["schema"])
            if allow.contains(&WeaviateAllow::ReadSchema)
                && !matches!(collections, Collections::Own(_)) =>
        {
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
            if allow.contains(&WeaviateAllow::OwnTenant) && own.is_some() =>
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
            if Some(named.as_str()) != own {
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

/// The request's target with exactly one `tenant` query parameter, the tenant's own: each one
/// sent (however spelled) must be empty or own. `own` is `None` (a collection per tenant): the
/// query's tenant, if any, is kept as sent (the collection is the tenant's own).
/// `required_class`: a `class` parameter must name one of the tenant's collections (listing
/// objects of every collection is refused).
fn tenant_query(
    request: &Request<'_>,
    own: Option<&str>,
    collections: &Collections,
    required_class: bool,
) -> Result<String, PathRefusal> {
    let mut kept = match own {
        Some(own) => scan_query_with(request.query, "tenant", |named| {
            if named.is_empty() || named == own {
                Ok(())
            } else {
                Err(cross_tenant("Weaviate tenant", named))
            }
        })?,
        None => request
            .query
            .map(|q| q.split('&').filter(|p| !p.is_empty()).collect())
            .unwrap_or_default(),
    };
    if required_class {
        let mut classes = Vec::new();
        for p in &kept {
            let (key, value) = p.split_once('=').unwrap_or((p, ""));
            let key = super::pinecone::percent_decode(key, true)
                .ok_or_else(|| PathRefusal::new(Reason::InvalidPath, "query is not UTF-8"))?;
            if super::body::fold_key(&key) == "class" {
                classes.push(
                    super::pinecone::percent_decode(value, true).ok_or_else(|| {
                        PathRefusal::new(Reason::InvalidPath, "query is not UTF-8")
                    })?,
                );
            }
        }
        match classes.as_slice() {
            [class] => collections.check(class)?,
            [] => return Err(not_allowed("listing objects of every collection")),
            _ => return Err(invalid_body("`class` given twice")),
        }
    }
    let mut parameter = String::from("tenant=");
    if let Some(own) = own {
        for b in own.bytes() {
            if is_unreserved(b) {
                parameter.push(char::from(b));
            } else {
                push_escape(&mut parameter, b);
            }
        }
        kept.push(&parameter);
    }
    Ok(if kept.is_empty() {
        format!("{}{}", request.prefix, request.rest)
    } else {
        format!("{}{}?{}", request.prefix, request.rest, kept.join("&"))
    })
}

/// Confines a Weaviate body (decoded JSON) as `edit` says.
pub(super) fn rewrite(edit: &WeaviateEdit, body: &mut Value) -> Result<(), PathRefusal> {
    let collections = &edit.collections;
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
                Some(Value::String(class)) => collections.check(class),
                _ => Err(invalid_body("`match.class` must be a string")),
            }
        }
        WeaviateBody::BatchReferences => match body {
            Value::Array(references) => references.iter_mut().try_for_each(|r| {
                let reference = object(r)?;
                match reference.get("from") {
                    Some(Value::String(beacon)) => collections.check(beacon_collection(beacon)?)?,
                    _ => return Err(invalid_body("a reference needs a `from` beacon")),
                }
                match reference.get("to") {
                    Some(Value::String(beacon)) => check_beacon(collections, beacon)?,
                    _ => return Err(invalid_body("a reference needs a `to` beacon")),
                }
                set_tenant(reference, edit, false)
            }),
            _ => Err(invalid_body("batch references must be a list")),
        },
        WeaviateBody::References => {
            // One reference (`POST`, `DELETE`) or a list of them (`PUT`).
            let references = match body {
                Value::Array(list) => list.iter_mut().collect::<Vec<_>>(),
                one => vec![one],
            };
            references.into_iter().try_for_each(|r| {
                let reference = object(r)?;
                match reference.get("beacon") {
                    Some(Value::String(beacon)) => check_beacon(collections, beacon),
                    _ => Err(invalid_body("a reference needs a `beacon`")),
                }
            })
        }
        WeaviateBody::Graphql => {
            let body = object(body)?;
            let confined = match body.get("query") {
                Some(Value::String(query)) => {
                    graphql::confine(query, edit.tenant.as_deref(), collections)?
                }
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
                    Some(name) if Some(name) == edit.tenant.as_deref() => Ok(()),
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
/// Without a Weaviate tenant (a collection per tenant) the `tenant` is left as sent.
/// `class`: the object names a collection, which must be one the tenant may use, and so must
/// every collection its properties' cross-references (beacons) name.
fn set_tenant(object: &mut Object, edit: &WeaviateEdit, class: bool) -> Result<(), PathRefusal> {
    if class {
        match object.get("class") {
            Some(Value::String(name)) => edit.collections.check(name)?,
            _ => return Err(invalid_body("an object needs its `class`")),
        }
        if let Some(properties) = object.get("properties") {
            check_beacons(properties, &edit.collections)?;
        }
    }
    let Some(own) = &edit.tenant else {
        return Ok(());
    };
    match object.get("tenant") {
        None | Some(Value::Null) => {}
        Some(Value::String(named)) if named.is_empty() || named == own => {}
        Some(Value::String(named)) => return Err(cross_tenant("Weaviate tenant", named)),
        Some(_) => return Err(invalid_body("`tenant` must be a string")),
    }
    object.insert("tenant".into(), Value::String(own.clone()));
    Ok(())
}

/// Every cross-reference in an object's properties (a property whose value is a list of
/// `{"beacon": "weaviate://..."}`) must name a collection the tenant may use.
fn check_beacons(properties: &Value, collections: &Collections) -> Result<(), PathRefusal> {
    if *collections == Collections::Any {
        return Ok(());
    }
    let Value::Object(properties) = properties else {
        return Err(invalid_body("`properties` must be an object"));
    };
    let references = properties
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_object);
    for reference in references {
        check_spellings(reference, &[("beacon", "beacon")])?;
        match reference.get("beacon") {
            None => {}
            Some(Value::String(beacon)) => collections.check(beacon_collection(beacon)?)?,
            Some(_) => return Err(invalid_body("a `beacon` must be a string")),
        }
    }
    Ok(())
}

/// A beacon a reference points to: with collections to confine, it must name one of them (a
/// beacon without its collection is refused); with any collection, it goes as sent.
fn check_beacon(collections: &Collections, beacon: &str) -> Result<(), PathRefusal> {
    match collections {
        Collections::Any => Ok(()),
        _ => collections.check(beacon_collection(beacon)?),
    }
}

/// The collection of a beacon `weaviate://localhost/C/{id}[/property]` (a beacon without its
/// collection, Weaviate's older form, is refused).
pub(super) fn beacon_collection(beacon: &str) -> Result<&str, PathRefusal> {
    let rest = beacon
        .strip_prefix("weaviate://")
        .ok_or_else(|| invalid_body("a beacon starts with weaviate://"))?;
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [_host, class, _id, ..] if is_collection_name(&upper_first(class)) => Ok(class),
        _ => Err(invalid_body(format!(
            "beacon {} names no collection",
            quoted(beacon)
        ))),
    }
}

#[cfg(test)]
mod tests;
