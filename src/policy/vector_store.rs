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
//! | `kind` | all | required | `qdrant` (collection per tenant), `pinecone` (namespace per tenant), `metadata_filter` (one shared collection, records tagged with the tenant). |
//! | `max_body_bytes` | all | `1048576` | Largest request body the filter buffers to rewrite (1 to 16777216); a larger one is refused with 413 `body_too_large`. Also caps a buffered `GET /collections` response. |
//! | `collection` | `qdrant` | `{namespace}~{name}` | The tenant's collection for the client's `{name}`: `{name}` once, `{tenant}` or `{namespace}` once, a non-empty separator between them, literals of `A-Z a-z 0-9 . _ - ~`. |
//! | `list_collections` | `qdrant` | `filter` | `GET /collections`: `filter` (only the tenant's collections, under the client's names) or `deny`. |
//! | `namespace` | `pinecone` | `{namespace}` | The tenant's Pinecone namespace: `{tenant}` or `{namespace}` once, printable ASCII. |
//! | `dialect` | `metadata_filter` | required | `qdrant` or `pinecone`: the store's API. |
//! | `field` | `metadata_filter` | `tenant_id` | Top-level payload (Qdrant) or metadata (Pinecone) key holding the tenant: 1-64 of `A-Z a-z 0-9 _ -`. |
//! | `value` | `metadata_filter` | `{tenant}` | The value of `field` for the tenant: `{tenant}` or `{namespace}` once, printable ASCII. |
//! | `collections` | `metadata_filter`, dialect `qdrant` | required | The shared collections (1-255 of `A-Z a-z 0-9 - . _ ~`, non-empty list): any other collection is refused (403 `cross_tenant_namespace`). |
//! | `namespaces` | `metadata_filter`, dialect `pinecone` | required | The shared namespaces (printable ASCII without spaces, `""` for the default namespace; non-empty list): a body `namespace` (absent or `null` is `""`) or `namespace` query parameter naming another is refused (403 `cross_tenant_namespace`). |
//!
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
//!
//! **`pinecone`** (data plane, namespace per tenant). `POST /query`, `/vectors/upsert`,
//! `/vectors/update`, `/vectors/delete`: the body's `namespace` is set to the tenant's when
//! absent, `null` or `""`, kept when equal, refused (403 `cross_tenant_namespace`) otherwise; a
//! non-string is 400 `invalid_body`, and so are case variants of the key (`Namespace`), which
//! some JSON decoders also accept. `GET /vectors/fetch` and `/vectors/list`: the same rule on the
//! `namespace` query parameter, which is then set to the tenant's (other parameters kept).
//! `POST /records/namespaces/{ns}/upsert|search` and `GET|DELETE /namespaces/{ns}`: only the
//! tenant's own `{ns}` (else 403). Refused: `/describe_index_stats` (it reveals every
//! namespace), namespace listing, legacy `queries`, everything else.
//!
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
//!
//! Bodies are rewritten only for the operations above (the shell buffers them up to
//! `max_body_bytes`): a body that is not a JSON object is 400 `invalid_body`; unknown fields are
//! kept (the body is re-encoded, so key order and number formatting may change). The store reads
//! exactly the keys the rules read: duplicate keys are decoded as one (the last) and `\u` escapes
//! decoded, and the body leaves re-encoded; a key that is another spelling of one a rule depends
//! on is 400 `invalid_body`, since lenient decoders (Go's `encoding/json` folds case and `ſ`/`K`)
//! could read it as that key. Spellings are compared with ASCII case folded, `ſ` as `s`, `K` as
//! `k`, and everything but ASCII letters and digits dropped (`Filter`, `fil_ter`, `deleteall`,
//! `Delete-All`, `ID`, `lookupFrom`), for `id`, `ids`, `deleteAll`, `filter`, `namespace`,
//! `points`, `payload`, `payloads`, `metadata`, `vector`, `vectors`, `collection`,
//! `collection_name`, `queries`, `lookup_from`, `with_lookup`, `init_from`, `query`, `prefetch`,
//! `searches`, `batch`, `recommend`, `discover`, `context`, `nearest` (in the body, each request,
//! record, batch, lookup and `query` object) and the tenant `field` in payloads and metadata.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::policy::config::ConfigError;
use crate::policy::denial::Reason;
use crate::policy::namespace::{
    expand, hex, is_unreserved, push_escape, quoted, PathRefusal, RequestPath,
};

const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
const LARGEST_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
const DEFAULT_COLLECTION: &str = "{namespace}~{name}";
const DEFAULT_NAMESPACE: &str = "{namespace}";
const DEFAULT_FIELD: &str = "tenant_id";
const DEFAULT_VALUE: &str = "{tenant}";
const MAX_CLIENT_NAME_CHARS: usize = 128;

// === The contract ===

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Qdrant,
    Pinecone,
    MetadataFilter,
}

/// What `GET /collections` does on a `qdrant` store.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ListCollections {
    #[default]
    Filter,
    Deny,
}

/// The API of a `metadata_filter` store.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    Qdrant,
    Pinecone,
}

impl Dialect {
    fn name(self) -> &'static str {
        match self {
            Dialect::Qdrant => "qdrant",
            Dialect::Pinecone => "pinecone",
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
    /// `metadata_filter` with dialect `qdrant`: the shared collections.
    collections: Option<Vec<String>>,
    /// `metadata_filter` with dialect `pinecone`: the shared namespaces (`""` is the default
    /// namespace).
    namespaces: Option<Vec<String>>,
    max_body_bytes: Option<u64>,
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
                }
            })
            .collect();
        out.sort();
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
}

/// A `collection` template, split around its two placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CollectionTemplate {
    head: String,
    /// `{tenant}` or `{namespace}`.
    placeholder: String,
    separator: String,
    tail: String,
    /// Whether the tenant's placeholder comes before `{name}`.
    tenant_first: bool,
}

impl CollectionTemplate {
    /// The tenant's collection names: `prefix` + client name + `suffix`.
    fn for_tenant(&self, tenant: &str, namespace: &str) -> CollectionNaming {
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

// === Validation ===

fn err<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        path: path.into(),
        message: message.into(),
    })
}

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
    stores.sort_by_key(|s| std::cmp::Reverse(s.path_prefix.len()));
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
    let owned = [
        ("collection", raw.collection.is_some(), Kind::Qdrant),
        (
            "list_collections",
            raw.list_collections.is_some(),
            Kind::Qdrant,
        ),
        ("namespace", raw.namespace.is_some(), Kind::Pinecone),
        ("dialect", raw.dialect.is_some(), Kind::MetadataFilter),
        ("field", raw.field.is_some(), Kind::MetadataFilter),
        ("value", raw.value.is_some(), Kind::MetadataFilter),
        (
            "collections",
            raw.collections.is_some(),
            Kind::MetadataFilter,
        ),
        ("namespaces", raw.namespaces.is_some(), Kind::MetadataFilter),
    ];
    for (field, present, owner) in owned {
        if present && owner != raw.kind {
            let kind = match owner {
                Kind::Qdrant => "qdrant",
                Kind::Pinecone => "pinecone",
                Kind::MetadataFilter => "metadata_filter",
            };
            return err(format!("{path}.{field}"), format!("only for kind {kind}"));
        }
    }
    Ok(())
}

fn compile_qdrant(path: &str, raw: &RawVectorStore) -> Result<Rule, ConfigError> {
    let template = raw.collection.as_deref().unwrap_or(DEFAULT_COLLECTION);
    Ok(Rule::Qdrant {
        collection: parse_collection(&format!("{path}.collection"), template)?,
        list_collections: raw.list_collections.unwrap_or_default(),
    })
}

fn compile_pinecone(path: &str, raw: &RawVectorStore) -> Result<Rule, ConfigError> {
    let namespace = raw.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    check_value_template(&format!("{path}.namespace"), namespace)?;
    Ok(Rule::Pinecone {
        namespace: namespace.to_string(),
    })
}

fn compile_metadata_filter(path: &str, raw: &RawVectorStore) -> Result<Rule, ConfigError> {
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
    };
    decision.unwrap_or_else(VectorRoute::Deny)
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

// --- qdrant: collection per tenant ---

fn qdrant(
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

// --- qdrant: one shared collection ---

fn qdrant_shared(
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

// --- pinecone: namespace per tenant ---

fn pinecone(request: &Request<'_>, own: &str) -> Result<VectorRoute, PathRefusal> {
    match (request.method, request.segments.as_slice()) {
        ("POST", ["query"]) | ("POST", ["vectors", "upsert" | "update" | "delete"]) => {
            scan_query(request.query, own)?;
            let edit = BodyEdit::SetNamespace {
                namespace: own.to_string(),
            };
            Ok(request.body(request.unchanged(), edit, Shape::Single))
        }
        ("GET", ["vectors", "fetch" | "list"]) => {
            let mut query = scan_query(request.query, own)?.join("&");
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str("namespace=");
            for b in own.bytes() {
                if is_unreserved(b) {
                    query.push(char::from(b));
                } else {
                    push_escape(&mut query, b);
                }
            }
            Ok(VectorRoute::Forward {
                path: format!("{}{}?{query}", request.prefix, request.rest),
            })
        }
        ("POST", ["records", "namespaces", namespace, "upsert" | "search"])
        | ("GET" | "DELETE", ["namespaces", namespace]) => {
            let named = percent_decode(namespace, false)
                .ok_or_else(|| PathRefusal::new(Reason::InvalidPath, "namespace is not UTF-8"))?;
            if named != own {
                return Err(cross_tenant("namespace", &named));
            }
            scan_query(request.query, own)?;
            Ok(VectorRoute::Forward {
                path: request.unchanged(),
            })
        }
        (_, ["describe_index_stats"]) => Err(not_allowed(
            "describe_index_stats (it reveals every namespace)",
        )),
        _ => Err(not_allowed(&format!(
            "pinecone operation {} {}",
            request.method,
            quoted(request.rest)
        ))),
    }
}

/// Checks every `namespace` query parameter (absent, empty or the tenant's) and returns the
/// other parameters, verbatim.
fn scan_query<'a>(query: Option<&'a str>, own: &str) -> Result<Vec<&'a str>, PathRefusal> {
    scan_query_with(query, |named| {
        if named.is_empty() || named == own {
            Ok(())
        } else {
            Err(cross_tenant("namespace", named))
        }
    })
}

/// Passes the decoded value of every `namespace` query parameter (however spelled) to `check`
/// and returns the other parameters, verbatim.
fn scan_query_with(
    query: Option<&str>,
    check: impl Fn(&str) -> Result<(), PathRefusal>,
) -> Result<Vec<&str>, PathRefusal> {
    let malformed = || PathRefusal::new(Reason::InvalidPath, "malformed query string");
    let mut kept = Vec::new();
    for parameter in query.unwrap_or_default().split('&') {
        if parameter.is_empty() {
            continue;
        }
        let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        if !is_namespace_key(&percent_decode(key, true).ok_or_else(malformed)?) {
            kept.push(parameter);
            continue;
        }
        check(&percent_decode(value, true).ok_or_else(malformed)?)?;
    }
    Ok(kept)
}

/// Decodes `%XX` (and `+` as a space in query strings); `None` for bad escapes or non-UTF-8.
fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => out.push(hex(bytes.next()?)? << 4 | hex(bytes.next()?)?),
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// `namespace`, also as lenient decoders would read it (see [`fold_key`]).
fn is_namespace_key(key: &str) -> bool {
    fold_key(key) == "namespace"
}

/// The keys that some rule reads, each with its folded spelling.
const RULE_KEYS: [(&str, &str); 25] = [
    ("id", "id"),
    ("ids", "ids"),
    ("deleteAll", "deleteall"),
    ("filter", "filter"),
    ("namespace", "namespace"),
    ("points", "points"),
    ("payload", "payload"),
    ("payloads", "payloads"),
    ("metadata", "metadata"),
    ("vector", "vector"),
    ("vectors", "vectors"),
    ("collection", "collection"),
    ("collection_name", "collectionname"),
    ("queries", "queries"),
    ("lookup_from", "lookupfrom"),
    ("with_lookup", "withlookup"),
    ("init_from", "initfrom"),
    ("query", "query"),
    ("prefetch", "prefetch"),
    ("searches", "searches"),
    ("batch", "batch"),
    ("recommend", "recommend"),
    ("discover", "discover"),
    ("context", "context"),
    ("nearest", "nearest"),
];

/// A key as the most lenient JSON decoders would match it against a field name: ASCII letters
/// and digits only, case folded (Unicode's `ſ` and Kelvin sign `K` fold to `s` and `k`, as in
/// Go's `encoding/json`), `_`, `-` and everything else dropped.
fn fold_key(key: &str) -> String {
    key.chars()
        .filter_map(|c| match c {
            '\u{17F}' => Some('s'),
            '\u{212A}' => Some('k'),
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Refuses (400) a key that is another spelling of one of `keys` (canonical, folded): a rule
/// reads one spelling, a lenient store could read the other.
fn check_spellings(object: &Object, keys: &[(&str, &str)]) -> Result<(), PathRefusal> {
    for key in object.keys() {
        let folded = fold_key(key);
        if let Some((canonical, _)) = keys.iter().find(|(_, f)| *f == folded) {
            if key != canonical {
                return Err(invalid_body(format!(
                    "ambiguous key {} (another spelling of `{canonical}`)",
                    quoted(key)
                )));
            }
        }
    }
    Ok(())
}

// --- pinecone: one shared index or namespace ---

fn pinecone_shared(request: &Request<'_>, tenant: TenantField) -> Result<VectorRoute, PathRefusal> {
    scan_query_with(request.query, |named| {
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
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| invalid_body(format!("not JSON: {e}")))?;
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
    }
    serde_json::to_vec(&value).map_err(|_| invalid_body("cannot be re-encoded"))
}

type Object = Map<String, Value>;

/// Calls `edit` on every request in the body: the body itself or each of its `searches`, and
/// each of their `prefetch` requests, however deep (bounded by the JSON parser's depth limit).
fn for_each_request<F>(body: &mut Object, shape: Shape, edit: &mut F) -> Result<(), PathRefusal>
where
    F: FnMut(&mut Object) -> Result<(), PathRefusal>,
{
    match shape {
        Shape::Single => visit_request(body, edit),
        Shape::Batch => match body.get_mut("searches") {
            Some(Value::Array(requests)) => requests
                .iter_mut()
                .try_for_each(|r| visit_request(as_request(r, "searches")?, edit)),
            _ => Err(invalid_body("a batch needs a `searches` list")),
        },
    }
}

fn visit_request<F>(request: &mut Object, edit: &mut F) -> Result<(), PathRefusal>
where
    F: FnMut(&mut Object) -> Result<(), PathRefusal>,
{
    check_spellings(request, &RULE_KEYS)?;
    edit(request)?;
    match request.get_mut("prefetch") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(prefetches)) => prefetches
            .iter_mut()
            .try_for_each(|p| visit_request(as_request(p, "prefetch")?, edit)),
        Some(prefetch) => visit_request(as_request(prefetch, "prefetch")?, edit),
    }
}

fn as_request<'a>(value: &'a mut Value, key: &str) -> Result<&'a mut Object, PathRefusal> {
    value
        .as_object_mut()
        .ok_or_else(|| invalid_body(format!("`{key}` must hold objects")))
}

/// Wraps the collection names one Qdrant request names besides the path's.
fn wrap_collections(request: &mut Object, naming: &CollectionNaming) -> Result<(), PathRefusal> {
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

/// Pinecone shared index: the body's namespace must be one of the store's `namespaces`.
fn check_shared_namespace(body: &Object, tenant: &TenantField) -> Result<(), PathRefusal> {
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

/// Pinecone: leaves exactly one `namespace` key, the tenant's.
fn set_namespace(body: &mut Object, own: &str) -> Result<(), PathRefusal> {
    if body.contains_key("queries") {
        return Err(not_allowed("legacy `queries`"));
    }
    let keys: Vec<String> = body
        .keys()
        .filter(|k| is_namespace_key(k))
        .cloned()
        .collect();
    for key in keys {
        if key != "namespace" {
            return Err(invalid_body(format!("ambiguous key {}", quoted(&key))));
        }
        match body.get(&key) {
            None | Some(Value::Null) => {}
            Some(Value::String(named)) if named.is_empty() || named == own => {}
            Some(Value::String(named)) => return Err(cross_tenant("namespace", named)),
            Some(_) => return Err(invalid_body("`namespace` must be a string")),
        }
    }
    body.insert("namespace".into(), Value::String(own.to_string()));
    Ok(())
}

/// Metadata filter: refuses selection by id, then ands the tenant condition into `filter`.
fn and_tenant_filter(
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
fn stamp_records(body: &mut Object, tenant: &TenantField) -> Result<(), PathRefusal> {
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

// === Responses ===

/// Filters a Qdrant collection list to the tenant's collections, under the client's names.
///
/// `None` when the body is not a collection list (or is over the cap): the shell must not
/// forward it, and answers 502 instead.
pub fn filter_response(plan: &ResponsePlan, body: &[u8]) -> Option<Vec<u8>> {
    if body.len() > plan.max_bytes {
        return None;
    }
    let mut value: Value = serde_json::from_slice(body).ok()?;
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
