//! Vector stores (contract: `vector_stores`): confining a tenant's vector-store requests to that
//! tenant's collections, namespaces or records.
//!
//! Each entry of the top-level `vector_stores` list claims the requests whose normalised path is
//! its `path_prefix` or below it (the longest matching prefix wins) and confines them by its
//! `kind`. Such requests do not get `routing.path_prefix` applied (they are confined by their own
//! rule, and the prefix stays in the path: strip it with the Envoy route's `prefix_rewrite` if the
//! store does not expect it); `routing.authority` and `routing.namespace_header` do apply, so a
//! route that picks a per-tenant backend by host never sees the client's `Host`. Every operation
//! that is not listed below is refused (403 `vector_operation_not_allowed`): new store APIs stay
//! closed until they are reviewed.
//!
//! Paths an Envoy route with a plain `prefix: /qdrant` would also send to the store, but that are
//! not the store's path (the prefix in another case, or followed by anything but `/`:
//! `/qdrant.Points/Search` is Qdrant's gRPC API, `/qdrant;x/...` a path parameter, `/QDRANT/...`)
//! are refused (400 `invalid_path`) rather than routed as ordinary paths: the filter cannot know
//! how the route table treats them. So is a `;` in the query string of a store request (some
//! servers split parameters at `;` too, so `?namespace=own;namespace=other` could read as two).
//!
//! ```json
//! "vector_stores": [
//!   {"path_prefix": "/qdrant", "kind": "qdrant",
//!    "collection": "{namespace}~{name}", "list_collections": "filter"},
//!   {"path_prefix": "/pinecone", "kind": "pinecone", "namespace": "{namespace}"},
//!   {"path_prefix": "/search", "kind": "metadata_filter", "dialect": "qdrant",
//!    "field": "tenant_id", "value": "{tenant}", "collections": ["docs"],
//!    "max_body_bytes": 1048576}
//! ]
//! ```
//!
//! | field | kinds | default | meaning |
//! |---|---|---|---|
//! | `path_prefix` | all | required | Normalised path prefix (`/` then segments, no trailing `/`). |
//! | `kind` | all | required | `qdrant` (collection per tenant), `pinecone` (namespace per tenant), `metadata_filter` (one shared collection, records tagged with the tenant), `weaviate` (native multi-tenancy), `chroma` (tenant and database per tenant). |
//! | `max_body_bytes` | all | `1048576` | Largest request body the filter buffers to rewrite (1 to 16777216); a larger one is refused with 413 `body_too_large`. Also caps a buffered `GET /collections` response. |
//! | `collection` | `qdrant`, `weaviate` | `{namespace}~{name}` (`qdrant`), none (`weaviate`) | The tenant's collection for the client's `{name}`: `{name}` once, `{tenant}` or `{namespace}` once, a non-empty separator between them, literals of `A-Z a-z 0-9 . _ - ~`. Weaviate: a collection per tenant instead of native multi-tenancy; `{name}` at most once, literals of `A-Z a-z 0-9 _`, starting with an upper-case letter or `{name}`. |
//! | `list_collections` | `qdrant` | `filter` | `GET /collections`: `filter` (only the tenant's collections, under the client's names) or `deny`. |
//! | `namespace` | `pinecone` | `{namespace}` | The tenant's Pinecone namespace: `{tenant}` or `{namespace}` once, printable ASCII. |
//! | `dialect` | `metadata_filter` | required | `qdrant` or `pinecone`: the store's API. |
//! | `field` | `metadata_filter` | `tenant_id` | Top-level payload (Qdrant) or metadata (Pinecone) key holding the tenant: 1-64 of `A-Z a-z 0-9 _ -`. |
//! | `value` | `metadata_filter` | `{tenant}` | The value of `field` for the tenant: `{tenant}` or `{namespace}` once, printable ASCII. |
//! | `collections` | `metadata_filter`, dialect `qdrant` | required | The shared collections (1-255 of `A-Z a-z 0-9 - . _ ~`, non-empty list): any other collection is refused (403 `cross_tenant_namespace`). |
//! | `namespaces` | `metadata_filter`, dialect `pinecone` | required | The shared namespaces (printable ASCII without spaces, `""` for the default namespace; non-empty list): a body `namespace` (absent or `null` is `""`) or `namespace` query parameter naming another is refused (403 `cross_tenant_namespace`). |
//! | `tenant` | `weaviate` (without `collection`), `chroma` | `{namespace}` | The tenant's Weaviate tenant (`{tenant}` or `{namespace}` once) or Chroma tenant (at most one placeholder). |
//! | `database` | `chroma` | `default_database` | The tenant's Chroma database; `tenant` or `database` holds a placeholder. |
//! | `allow` | `weaviate`, `chroma` | none | Weaviate: `read_schema`, `own_tenant`; Chroma: `create_tenant`, `create_database` (own names only). |
//!
//! One file per kind: `qdrant.rs` (collection per tenant), `pinecone.rs` (namespace per tenant),
//! `metadata_filter.rs` (shared collections and namespaces, both dialects), `weaviate.rs`
//! (native multi-tenancy; `graphql.rs` confines its GraphQL queries), `chroma.rs` (tenant and
//! database in the path); `body.rs` holds what every body rule shares. A new kind is a [`Kind`] and a `Rule` variant, a file of its own, and
//! an arm in `compile_store`, `check_kind_fields`, `VectorStores::templates` and [`route`] (and
//! in [`rewrite_body`] for a new [`BodyEdit`]).

use serde::Deserialize;
use serde_json::Value;

use crate::policy::config_error::{err, ConfigError};
use crate::policy::denial::Reason;
use crate::policy::namespace::{expand, is_unreserved, quoted, PathRefusal, RequestPath};
use crate::policy::sorted;
use crate::policy::word::words;

mod body;
mod chroma;
mod graphql;
mod metadata_filter;
mod pinecone;
mod qdrant;
mod weaviate;

use body::{check_spellings, for_each_request, RULE_KEYS};
use chroma::{check_name, chroma, compile_chroma, ChromaAllow};
use metadata_filter::{
    and_tenant_filter, check_shared_namespace, compile_metadata_filter, pinecone_shared,
    qdrant_shared, stamp_records,
};
use pinecone::{compile_pinecone, pinecone, set_namespace};
use qdrant::{compile_qdrant, qdrant, wrap_collections, CollectionTemplate};
use weaviate::{compile_weaviate, weaviate, WeaviateAllow, WeaviateCollections};

pub use metadata_filter::{Dialect, TenantField};
pub use qdrant::{filter_response, CollectionNaming, ListCollections};
pub use weaviate::{ClassNaming, Collections, WeaviateBody, WeaviateEdit};

const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
const LARGEST_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

// === The contract ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Qdrant,
    Pinecone,
    MetadataFilter,
    Weaviate,
    Chroma,
}

words!(Kind: "enum Kind", Qdrant = "qdrant", Pinecone = "pinecone", MetadataFilter = "metadata_filter", Weaviate = "weaviate", Chroma = "chroma");

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Qdrant => "qdrant",
            Kind::Pinecone => "pinecone",
            Kind::MetadataFilter => "metadata_filter",
            Kind::Weaviate => "weaviate",
            Kind::Chroma => "chroma",
        }
    }
}

/// One `vector_stores` entry as written by operators.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawVectorStore {
    path_prefix: String,
    kind: Kind,
    collection: Option<String>,
    list_collections: Option<ListCollections>,
    namespace: Option<String>,
    dialect: Option<Dialect>,
    field: Option<String>,
    value: Option<String>,
    /// `metadata_filter` with dialect `qdrant`: the shared collections; `weaviate`: the
    /// collections tenants may use.
    collections: Option<Vec<String>>,
    /// `metadata_filter` with dialect `pinecone`: the shared namespaces (`""` is the default
    /// namespace).
    namespaces: Option<Vec<String>>,
    max_body_bytes: Option<u64>,
    /// `weaviate`, `chroma`: the tenant's Weaviate or Chroma tenant (a template).
    tenant: Option<String>,
    /// `chroma`: the tenant's Chroma database (a template).
    database: Option<String>,
    /// `weaviate`, `chroma`: what the store allows besides data.
    allow: Option<Vec<String>>,
}

// === The compiled configuration ===

/// The validated `vector_stores`, longest prefix first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VectorStores {
    stores: Vec<VectorStore>,
}

impl VectorStores {
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// The templates that place tenants, as (field path, template): each holds `{tenant}` or
    /// `{namespace}`.
    pub fn templates(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = self
            .stores
            .iter()
            .map(|s| {
                let path = format!("vector_stores[{}]", s.position);
                match &s.rule {
                    Rule::Qdrant { collection, .. } => (
                        format!("{path}.collection"),
                        collection.placeholder.as_str(),
                    ),
                    Rule::Pinecone { namespace } => {
                        (format!("{path}.namespace"), namespace.as_str())
                    }
                    Rule::MetadataFilter { value, .. } => (format!("{path}.value"), value.as_str()),
                    Rule::Weaviate {
                        collections: WeaviateCollections::Own(template),
                        ..
                    } => (format!("{path}.collection"), template.template()),
                    Rule::Weaviate { tenant, .. } => (
                        format!("{path}.tenant"),
                        tenant.as_deref().unwrap_or_default(),
                    ),
                    Rule::Chroma {
                        tenant, database, ..
                    } => {
                        if TENANT_PLACEHOLDERS.iter().any(|p| tenant.contains(p)) {
                            (format!("{path}.tenant"), tenant.as_str())
                        } else {
                            (format!("{path}.database"), database.as_str())
                        }
                    }
                }
            })
            .collect();
        sorted::sort_by(&mut out, |(path, _)| (0, path));
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct VectorStore {
    /// Index in the configured list (for error paths).
    position: usize,
    path_prefix: String,
    max_body_bytes: usize,
    rule: Rule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Qdrant {
        collection: CollectionTemplate,
        list_collections: ListCollections,
    },
    Pinecone {
        namespace: String,
    },
    MetadataFilter {
        dialect: Dialect,
        field: String,
        value: String,
        /// The shared collections (dialect qdrant) or namespaces (dialect pinecone) requests
        /// may name; nothing else.
        shared: Vec<String>,
    },
    Weaviate {
        /// The tenant's Weaviate tenant (a template); `None` with a collection per tenant.
        tenant: Option<String>,
        collections: WeaviateCollections,
        allow: Vec<WeaviateAllow>,
    },
    Chroma {
        tenant: String,
        database: String,
        allow: Vec<ChromaAllow>,
    },
}

// === Validation ===

/// Validates the `vector_stores` list.
pub fn compile(raw: Vec<RawVectorStore>) -> Result<VectorStores, ConfigError> {
    let mut stores: Vec<VectorStore> = Vec::new();
    for (i, entry) in raw.into_iter().enumerate() {
        let path = format!("vector_stores[{i}]");
        let store = compile_store(i, &path, entry)?;
        if let Some(j) = stores
            .iter()
            .position(|s| s.path_prefix == store.path_prefix)
        {
            return err(
                format!("{path}.path_prefix"),
                format!("same prefix as vector_stores[{j}]"),
            );
        }
        stores.push(store);
    }
    // Longest prefix first.
    sorted::sort_by(&mut stores, |s| {
        (
            u64::MAX - u64::try_from(s.path_prefix.len()).unwrap_or(u64::MAX),
            "",
        )
    });
    Ok(VectorStores { stores })
}

fn compile_store(
    position: usize,
    path: &str,
    raw: RawVectorStore,
) -> Result<VectorStore, ConfigError> {
    check_prefix(&format!("{path}.path_prefix"), &raw.path_prefix)?;
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if !(1..=LARGEST_MAX_BODY_BYTES).contains(&max_body_bytes) {
        return err(
            format!("{path}.max_body_bytes"),
            format!("must be between 1 and {LARGEST_MAX_BODY_BYTES}"),
        );
    }
    check_kind_fields(path, &raw)?;
    let rule = match raw.kind {
        Kind::Qdrant => compile_qdrant(path, &raw)?,
        Kind::Pinecone => compile_pinecone(path, &raw)?,
        Kind::MetadataFilter => compile_metadata_filter(path, &raw)?,
        Kind::Weaviate => compile_weaviate(path, &raw)?,
        Kind::Chroma => compile_chroma(path, &raw)?,
    };
    Ok(VectorStore {
        position,
        path_prefix: raw.path_prefix,
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
        rule,
    })
}

/// Refuses the fields that belong to another kind than the entry's.
fn check_kind_fields(path: &str, raw: &RawVectorStore) -> Result<(), ConfigError> {
    use Kind::{Chroma, MetadataFilter, Pinecone, Qdrant, Weaviate};
    let owned: [(&str, bool, &[Kind]); 11] = [
        ("collection", raw.collection.is_some(), &[Qdrant, Weaviate]),
        (
            "list_collections",
            raw.list_collections.is_some(),
            &[Qdrant],
        ),
        ("namespace", raw.namespace.is_some(), &[Pinecone]),
        ("dialect", raw.dialect.is_some(), &[MetadataFilter]),
        ("field", raw.field.is_some(), &[MetadataFilter]),
        ("value", raw.value.is_some(), &[MetadataFilter]),
        (
            "collections",
            raw.collections.is_some(),
            &[MetadataFilter, Weaviate],
        ),
        ("namespaces", raw.namespaces.is_some(), &[MetadataFilter]),
        ("tenant", raw.tenant.is_some(), &[Weaviate, Chroma]),
        ("database", raw.database.is_some(), &[Chroma]),
        ("allow", raw.allow.is_some(), &[Weaviate, Chroma]),
    ];
    for (field, present, owners) in owned {
        if present && !owners.contains(&raw.kind) {
            let kinds: Vec<&str> = owners.iter().map(|k| k.as_str()).collect();
            return err(
                format!("{path}.{field}"),
                format!("only for kind {}", kinds.join(" or ")),
            );
        }
    }
    Ok(())
}

/// A prefix in normalised form: `/` then non-dot segments of path characters, no trailing `/`.
fn check_prefix(path: &str, prefix: &str) -> Result<(), ConfigError> {
    let segment_ok = |s: &str| {
        !matches!(s, "" | "." | "..")
            && s.bytes()
                .all(|b| is_unreserved(b) || b"!$&'()*+,;=:@".contains(&b))
    };
    let valid = prefix
        .strip_prefix('/')
        .is_some_and(|rest| rest.split('/').all(segment_ok));
    if !valid {
        return err(
            path,
            "must be a normalised path: '/' then segments of A-Z a-z 0-9 - . _ ~ ! $ & ' ( ) * + , ; = : @, \
             no '.' or '..' segment, no trailing '/'",
        );
    }
    Ok(())
}

const TENANT_PLACEHOLDERS: [&str; 2] = ["{tenant}", "{namespace}"];

/// A template holding `{tenant}` or `{namespace}` exactly once, otherwise printable ASCII.
fn check_value_template(path: &str, template: &str) -> Result<(), ConfigError> {
    let placeholders: usize = TENANT_PLACEHOLDERS
        .iter()
        .map(|p| template.matches(p).count())
        .sum();
    if placeholders != 1 {
        return err(path, "must contain exactly one of {tenant} or {namespace}");
    }
    let literal = template.replace("{tenant}", "").replace("{namespace}", "");
    if literal.contains(['{', '}']) || !literal.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return err(
            path,
            "only the placeholders {tenant} and {namespace}, and printable ASCII",
        );
    }
    if literal.len() > 128 {
        return err(path, "at most 128 characters besides the placeholder");
    }
    Ok(())
}

// === Decisions ===

/// What to do with a request, as far as vector stores are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VectorRoute {
    /// No vector store claims the path: normal routing applies.
    NotVectorStore,
    /// Forward with this `:path` (with query); no body work.
    Forward { path: String },
    /// Buffer the request body (at most `plan.max_bytes`, else 413), pass it to
    /// [`rewrite_body`], forward the result with this `:path`.
    RewriteBody { path: String, plan: BodyPlan },
    /// Forward with this `:path`; buffer the response body (at most `plan.max_bytes`) and
    /// replace it by [`filter_response`]'s result.
    FilterResponse { path: String, plan: ResponsePlan },
    /// Refuse the request.
    Deny(PathRefusal),
}

/// How to rewrite a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPlan {
    /// The largest body the shell may buffer; beyond it, 413 `body_too_large`.
    pub max_bytes: usize,
    pub edit: BodyEdit,
    /// Where the requests sit in the body.
    pub shape: Shape,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The body is one request (with its `prefetch` requests, for Qdrant queries).
    Single,
    /// The body's `searches` list holds the requests (Qdrant `.../batch`).
    Batch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEdit {
    /// Qdrant, collection per tenant: wrap collection names in `init_from`, `lookup_from` and
    /// `with_lookup` like the path's.
    WrapCollections(CollectionNaming),
    /// Pinecone: the body's `namespace` must be absent, empty or this; it is set to this.
    SetNamespace { namespace: String },
    /// Metadata filter: and the tenant condition into every request's `filter`; refuse
    /// selection by id. `require_filter`: refuse a request without a client filter (deletes).
    AndTenantFilter {
        tenant: TenantField,
        require_filter: bool,
    },
    /// Metadata filter: stamp the tenant field on every written record.
    StampTenant(TenantField),
    /// Weaviate: the tenant set on every object, reference and GraphQL collection.
    Weaviate(WeaviateEdit),
    /// Chroma: a creation body's `name` must be this.
    NameIs { name: String },
}

/// How to filter a response body (Qdrant `GET /collections`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsePlan {
    /// The largest response the shell may buffer; beyond it, do not forward the body.
    pub max_bytes: usize,
    pub collections: CollectionNaming,
}

/// The request facts a store rule looks at.
struct Request<'a> {
    method: &'a str,
    /// The store's prefix, as in the path.
    prefix: &'a str,
    /// The path below the prefix: empty or starting with `/`.
    rest: &'a str,
    /// The non-empty segments of `rest`.
    segments: Vec<&'a str>,
    query: Option<&'a str>,
    max_bytes: usize,
}

impl Request<'_> {
    fn target(&self, path: String) -> String {
        match self.query {
            Some(query) => format!("{path}?{query}"),
            None => path,
        }
    }

    fn unchanged(&self) -> String {
        self.target(format!("{}{}", self.prefix, self.rest))
    }

    fn body(&self, path: String, edit: BodyEdit, shape: Shape) -> VectorRoute {
        VectorRoute::RewriteBody {
            path,
            plan: BodyPlan {
                max_bytes: self.max_bytes,
                edit,
                shape,
            },
        }
    }
}

fn not_allowed(operation: &str) -> PathRefusal {
    PathRefusal::new(
        Reason::VectorOperationNotAllowed,
        format!("{operation} is not allowed through the gateway"),
    )
}

fn invalid_body(detail: impl AsRef<str>) -> PathRefusal {
    PathRefusal::new(Reason::InvalidBody, detail)
}

/// A collection or namespace that a shared (`metadata_filter`) store does not list: another
/// tenant's, as far as the gateway knows.
fn not_shared(what: &str, tried: &str) -> PathRefusal {
    PathRefusal::new(
        Reason::CrossTenantNamespace,
        format!(
            "{what} {} is not one of the store's shared {what}s",
            quoted(tried)
        ),
    )
}

fn cross_tenant(what: &str, tried: &str) -> PathRefusal {
    PathRefusal::new(
        Reason::CrossTenantNamespace,
        format!("{what} {} is not the tenant's", quoted(tried)),
    )
}

/// Decides how a tenant's request to a vector store is confined.
pub fn route(
    stores: &VectorStores,
    method: &str,
    path: &RequestPath,
    tenant: &str,
    namespace: &str,
) -> VectorRoute {
    if is_weaviate_grpc(&path.path) && stores.stores.iter().any(|s| s.kind() == Kind::Weaviate) {
        // Not parsed: a gRPC request could name any tenant.
        return VectorRoute::Deny(not_allowed("Weaviate's gRPC API"));
    }
    if let Some(store) = stores
        .stores
        .iter()
        .find(|s| near_miss(&path.path, &s.path_prefix))
    {
        return VectorRoute::Deny(PathRefusal::new(
            Reason::InvalidPath,
            format!(
                "path is a near miss of vector store prefix {} (another case, or no '/' after it)",
                quoted(&store.path_prefix)
            ),
        ));
    }
    let Some((store, rest)) = stores.stores.iter().find_map(|store| {
        let rest = path.path.strip_prefix(store.path_prefix.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some((store, rest))
    }) else {
        return VectorRoute::NotVectorStore;
    };
    if path.query.as_deref().is_some_and(|q| q.contains(';')) {
        // Some servers split query parameters at ';' too: `?namespace=own;namespace=other`.
        return VectorRoute::Deny(PathRefusal::new(
            Reason::InvalidPath,
            "';' in the query string of a vector-store request",
        ));
    }
    let request = Request {
        method,
        prefix: &store.path_prefix,
        rest,
        segments: rest.split('/').filter(|s| !s.is_empty()).collect(),
        query: path.query.as_deref(),
        max_bytes: store.max_body_bytes,
    };
    let decision = match &store.rule {
        Rule::Qdrant {
            collection,
            list_collections,
        } => qdrant(
            &request,
            &collection.for_tenant(tenant, namespace),
            *list_collections,
        ),
        Rule::Pinecone { namespace: own } => pinecone(&request, &expand(own, tenant, namespace)),
        Rule::MetadataFilter {
            dialect,
            field,
            value,
            shared,
        } => {
            let tenant = TenantField {
                dialect: *dialect,
                field: field.clone(),
                value: expand(value, tenant, namespace),
                namespaces: match dialect {
                    Dialect::Qdrant => Vec::new(),
                    Dialect::Pinecone => shared.clone(),
                },
            };
            match dialect {
                Dialect::Qdrant => qdrant_shared(&request, tenant, shared),
                Dialect::Pinecone => pinecone_shared(&request, tenant),
            }
        }
        Rule::Weaviate {
            tenant: own,
            collections,
            allow,
        } => weaviate(
            &request,
            own.as_deref()
                .map(|own| expand(own, tenant, namespace))
                .as_deref(),
            &collections.for_tenant(tenant, namespace),
            allow,
        ),
        Rule::Chroma {
            tenant: own_tenant,
            database,
            allow,
        } => chroma(
            &request,
            &expand(own_tenant, tenant, namespace),
            &expand(database, tenant, namespace),
            allow,
        ),
    };
    decision.unwrap_or_else(VectorRoute::Deny)
}

/// Weaviate's gRPC services (`/weaviate.v1.Weaviate/Search`, `/BatchObjects`, ...), in any
/// case: Envoy's route table may match paths case-insensitively.
fn is_weaviate_grpc(path: &str) -> bool {
    path.get(..11)
        .is_some_and(|head| head.eq_ignore_ascii_case("/weaviate.v"))
}

impl VectorStore {
    fn kind(&self) -> Kind {
        match self.rule {
            Rule::Qdrant { .. } => Kind::Qdrant,
            Rule::Pinecone { .. } => Kind::Pinecone,
            Rule::MetadataFilter { .. } => Kind::MetadataFilter,
            Rule::Weaviate { .. } => Kind::Weaviate,
            Rule::Chroma { .. } => Kind::Chroma,
        }
    }
}

/// A path that an Envoy route with a plain `prefix` (or `case_sensitive: false`) could send to
/// the store, while the filter would not see it as the store's: the prefix in another case, or
/// followed by something other than `/` (`/qdrant.Points/Search` is Qdrant's gRPC API,
/// `/qdrant;x/` a path parameter).
fn near_miss(path: &str, prefix: &str) -> bool {
    let Some(head) = path.as_bytes().get(..prefix.len()) else {
        return false;
    };
    if !head.eq_ignore_ascii_case(prefix.as_bytes()) {
        return false;
    }
    let boundary = matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'));
    head != prefix.as_bytes() || !boundary
}

// === Bodies ===

/// Rewrites a buffered request body according to its plan.
///
/// 400 `invalid_body` for a body that is not a JSON object or has the wrong shape, 403
/// `cross_tenant_namespace` when it names another tenant's namespace or tenant value, 403
/// `vector_operation_not_allowed` when it selects records by id, 413 `body_too_large` beyond
/// the plan's cap (the shell normally decides that one before buffering everything).
pub fn rewrite_body(plan: &BodyPlan, body: &[u8]) -> Result<Vec<u8>, PathRefusal> {
    if body.len() > plan.max_bytes {
        return Err(PathRefusal::new(
            Reason::BodyTooLarge,
            format!("body of {} bytes, cap {}", body.len(), plan.max_bytes),
        ));
    }
    let mut value: Value = crate::policy::json::from_slice(body)
        .map_err(|e| invalid_body(format!("not JSON: {e}")))?;
    // Weaviate's and Chroma's bodies: their own rules (some are lists).
    match &plan.edit {
        BodyEdit::Weaviate(edit) => {
            weaviate::rewrite(edit, &mut value)?;
            return serde_json::to_vec(&value).map_err(|_| invalid_body("cannot be re-encoded"));
        }
        BodyEdit::NameIs { name } => {
            check_name(&value, name)?;
            return serde_json::to_vec(&value).map_err(|_| invalid_body("cannot be re-encoded"));
        }
        _ => {}
    }
    let body = value
        .as_object_mut()
        .ok_or_else(|| invalid_body("not a JSON object"))?;
    // Decoding already merged duplicate keys (the last wins) and `\u` escapes, and the body
    // leaves re-encoded: the store reads exactly the keys checked here.
    check_spellings(body, &RULE_KEYS)?;
    match &plan.edit {
        BodyEdit::WrapCollections(naming) => {
            for_each_request(body, plan.shape, &mut |r| wrap_collections(r, naming))?
        }
        BodyEdit::SetNamespace { namespace } => set_namespace(body, namespace)?,
        BodyEdit::AndTenantFilter {
            tenant,
            require_filter,
        } => {
            check_shared_namespace(body, tenant)?;
            for_each_request(body, plan.shape, &mut |r| {
                and_tenant_filter(r, tenant, *require_filter)
            })?
        }
        BodyEdit::StampTenant(tenant) => {
            check_shared_namespace(body, tenant)?;
            stamp_records(body, tenant)?
        }
        BodyEdit::Weaviate(_) | BodyEdit::NameIs { .. } => {}
    }
    serde_json::to_vec(&value).map_err(|_| invalid_body("cannot be re-encoded"))
}

#[cfg(test)]
mod tests;
