use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::policy::namespace::normalize;
use serde_json::json;

pub(super) const TENANT: &str = "acme";
pub(super) const NAMESPACE: &str = "acme-ns";
pub(super) const SEARCH: &str = "/search/collections/shared/points/search";

pub(super) fn compiled(entries: Value) -> Result<VectorStores, ConfigError> {
    let raw: Vec<RawVectorStore> = serde_json::from_value(entries).unwrap();
    compile(raw)
}

pub(super) fn config_error(entries: Value) -> String {
    compiled(entries).unwrap_err().to_string()
}

/// One store of each kind and dialect.
pub(super) fn stores() -> VectorStores {
    compiled(json!([
        {"path_prefix": "/qdrant", "kind": "qdrant"},
        {"path_prefix": "/pinecone", "kind": "pinecone"},
        {"path_prefix": "/search", "kind": "metadata_filter", "dialect": "qdrant",
         "collections": ["shared", "faq"]},
        {"path_prefix": "/shared-pc", "kind": "metadata_filter", "dialect": "pinecone",
         "field": "org", "value": "org-{namespace}", "max_body_bytes": 2048,
         "namespaces": ["", "shared"]},
        {"path_prefix": "/weaviate", "kind": "weaviate", "collections": ["Docs", "Authors"],
         "allow": ["read_schema", "own_tenant"]},
        {"path_prefix": "/wv-open", "kind": "weaviate", "tenant": "t-{tenant}"},
        {"path_prefix": "/wv-coll", "kind": "weaviate", "collection": "T_{tenant}_{name}",
         "allow": ["read_schema"]},
        {"path_prefix": "/wv-one", "kind": "weaviate", "collection": "Docs_{tenant}"},
        {"path_prefix": "/chroma", "kind": "chroma", "allow": ["create_database"]},
        {"path_prefix": "/shared-chroma", "kind": "chroma", "tenant": "shared",
         "database": "db-{tenant}", "allow": ["create_tenant"]}
    ]))
    .unwrap()
}

pub(super) fn route_of(stores: &VectorStores, method: &str, raw: &str) -> VectorRoute {
    let path = normalize(raw.as_bytes()).unwrap();
    route(stores, method, &path, TENANT, NAMESPACE)
}

pub(super) fn forwarded(method: &str, raw: &str) -> String {
    match route_of(&stores(), method, raw) {
        VectorRoute::Forward { path } => path,
        other => panic!("{method} {raw}: {other:?}"),
    }
}

pub(super) fn planned(method: &str, raw: &str) -> (String, BodyPlan) {
    match route_of(&stores(), method, raw) {
        VectorRoute::RewriteBody { path, plan } => (path, plan),
        other => panic!("{method} {raw}: {other:?}"),
    }
}

pub(super) fn denied(method: &str, raw: &str) -> Reason {
    match route_of(&stores(), method, raw) {
        VectorRoute::Deny(refusal) => {
            assert!(refusal
                .detail
                .chars()
                .all(|c| c == ' ' || c.is_ascii_graphic()));
            refusal.reason
        }
        other => panic!("{method} {raw}: {other:?}"),
    }
}

/// Routes a request and rewrites its body.
pub(super) fn rewritten(method: &str, raw: &str, body: Value) -> Result<Value, PathRefusal> {
    let (_, plan) = planned(method, raw);
    let out = rewrite_body(&plan, body.to_string().as_bytes())?;
    Ok(serde_json::from_slice(&out).unwrap())
}

pub(super) fn refused_body(method: &str, raw: &str, body: Value) -> Reason {
    match rewritten(method, raw, body) {
        Ok(out) => panic!("{method} {raw}: accepted as {out}"),
        Err(refusal) => refusal.reason,
    }
}

// === Configuration ===

#[test]
fn entries_of_every_kind_compile_with_their_defaults() {
    let stores = stores();
    assert!(!stores.is_empty());
    assert!(VectorStores::default().is_empty());
    let (_, plan) = planned("POST", "/pinecone/query");
    assert_eq!(plan.max_bytes, 1024 * 1024);
    assert_eq!(
        plan.edit,
        BodyEdit::SetNamespace {
            namespace: NAMESPACE.into()
        }
    );
    let (_, plan) = planned("POST", "/search/collections/shared/points/search");
    assert_eq!(
        plan.edit,
        BodyEdit::AndTenantFilter {
            tenant: TenantField {
                dialect: Dialect::Qdrant,
                field: "tenant_id".into(),
                value: TENANT.into(),
                namespaces: vec![],
            },
            require_filter: false
        }
    );
    let (_, plan) = planned("POST", "/shared-pc/query");
    assert_eq!(plan.max_bytes, 2048);
    let BodyEdit::AndTenantFilter { tenant, .. } = &plan.edit else {
        panic!("{:?}", plan.edit)
    };
    assert_eq!(
        (tenant.field.as_str(), tenant.value.as_str()),
        ("org", "org-acme-ns")
    );
}

#[test]
fn unknown_fields_and_kinds_are_refused() {
    let parse = |v: Value| serde_json::from_value::<Vec<RawVectorStore>>(v);
    // Each for its own reason (serde's message, without the list of what was expected).
    let refused = |v: Value, why: &str| {
        let message = parse(v).unwrap_err().to_string();
        assert!(
            message.starts_with(why),
            "{message:?} does not begin {why:?}"
        );
    };
    refused(
        json!([{"path_prefix": "/q", "kind": "qdrant", "colection": "x"}]),
        "unknown field `colection`",
    );
    refused(
        json!([{"path_prefix": "/q", "kind": "milvus"}]),
        "unknown variant `milvus`",
    );
    refused(json!([{"path_prefix": "/q"}]), "missing field `kind`");
    refused(
        json!([{"path_prefix": "/q", "kind": "qdrant", "list_collections": "all"}]),
        "unknown variant `all`",
    );
}

#[test]
fn fields_of_another_kind_are_refused_with_their_path() {
    assert_eq!(
        config_error(json!([
            {"path_prefix": "/q", "kind": "qdrant"},
            {"path_prefix": "/p", "kind": "pinecone", "collection": "{namespace}~{name}"}
        ])),
        "vector_stores[1].collection: only for kind qdrant or weaviate"
    );
    assert_eq!(
        config_error(json!([{"path_prefix": "/q", "kind": "qdrant", "field": "t"}])),
        "vector_stores[0].field: only for kind metadata_filter"
    );
    assert_eq!(
        config_error(json!([{"path_prefix": "/m", "kind": "metadata_filter",
                             "dialect": "qdrant", "namespace": "{tenant}"}])),
        "vector_stores[0].namespace: only for kind pinecone"
    );
}

#[test]
fn path_prefixes_must_be_normalised_and_distinct() {
    for prefix in [
        "qdrant", "/", "/qdrant/", "/a//b", "/a/../b", "/a/./b", "/a%2Fb", "/a b", "/a?b",
    ] {
        let e = config_error(json!([{"path_prefix": prefix, "kind": "qdrant"}]));
        assert!(
            e.starts_with("vector_stores[0].path_prefix: "),
            "{prefix}: {e}"
        );
    }
    assert_eq!(
        config_error(json!([
            {"path_prefix": "/v", "kind": "qdrant"},
            {"path_prefix": "/v", "kind": "pinecone"}
        ])),
        "vector_stores[1].path_prefix: same prefix as vector_stores[0]"
    );
}

#[test]
fn body_cap_must_be_between_one_byte_and_sixteen_mebibytes() {
    for bytes in [0, 16 * 1024 * 1024 + 1] {
        let e = config_error(
            json!([{"path_prefix": "/p", "kind": "pinecone", "max_body_bytes": bytes}]),
        );
        assert!(e.starts_with("vector_stores[0].max_body_bytes: "), "{e}");
    }
    assert!(compiled(json!([{"path_prefix": "/p", "kind": "pinecone",
                             "max_body_bytes": 16 * 1024 * 1024}]))
    .is_ok());
}

// === Which store ===

#[test]
fn paths_outside_every_store_are_left_to_normal_routing() {
    for raw in [
        "/",
        "/v1/chat/completions",
        "/qdran/collections",
        "/v1/qdrant/collections",
        "/searc",
    ] {
        assert_eq!(
            route_of(&stores(), "POST", raw),
            VectorRoute::NotVectorStore,
            "{raw}"
        );
    }
}

#[test]
fn near_misses_of_a_store_prefix_are_refused_not_routed_normally() {
    // An Envoy route `prefix: /qdrant` matches all of these; `/qdrant.Points/Search` is
    // Qdrant's gRPC API, which no rule confines.
    for raw in [
        "/qdrant.Points/Search",
        "/qdrant.Collections/List",
        "/qdrant;x/collections/globex~docs/points",
        "/qdrantx/collections",
        "/pineconeX/query",
        "/QDRANT/collections/docs",
        "/Qdrant",
        "/search-v2/collections/shared/points",
        "/qdrant%3Bx/collections",
        "/qdrant:1/collections",
    ] {
        assert_eq!(denied("POST", raw), Reason::InvalidPath, "{raw}");
    }
    // The store itself, and normal paths, are unaffected.
    assert_eq!(denied("GET", "/qdrant"), Reason::VectorOperationNotAllowed);
    assert_eq!(
        forwarded("GET", "/qdrant/collections/docs"),
        "/qdrant/collections/acme-ns~docs"
    );
}

#[test]
fn a_longer_store_prefix_is_not_shadowed_by_a_near_miss_check_of_a_shorter_one() {
    let stores = compiled(json!([
        {"path_prefix": "/v", "kind": "pinecone"},
        {"path_prefix": "/v/q", "kind": "qdrant"}
    ]))
    .unwrap();
    assert!(matches!(
        route_of(&stores, "GET", "/v/q/collections/docs"),
        VectorRoute::Forward { .. }
    ));
    // "/v/qx" is the pinecone store's path below /v, but a near miss of /v/q: refused.
    assert!(matches!(
        route_of(&stores, "POST", "/v/qx/query"),
        VectorRoute::Deny(PathRefusal {
            reason: Reason::InvalidPath,
            ..
        })
    ));
}

#[test]
fn semicolons_in_store_query_strings_are_refused() {
    for raw in [
        "/pinecone/vectors/fetch?ids=a;namespace=globex",
        "/pinecone/vectors/fetch?namespace=acme-ns;namespace=globex",
        "/qdrant/collections/docs/points/search?timeout=5;x",
        "/search/collections/shared/points/search?wait=true;",
    ] {
        assert_eq!(denied("GET", raw), Reason::InvalidPath, "{raw}");
    }
    // Encoded, a ';' is data inside one parameter.
    assert!(forwarded("GET", "/pinecone/vectors/fetch?ids=a%3Bb").contains("ids=a%3Bb"));
}

#[test]
fn the_longest_matching_prefix_wins() {
    let stores = compiled(json!([
        {"path_prefix": "/v", "kind": "pinecone"},
        {"path_prefix": "/v/qdrant", "kind": "qdrant"}
    ]))
    .unwrap();
    assert_eq!(
        route_of(&stores, "GET", "/v/qdrant/collections/docs"),
        VectorRoute::Forward {
            path: "/v/qdrant/collections/acme-ns~docs".into()
        }
    );
    assert!(matches!(
        route_of(&stores, "POST", "/v/query"),
        VectorRoute::RewriteBody { .. }
    ));
}

// === Bodies in general ===

#[test]
fn bodies_that_are_not_json_objects_are_invalid() {
    let (_, plan) = planned("POST", "/pinecone/query");
    let deep = "[".repeat(5000);
    for body in [
        &b""[..],
        b"   ",
        b"[]",
        b"1",
        b"\"namespace\"",
        b"null",
        b"not json",
        b"{\"namespace\":",
        b"{\"a\":1} trailing",
        b"{\"a\":\"\xff\"}",
        deep.as_bytes(),
    ] {
        let refusal = rewrite_body(&plan, body).unwrap_err();
        assert_eq!(refusal.reason, Reason::InvalidBody, "{body:?}");
        assert!(refusal.detail.len() <= 203);
    }
}

#[test]
fn deeply_nested_prefetches_are_handled_without_overflow() {
    let mut body = json!({"query": [1.0]});
    for _ in 0..60 {
        body = json!({"query": [1.0], "prefetch": body});
    }
    let out = rewritten("POST", "/search/collections/shared/points/query", body).unwrap();
    let mut level = &out;
    let mut depth = 0;
    while let Some(inner) = level.get("prefetch") {
        assert_eq!(level["filter"]["must"][0]["key"], "tenant_id");
        level = inner;
        depth += 1;
    }
    assert_eq!(depth, 60);
}

#[test]
fn plans_carry_the_body_cap_and_rewrite_refuses_beyond_it() {
    let (_, plan) = planned("POST", "/shared-pc/query");
    assert_eq!(plan.max_bytes, 2048);
    let big = json!({"vector": vec![0.5; 1000]}).to_string();
    assert!(big.len() > 2048);
    assert_eq!(
        rewrite_body(&plan, big.as_bytes()).unwrap_err().reason,
        Reason::BodyTooLarge
    );
    let (_, plan) = planned("POST", "/qdrant/collections/docs/points/query");
    assert_eq!(plan.max_bytes, 1024 * 1024);
}

#[test]
fn rewritten_paths_keep_the_query_string() {
    let (path, _) = planned("POST", "/search/collections/shared/points/search?timeout=5");
    assert_eq!(path, "/search/collections/shared/points/search?timeout=5");
    let (path, _) = planned(
        "POST",
        "/qdrant/collections/docs/points/query?consistency=all",
    );
    assert_eq!(
        path,
        "/qdrant/collections/acme-ns~docs/points/query?consistency=all"
    );
}
