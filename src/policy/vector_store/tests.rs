use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::policy::namespace::normalize;
use serde_json::json;

const TENANT: &str = "acme";
const NAMESPACE: &str = "acme-ns";

fn compiled(entries: Value) -> Result<VectorStores, ConfigError> {
    let raw: Vec<RawVectorStore> = serde_json::from_value(entries).unwrap();
    compile(raw)
}

fn config_error(entries: Value) -> String {
    compiled(entries).unwrap_err().to_string()
}

/// One store of each kind and dialect.
fn stores() -> VectorStores {
    compiled(json!([
        {"path_prefix": "/qdrant", "kind": "qdrant"},
        {"path_prefix": "/pinecone", "kind": "pinecone"},
        {"path_prefix": "/search", "kind": "metadata_filter", "dialect": "qdrant",
         "collections": ["shared", "faq"]},
        {"path_prefix": "/shared-pc", "kind": "metadata_filter", "dialect": "pinecone",
         "field": "org", "value": "org-{namespace}", "max_body_bytes": 2048,
         "namespaces": ["", "shared"]}
    ]))
    .unwrap()
}

fn route_of(stores: &VectorStores, method: &str, raw: &str) -> VectorRoute {
    let path = normalize(raw.as_bytes()).unwrap();
    route(stores, method, &path, TENANT, NAMESPACE)
}

fn forwarded(method: &str, raw: &str) -> String {
    match route_of(&stores(), method, raw) {
        VectorRoute::Forward { path } => path,
        other => panic!("{method} {raw}: {other:?}"),
    }
}

fn planned(method: &str, raw: &str) -> (String, BodyPlan) {
    match route_of(&stores(), method, raw) {
        VectorRoute::RewriteBody { path, plan } => (path, plan),
        other => panic!("{method} {raw}: {other:?}"),
    }
}

fn denied(method: &str, raw: &str) -> Reason {
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
fn rewritten(method: &str, raw: &str, body: Value) -> Result<Value, PathRefusal> {
    let (_, plan) = planned(method, raw);
    let out = rewrite_body(&plan, body.to_string().as_bytes())?;
    Ok(serde_json::from_slice(&out).unwrap())
}

fn refused_body(method: &str, raw: &str, body: Value) -> Reason {
    match rewritten(method, raw, body) {
        Ok(out) => panic!("{method} {raw}: accepted as {out}"),
        Err(refusal) => refusal.reason,
    }
}

fn naming(template: &str, namespace: &str) -> CollectionNaming {
    parse_collection("t", template)
        .unwrap()
        .for_tenant("tenant", namespace)
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
        "vector_stores[1].collection: only for kind qdrant"
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
fn collection_templates_must_name_the_collection_and_the_tenant_once() {
    let error = |template: &str| {
        config_error(json!([{"path_prefix": "/q", "kind": "qdrant", "collection": template}]))
    };
    assert_eq!(
        error("{namespace}~docs"),
        "vector_stores[0].collection: must contain {name} exactly once"
    );
    assert!(error("{name}~{name}~{namespace}").contains("{name} exactly once"));
    assert!(error("shared_{name}").contains("exactly one of {tenant} or {namespace}"));
    assert!(error("{tenant}~{namespace}~{name}").contains("exactly one of"));
    assert!(error("{namespace}{name}").contains("separator"));
    assert!(error("{namespace}/{name}").contains("A-Z a-z 0-9 . _ - ~"));
    assert!(error("{namespace}:{name}").contains("A-Z a-z 0-9 . _ - ~"));
    assert!(error("{namespace}~{name}~{other}").contains("A-Z a-z 0-9 . _ - ~"));
    for ok in [
        "{namespace}~{name}",
        "tenant_{namespace}_{name}",
        "{name}.{tenant}",
        "t-{tenant}~{name}-v1",
    ] {
        assert!(
            compiled(json!([{"path_prefix": "/q", "kind": "qdrant", "collection": ok}])).is_ok(),
            "{ok}"
        );
    }
}

#[test]
fn metadata_filter_entries_need_a_dialect_and_a_plain_field() {
    assert_eq!(
        config_error(json!([{"path_prefix": "/m", "kind": "metadata_filter"}])),
        "vector_stores[0].dialect: required for kind metadata_filter (qdrant or pinecone)"
    );
    for field in ["", "a.b", "$eq", "a b", "x[0]"] {
        let e = config_error(json!([{"path_prefix": "/m", "kind": "metadata_filter",
                                     "dialect": "pinecone", "field": field}]));
        assert!(e.starts_with("vector_stores[0].field: "), "{field}: {e}");
    }
    for value in ["acme", "{tenant}-{namespace}", "{tenant}{x}", "{tenant}\n"] {
        let e = config_error(json!([{"path_prefix": "/m", "kind": "metadata_filter",
                                     "dialect": "qdrant", "value": value}]));
        assert!(e.starts_with("vector_stores[0].value: "), "{value}: {e}");
    }
    let e = config_error(json!([{"path_prefix": "/p", "kind": "pinecone", "namespace": "shared"}]));
    assert!(e.starts_with("vector_stores[0].namespace: "), "{e}");
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

// === qdrant: collection per tenant ===

#[test]
fn collection_paths_reach_the_tenants_collection() {
    let cases = [
        (
            "GET",
            "/qdrant/collections/docs",
            "/qdrant/collections/acme-ns~docs",
        ),
        (
            "DELETE",
            "/qdrant/collections/docs",
            "/qdrant/collections/acme-ns~docs",
        ),
        (
            "GET",
            "/qdrant/collections/docs/exists",
            "/qdrant/collections/acme-ns~docs/exists",
        ),
        (
            "PUT",
            "/qdrant/collections/docs/points?wait=true",
            "/qdrant/collections/acme-ns~docs/points?wait=true",
        ),
        (
            "POST",
            "/qdrant/collections/docs/points/search",
            "/qdrant/collections/acme-ns~docs/points/search",
        ),
        (
            "POST",
            "/qdrant/collections/docs/points/delete",
            "/qdrant/collections/acme-ns~docs/points/delete",
        ),
        (
            "GET",
            "/qdrant/collections/docs/points/42",
            "/qdrant/collections/acme-ns~docs/points/42",
        ),
        (
            "PUT",
            "/qdrant/collections/docs/index",
            "/qdrant/collections/acme-ns~docs/index",
        ),
        (
            "DELETE",
            "/qdrant/collections/docs/index/city",
            "/qdrant/collections/acme-ns~docs/index/city",
        ),
        (
            "POST",
            "/qdrant/collections/docs/facet",
            "/qdrant/collections/acme-ns~docs/facet",
        ),
        (
            "GET",
            "//qdrant/./collections/x/../docs/",
            "/qdrant/collections/acme-ns~docs/",
        ),
        (
            "GET",
            "/qdrant/collections/%64ocs",
            "/qdrant/collections/acme-ns~docs",
        ),
    ];
    for (method, raw, want) in cases {
        assert_eq!(forwarded(method, raw), want, "{method} {raw}");
    }
}

#[test]
fn names_carrying_a_tenant_prefix_are_refused_not_wrapped() {
    for raw in [
        "/qdrant/collections/acme-ns~docs",
        "/qdrant/collections/globex~docs/points/search",
        "/qdrant/collections/globex%7Edocs",
        "/qdrant/collections/a%20b",
        "/qdrant/collections/%C3%A9",
        "/qdrant/collections/d:x",
    ] {
        assert_eq!(denied("GET", raw), Reason::InvalidPath, "{raw}");
    }
    let long = format!("/qdrant/collections/{}", "x".repeat(129));
    assert_eq!(denied("GET", &long), Reason::InvalidPath);
}

#[test]
fn a_separator_without_tilde_forbids_its_character_in_client_names() {
    let n = naming("tenant_{namespace}_{name}", "a");
    assert_eq!(n.collection_for("docs").unwrap(), "tenant_a_docs");
    assert_eq!(
        n.collection_for("b_c").unwrap_err(),
        "collection name \"b_c\" may not contain '_' here"
    );
    assert_eq!(n.client_name("tenant_a_docs"), Some("docs"));
    assert_eq!(n.client_name("tenant_a_b_c"), None);
    let n = naming("{name}.{namespace}", "a");
    assert_eq!(n.collection_for("docs-1").unwrap(), "docs-1.a");
    assert_eq!(
        n.collection_for("v1.2").unwrap_err(),
        "collection name \"v1.2\" may not contain '.' here"
    );
    let n = naming("{namespace}~{name}", "a");
    assert_eq!(n.forbidden, None);
    assert_eq!(n.collection_for("a_b.c-d").unwrap(), "a~a_b.c-d");
}

/// Every string of up to `max_len` pieces of `alphabet`, the empty one included.
fn words(alphabet: &[&str], max_len: usize) -> Vec<String> {
    let mut all = vec![String::new()];
    let mut longest = vec![String::new()];
    for _ in 0..max_len {
        longest = longest
            .iter()
            .flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}")))
            .collect();
        all.extend(longest.iter().cloned());
    }
    all
}

/// Every (namespace, name) pair a template accepts maps to its own collection, so no tenant
/// can name its way into another tenant's collection.
#[test]
fn collection_names_never_collide_across_tenants() {
    let words = words(&["a", "b", "_", "-", ".", "~"], 3);
    let namespaces: Vec<&String> = words
        .iter()
        .filter(|w| !w.is_empty() && !w.contains('~'))
        .collect();
    for template in [
        "{namespace}~{name}",
        "tenant_{namespace}_{name}",
        "{namespace}__{name}",
        "{namespace}-{name}",
        "{name}.{namespace}",
        "{name}_.{namespace}",
        "x{namespace}._{name}y",
    ] {
        let template_parsed = parse_collection("t", template).unwrap();
        let mut owners = std::collections::HashMap::new();
        for namespace in &namespaces {
            let naming = template_parsed.for_tenant("t", namespace);
            for name in &words {
                let Ok(collection) = naming.collection_for(name) else {
                    continue;
                };
                assert_eq!(naming.client_name(&collection), Some(name.as_str()));
                if let Some(other) = owners.insert(collection.clone(), namespace.as_str()) {
                    panic!("{template}: {collection} reachable by {other} and {namespace}");
                }
            }
        }
    }
}

#[test]
fn traversal_inside_collection_paths_cannot_reach_other_collections() {
    assert_eq!(
        denied("GET", "/qdrant/collections/docs/../../cluster"),
        Reason::VectorOperationNotAllowed
    );
    assert_eq!(
        denied("GET", "/qdrant/collections/docs/%2e%2e/%2e%2e/aliases"),
        Reason::VectorOperationNotAllowed
    );
    assert_eq!(
        forwarded("GET", "/qdrant/collections/docs/../globex"),
        "/qdrant/collections/acme-ns~globex"
    );
    for (path, detail) in [
        (
            &b"/qdrant/collections/docs/..%2fglobex"[..],
            "encoded '/' in path",
        ),
        (
            &b"/qdrant/collections/..;/globex~docs"[..],
            "dot segment with ';' parameters in path",
        ),
    ] {
        let refusal = normalize(path).unwrap_err();
        assert_eq!(
            (refusal.reason, refusal.detail.as_str()),
            (Reason::InvalidPath, detail)
        );
    }
}

/// Whatever path a client builds below `/qdrant`, a forwarded path names one of the tenant's
/// collections.
#[test]
fn every_forwarded_qdrant_path_names_a_collection_of_the_tenant() {
    let pieces = [
        "collections",
        "docs",
        "..",
        "%2e%2e",
        "acme-ns~docs",
        "globex~x",
        "aliases",
        "points",
        "search",
        "",
        ".",
        "~",
        "snapshots",
        "%7e",
    ];
    let stores = stores();
    let mut forwarded = 0;
    for a in pieces {
        for b in pieces {
            for c in pieces {
                for d in ["", "/points/query", "/../x"] {
                    let raw = format!("/qdrant/{a}/{b}/{c}{d}");
                    let Ok(path) = normalize(raw.as_bytes()) else {
                        continue;
                    };
                    let target = match route(&stores, "POST", &path, TENANT, NAMESPACE) {
                        VectorRoute::Forward { path } | VectorRoute::RewriteBody { path, .. } => {
                            path
                        }
                        VectorRoute::FilterResponse { path, .. } => {
                            assert_eq!(path, "/qdrant/collections");
                            continue;
                        }
                        VectorRoute::Deny(_) | VectorRoute::NotVectorStore => continue,
                    };
                    forwarded += 1;
                    let collection = target
                        .strip_prefix("/qdrant/collections/acme-ns~")
                        .and_then(|rest| rest.split('/').next());
                    assert!(
                        collection.is_some_and(|c| !c.is_empty() && !c.contains('~')),
                        "{raw} -> {target}"
                    );
                }
            }
        }
    }
    assert!(forwarded > 50, "{forwarded}");
}

#[test]
fn collection_listing_keeps_only_the_tenants_collections_under_their_client_names() {
    let VectorRoute::FilterResponse { path, plan } =
        route_of(&stores(), "GET", "/qdrant/collections")
    else {
        panic!("not filtered")
    };
    assert_eq!(path, "/qdrant/collections");
    assert_eq!(plan.max_bytes, 1024 * 1024);
    let upstream = json!({
        "result": {"collections": [
            {"name": "acme-ns~docs"}, {"name": "globex~docs"}, {"name": "acme-ns~~x"},
            {"name": "acme-ns.x~docs"}, {"name": "acme-ns~faq", "extra": 1}, {"name": "plain"},
            {"name": 7}, {"nom": "acme-ns~x"}, "acme-ns~y"
        ]},
        "status": "ok",
        "time": 0.25
    });
    let out = filter_response(&plan, upstream.to_string().as_bytes()).unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        out,
        json!({
            "result": {"collections": [{"name": "docs"}, {"name": "faq", "extra": 1}]},
            "status": "ok",
            "time": 0.25
        })
    );
}

#[test]
fn responses_that_are_not_collection_lists_are_not_forwarded() {
    let VectorRoute::FilterResponse { plan, .. } =
        route_of(&stores(), "GET", "/qdrant/collections")
    else {
        panic!("not filtered")
    };
    for body in [
        &b""[..],
        b"not json",
        b"{\"status\":{\"error\":\"x\"}}",
        b"{\"result\":{\"collections\":{}}}",
        b"[]",
    ] {
        assert_eq!(filter_response(&plan, body), None, "{body:?}");
    }
    let small = ResponsePlan {
        max_bytes: 10,
        ..plan
    };
    assert_eq!(
        filter_response(&small, b"{\"result\":{\"collections\":[]}}"),
        None
    );
}

#[test]
fn collection_listing_can_be_denied() {
    let stores =
        compiled(json!([{"path_prefix": "/q", "kind": "qdrant", "list_collections": "deny"}]))
            .unwrap();
    assert!(matches!(
        route_of(&stores, "GET", "/q/collections"),
        VectorRoute::Deny(PathRefusal {
            reason: Reason::VectorOperationNotAllowed,
            ..
        })
    ));
    assert_eq!(
        denied("POST", "/qdrant/collections"),
        Reason::VectorOperationNotAllowed
    );
}

#[test]
fn operations_beyond_one_collection_are_refused() {
    for (method, raw) in [
        ("GET", "/qdrant"),
        ("GET", "/qdrant/"),
        ("GET", "/qdrant/cluster"),
        ("GET", "/qdrant/aliases"),
        ("POST", "/qdrant/collections/aliases"),
        ("GET", "/qdrant/collections/aliases/x"),
        ("GET", "/qdrant/snapshots"),
        ("GET", "/qdrant/telemetry"),
        ("GET", "/qdrant/metrics"),
        ("GET", "/qdrant/healthz"),
        ("GET", "/qdrant/collections/docs/aliases"),
        ("POST", "/qdrant/collections/docs/snapshots"),
        ("PUT", "/qdrant/collections/docs/snapshots/recover"),
        ("GET", "/qdrant/collections/docs/shards"),
        ("POST", "/qdrant/collections/docs/cluster"),
        ("GET", "/qdrant/collections/docs/unknown"),
        ("GET", "/qdrant/Collections/docs"),
    ] {
        assert_eq!(
            denied(method, raw),
            Reason::VectorOperationNotAllowed,
            "{method} {raw}"
        );
    }
}

#[test]
fn collection_names_in_bodies_are_wrapped_like_the_path() {
    let out = rewritten(
        "POST",
        "/qdrant/collections/docs/points/query",
        json!({"query": [0.1, 0.2], "lookup_from": {"collection": "images", "vector": "v"},
               "prefetch": [{"query": 7, "lookup_from": {"collection": "faq"}}],
               "limit": 3}),
    )
    .unwrap();
    assert_eq!(
        out["lookup_from"],
        json!({"collection": "acme-ns~images", "vector": "v"})
    );
    assert_eq!(
        out["prefetch"][0]["lookup_from"]["collection"],
        "acme-ns~faq"
    );
    assert_eq!(out["limit"], 3);

    let out = rewritten(
        "POST",
        "/qdrant/collections/docs/points/search/groups",
        json!({"vector": [1.0], "group_by": "doc", "with_lookup": "docs-meta"}),
    )
    .unwrap();
    assert_eq!(out["with_lookup"], "acme-ns~docs-meta");

    let out = rewritten(
        "POST",
        "/qdrant/collections/docs/points/query/groups",
        json!({"group_by": "doc", "with_lookup": {"collection": "meta", "with_payload": true}}),
    )
    .unwrap();
    assert_eq!(out["with_lookup"]["collection"], "acme-ns~meta");

    let out = rewritten(
        "POST",
        "/qdrant/collections/docs/points/recommend/batch",
        json!({"searches": [{"positive": [1], "lookup_from": {"collection": "a"}}, {"positive": [2]}]}),
    )
    .unwrap();
    assert_eq!(out["searches"][0]["lookup_from"]["collection"], "acme-ns~a");

    let out = rewritten(
        "PUT",
        "/qdrant/collections/docs",
        json!({"vectors": {"size": 4, "distance": "Cosine"}, "init_from": {"collection": "old"}}),
    )
    .unwrap();
    assert_eq!(out["init_from"]["collection"], "acme-ns~old");
    assert_eq!(out["vectors"]["size"], 4);
}

#[test]
fn foreign_or_malformed_collection_names_in_bodies_are_refused() {
    let path = "/qdrant/collections/docs/points/query";
    for body in [
        json!({"lookup_from": {"collection": "globex~docs"}}),
        json!({"lookup_from": {"collection": "../x"}}),
        json!({"lookup_from": {"collection": 5}}),
        json!({"lookup_from": "docs"}),
        json!({"prefetch": {"lookup_from": {"collection": "globex~docs"}}}),
        json!({"prefetch": [1]}),
    ] {
        assert_eq!(
            refused_body("POST", path, body.clone()),
            Reason::InvalidBody,
            "{body}"
        );
    }
    assert_eq!(
        refused_body(
            "POST",
            "/qdrant/collections/docs/points/query/batch",
            json!({"x": 1})
        ),
        Reason::InvalidBody
    );
}

#[test]
fn point_operations_on_the_tenants_own_collection_need_no_body_work() {
    for (method, raw) in [
        ("PUT", "/qdrant/collections/docs/points"),
        ("POST", "/qdrant/collections/docs/points"),
        ("POST", "/qdrant/collections/docs/points/search"),
        ("POST", "/qdrant/collections/docs/points/scroll"),
        ("POST", "/qdrant/collections/docs/points/delete"),
        ("POST", "/qdrant/collections/docs/points/payload"),
    ] {
        assert!(
            matches!(
                route_of(&stores(), method, raw),
                VectorRoute::Forward { .. }
            ),
            "{method} {raw}"
        );
    }
}

// === pinecone: namespace per tenant ===

#[test]
fn pinecone_namespace_is_set_when_absent_null_or_empty() {
    for raw in [
        "/pinecone/query",
        "/pinecone/vectors/upsert",
        "/pinecone/vectors/update",
        "/pinecone/vectors/delete",
    ] {
        for body in [
            json!({"topK": 3}),
            json!({"topK": 3, "namespace": ""}),
            json!({"topK": 3, "namespace": null}),
        ] {
            let out = rewritten("POST", raw, body).unwrap();
            assert_eq!(out, json!({"topK": 3, "namespace": NAMESPACE}), "{raw}");
        }
    }
}

#[test]
fn pinecone_own_namespace_is_kept_and_unknown_fields_untouched() {
    let body = json!({
        "namespace": NAMESPACE, "vector": [0.5, -1.25], "topK": 10,
        "filter": {"genre": {"$in": ["a", "b"]}}, "includeMetadata": true, "x-future": {"deep": [1, {}]}
    });
    assert_eq!(
        rewritten("POST", "/pinecone/query", body.clone()).unwrap(),
        body
    );
}

#[test]
fn another_tenants_pinecone_namespace_is_refused() {
    for namespace in ["globex", "acme", "ACME-NS", "acme-ns ", "__default__"] {
        assert_eq!(
            refused_body("POST", "/pinecone/query", json!({"namespace": namespace})),
            Reason::CrossTenantNamespace,
            "{namespace}"
        );
    }
}

#[test]
fn pinecone_namespace_of_another_type_or_spelling_is_invalid() {
    for body in [
        json!({"namespace": 7}),
        json!({"namespace": ["acme-ns"]}),
        json!({"namespace": {"name": "acme-ns"}}),
        json!({"Namespace": "globex"}),
        json!({"NAMESPACE": NAMESPACE}),
        json!({"nameſpace": "globex"}),
    ] {
        assert_eq!(
            refused_body("POST", "/pinecone/vectors/delete", body.clone()),
            Reason::InvalidBody,
            "{body}"
        );
    }
    assert_eq!(
        refused_body(
            "POST",
            "/pinecone/query",
            json!({"queries": [{"namespace": "globex"}]})
        ),
        Reason::VectorOperationNotAllowed
    );
}

#[test]
fn duplicate_namespace_keys_cannot_smuggle_another_namespace() {
    let (_, plan) = planned("POST", "/pinecone/query");
    let body = br#"{"namespace": "globex", "namespace": "acme-ns"}"#;
    let out: Value = serde_json::from_slice(&rewrite_body(&plan, body).unwrap()).unwrap();
    assert_eq!(out, json!({"namespace": NAMESPACE}));
    let text = String::from_utf8(rewrite_body(&plan, body).unwrap()).unwrap();
    assert_eq!(text.matches("namespace").count(), 1);
    let body = br#"{"namespace": "acme-ns", "namespace": "globex"}"#;
    assert_eq!(
        rewrite_body(&plan, body).unwrap_err().reason,
        Reason::CrossTenantNamespace
    );
}

#[test]
fn pinecone_fetch_and_list_get_the_tenants_namespace_parameter() {
    let cases = [
        (
            "/pinecone/vectors/fetch?ids=a&ids=b",
            "/pinecone/vectors/fetch?ids=a&ids=b&namespace=acme-ns",
        ),
        (
            "/pinecone/vectors/fetch",
            "/pinecone/vectors/fetch?namespace=acme-ns",
        ),
        (
            "/pinecone/vectors/fetch?",
            "/pinecone/vectors/fetch?namespace=acme-ns",
        ),
        (
            "/pinecone/vectors/list?namespace=acme-ns&prefix=doc1",
            "/pinecone/vectors/list?prefix=doc1&namespace=acme-ns",
        ),
        (
            "/pinecone/vectors/list?namespace=&limit=5",
            "/pinecone/vectors/list?limit=5&namespace=acme-ns",
        ),
        (
            "/pinecone/vectors/list?namespace=acme%2Dns&&x",
            "/pinecone/vectors/list?x&namespace=acme-ns",
        ),
        (
            "/pinecone/vectors/list?namespacex=globex",
            "/pinecone/vectors/list?namespacex=globex&namespace=acme-ns",
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(forwarded("GET", raw), want, "{raw}");
    }
}

#[test]
fn another_namespace_in_the_query_string_is_refused_however_spelled() {
    for raw in [
        "/pinecone/vectors/fetch?ids=a&namespace=globex",
        "/pinecone/vectors/fetch?namespace=acme-ns&namespace=globex",
        "/pinecone/vectors/fetch?NameSpace=globex",
        "/pinecone/vectors/fetch?namespac%65=globex",
        "/pinecone/vectors/fetch?name%73pace=globex",
        "/pinecone/vectors/fetch?namespace=glo%62ex",
        "/pinecone/vectors/fetch?namespace=acme-ns+",
        "/pinecone/vectors/list?nameſpace=globex",
    ] {
        assert_eq!(denied("GET", raw), Reason::CrossTenantNamespace, "{raw}");
    }
    assert_eq!(
        denied("GET", "/pinecone/vectors/fetch?namespace=%zz"),
        Reason::InvalidPath
    );
    assert_eq!(
        denied("GET", "/pinecone/vectors/fetch?namespace=%ff"),
        Reason::InvalidPath
    );
    assert_eq!(
        denied("POST", "/pinecone/query?namespace=globex"),
        Reason::CrossTenantNamespace
    );
    assert_eq!(
        planned("POST", "/pinecone/query?namespace=acme-ns").0,
        "/pinecone/query?namespace=acme-ns"
    );
}

#[test]
fn pinecone_namespaces_in_paths_must_be_the_tenants() {
    assert_eq!(
        forwarded("POST", "/pinecone/records/namespaces/acme-ns/search"),
        "/pinecone/records/namespaces/acme-ns/search"
    );
    assert_eq!(
        forwarded("POST", "/pinecone/records/namespaces/acme%2Dns/upsert"),
        "/pinecone/records/namespaces/acme-ns/upsert"
    );
    assert_eq!(
        forwarded("GET", "/pinecone/namespaces/acme-ns"),
        "/pinecone/namespaces/acme-ns"
    );
    assert_eq!(
        forwarded("DELETE", "/pinecone/namespaces/acme-ns"),
        "/pinecone/namespaces/acme-ns"
    );
    for (method, raw) in [
        ("POST", "/pinecone/records/namespaces/globex/search"),
        ("POST", "/pinecone/records/namespaces/__default__/upsert"),
        ("GET", "/pinecone/namespaces/globex"),
        ("DELETE", "/pinecone/namespaces/acme-ns%20"),
        (
            "POST",
            "/pinecone/records/namespaces/acme-ns/../globex/search",
        ),
    ] {
        assert_eq!(
            denied(method, raw),
            Reason::CrossTenantNamespace,
            "{method} {raw}"
        );
    }
}

#[test]
fn pinecone_operations_that_span_namespaces_are_refused() {
    for (method, raw) in [
        ("POST", "/pinecone/describe_index_stats"),
        ("GET", "/pinecone/describe_index_stats"),
        ("GET", "/pinecone/namespaces"),
        ("POST", "/pinecone/bulk/imports"),
        ("GET", "/pinecone/query"),
        ("POST", "/pinecone/vectors/fetch"),
        ("PUT", "/pinecone/vectors/upsert"),
        ("GET", "/pinecone"),
        ("POST", "/pinecone/records/namespaces/acme-ns/delete"),
    ] {
        assert_eq!(
            denied(method, raw),
            Reason::VectorOperationNotAllowed,
            "{method} {raw}"
        );
    }
}

// === metadata_filter, qdrant dialect ===

const SEARCH: &str = "/search/collections/shared/points/search";

#[test]
fn tenant_condition_is_the_filter_when_the_client_sends_none() {
    for body in [
        json!({"vector": [1.0], "limit": 5}),
        json!({"vector": [1.0], "limit": 5, "filter": null}),
    ] {
        let out = rewritten("POST", SEARCH, body).unwrap();
        assert_eq!(
            out,
            json!({"vector": [1.0], "limit": 5,
                   "filter": {"must": [{"key": "tenant_id", "match": {"value": "acme"}}]}})
        );
    }
}

#[test]
fn client_filter_is_nested_under_the_tenant_condition() {
    let client = json!({
        "should": [{"key": "tenant_id", "match": {"value": "globex"}}],
        "must_not": [{"key": "x", "match": {"value": 1}}],
        "must": [{"should": [{"key": "tenant_id", "match": {"any": ["globex"]}}]}]
    });
    let out = rewritten(
        "POST",
        SEARCH,
        json!({"vector": [1.0], "filter": client.clone()}),
    )
    .unwrap();
    assert_eq!(
        out["filter"],
        json!({"must": [{"key": "tenant_id", "match": {"value": "acme"}}, client]})
    );
}

#[test]
fn every_filtered_qdrant_read_gets_the_tenant_condition() {
    for op in [
        "points/search",
        "points/query",
        "points/scroll",
        "points/count",
        "points/search/groups",
        "points/query/groups",
        "points/search/matrix/pairs",
        "points/search/matrix/offsets",
        "facet",
    ] {
        let raw = format!("/search/collections/shared/{op}");
        let out = rewritten("POST", &raw, json!({})).unwrap();
        assert_eq!(out["filter"]["must"][0]["match"]["value"], "acme", "{op}");
    }
}

#[test]
fn batches_and_prefetches_are_each_confined() {
    let out = rewritten(
        "POST",
        "/search/collections/shared/points/search/batch",
        json!({"searches": [{"vector": [1.0]}, {"vector": [2.0], "filter": {"must": []}}]}),
    )
    .unwrap();
    assert!(out.get("filter").is_none());
    for search in out["searches"].as_array().unwrap() {
        assert_eq!(search["filter"]["must"][0]["key"], "tenant_id");
    }
    let out = rewritten(
        "POST",
        "/search/collections/shared/points/query",
        json!({"query": {"fusion": "rrf"},
               "prefetch": [{"query": [1.0], "prefetch": {"query": [2.0], "filter": {"must": []}}},
                            {"query": {"indices": [1], "values": [0.5]}, "using": "sparse"}]}),
    )
    .unwrap();
    assert_eq!(out["filter"]["must"][0]["key"], "tenant_id");
    assert_eq!(out["prefetch"][0]["filter"]["must"][0]["key"], "tenant_id");
    assert_eq!(
        out["prefetch"][0]["prefetch"]["filter"]["must"][0]["key"],
        "tenant_id"
    );
    assert_eq!(
        out["prefetch"][0]["prefetch"]["filter"]["must"][1],
        json!({"must": []})
    );
    assert_eq!(out["prefetch"][1]["filter"]["must"][0]["key"], "tenant_id");
    assert_eq!(
        refused_body(
            "POST",
            "/search/collections/shared/points/query/batch",
            json!({"searches": {}})
        ),
        Reason::InvalidBody
    );
}

#[test]
fn a_searches_list_cannot_hide_an_unfiltered_single_search() {
    let out = rewritten(
        "POST",
        SEARCH,
        json!({"vector": [1.0], "searches": [{"vector": [2.0]}]}),
    )
    .unwrap();
    assert_eq!(out["filter"]["must"][0]["key"], "tenant_id");
}

#[test]
fn qdrant_selection_by_point_id_is_refused_on_a_shared_collection() {
    let query = "/search/collections/shared/points/query";
    for body in [
        json!({"query": 42}),
        json!({"query": "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"}),
        json!({"query": {"nearest": 42}}),
        json!({"query": {"recommend": {"positive": [1]}}}),
        json!({"query": {"discover": {"target": [0.1], "context": []}}}),
        json!({"query": {"context": [{"positive": 1, "negative": 2}]}}),
        json!({"query": [0.1], "lookup_from": {"collection": "other"}}),
        json!({"prefetch": [{"query": 7}]}),
    ] {
        assert_eq!(
            refused_body("POST", query, body.clone()),
            Reason::VectorOperationNotAllowed,
            "{body}"
        );
    }
    assert_eq!(
        refused_body(
            "POST",
            "/search/collections/shared/points/search/groups",
            json!({"vector": [1.0], "group_by": "d", "with_lookup": "meta"})
        ),
        Reason::VectorOperationNotAllowed
    );
    assert!(rewritten(
        "POST",
        query,
        json!({"query": {"nearest": [0.5], "mmr": {}}})
    )
    .is_ok());
}

#[test]
fn qdrant_deletes_on_a_shared_collection_need_a_filter() {
    let delete = "/search/collections/shared/points/delete";
    let out = rewritten(
        "POST",
        delete,
        json!({"filter": {"must": [{"key": "k", "match": {"value": 1}}]}}),
    )
    .unwrap();
    assert_eq!(out["filter"]["must"][0]["match"]["value"], "acme");
    for body in [
        json!({}),
        json!({"filter": null}),
        json!({"points": [1, 2]}),
        json!({"points": [1], "filter": {}}),
    ] {
        assert_eq!(
            refused_body("POST", delete, body.clone()),
            Reason::VectorOperationNotAllowed,
            "{body}"
        );
    }
}

#[test]
fn qdrant_upserts_on_a_shared_collection_are_stamped_with_the_tenant() {
    let upsert = "/search/collections/shared/points";
    let out = rewritten(
        "PUT",
        upsert,
        json!({"points": [
            {"id": 1, "vector": [0.1]},
            {"id": 2, "vector": [0.2], "payload": null},
            {"id": 3, "vector": [0.3], "payload": {"title": "x", "tenant_id": "acme"}},
            {"id": 4, "vector": [0.4], "payload": {"tenant_id": null}}
        ]}),
    )
    .unwrap();
    for point in out["points"].as_array().unwrap() {
        assert_eq!(point["payload"]["tenant_id"], "acme", "{point}");
    }
    assert_eq!(out["points"][2]["payload"]["title"], "x");

    let out = rewritten(
        "PUT",
        upsert,
        json!({"batch": {"ids": [1, 2], "vectors": [[0.1], [0.2]]}}),
    )
    .unwrap();
    assert_eq!(
        out["batch"]["payloads"],
        json!([{"tenant_id": "acme"}, {"tenant_id": "acme"}])
    );
    let out = rewritten(
        "PUT",
        upsert,
        json!({"batch": {"ids": [1, 2], "vectors": [[0.1], [0.2]], "payloads": [null, {"a": 1}]}}),
    )
    .unwrap();
    assert_eq!(
        out["batch"]["payloads"],
        json!([{"tenant_id": "acme"}, {"a": 1, "tenant_id": "acme"}])
    );
}

#[test]
fn records_claiming_another_tenant_are_refused() {
    let upsert = "/search/collections/shared/points";
    for payload in [
        json!("globex"),
        json!(["acme", "globex"]),
        json!(7),
        json!({"value": "acme"}),
    ] {
        assert_eq!(
            refused_body(
                "PUT",
                upsert,
                json!({"points": [{"id": 1, "payload": {"tenant_id": payload}}]})
            ),
            Reason::CrossTenantNamespace,
            "{payload}"
        );
    }
    assert_eq!(
        refused_body(
            "PUT",
            upsert,
            json!({"batch": {"ids": [1], "payloads": [{"tenant_id": "globex"}]}})
        ),
        Reason::CrossTenantNamespace
    );
    for body in [
        json!({}),
        json!({"points": {}}),
        json!({"points": [1]}),
        json!({"points": [{"payload": []}]}),
        json!({"batch": {"payloads": []}}),
        json!({"batch": {"ids": [1], "payloads": {}}}),
    ] {
        assert_eq!(
            refused_body("PUT", upsert, body.clone()),
            Reason::InvalidBody,
            "{body}"
        );
    }
}

#[test]
fn qdrant_operations_that_cannot_be_confined_are_refused_on_a_shared_collection() {
    for (method, raw) in [
        ("GET", "/search/collections"),
        ("GET", "/search/collections/shared"),
        ("PUT", "/search/collections/shared"),
        ("DELETE", "/search/collections/shared"),
        ("GET", "/search/collections/shared/points/42"),
        ("POST", "/search/collections/shared/points"),
        ("POST", "/search/collections/shared/points/payload"),
        ("PUT", "/search/collections/shared/points/payload"),
        ("POST", "/search/collections/shared/points/payload/clear"),
        ("PUT", "/search/collections/shared/points/vectors"),
        ("POST", "/search/collections/shared/points/batch"),
        ("POST", "/search/collections/shared/points/recommend"),
        ("POST", "/search/collections/shared/points/discover"),
        ("PUT", "/search/collections/shared/index"),
        ("GET", "/search/aliases"),
        ("GET", "/search/points/search"),
    ] {
        assert_eq!(
            denied(method, raw),
            Reason::VectorOperationNotAllowed,
            "{method} {raw}"
        );
    }
}

#[test]
fn a_client_filter_that_is_not_an_object_is_invalid() {
    for filter in [json!([]), json!("tenant_id"), json!(1)] {
        assert_eq!(
            refused_body("POST", SEARCH, json!({"filter": filter})),
            Reason::InvalidBody
        );
        assert_eq!(
            refused_body(
                "POST",
                "/shared-pc/query",
                json!({"vector": [1.0], "filter": filter})
            ),
            Reason::InvalidBody
        );
    }
}

// === metadata_filter, pinecone dialect ===

#[test]
fn pinecone_queries_on_a_shared_index_are_and_ed_with_the_tenant() {
    let out = rewritten(
        "POST",
        "/shared-pc/query",
        json!({"vector": [1.0], "topK": 2}),
    )
    .unwrap();
    assert_eq!(out["filter"], json!({"org": {"$eq": "org-acme-ns"}}));
    let out = rewritten(
        "POST",
        "/shared-pc/query",
        json!({"vector": [1.0], "filter": {}}),
    )
    .unwrap();
    assert_eq!(out["filter"], json!({"org": {"$eq": "org-acme-ns"}}));
    let client = json!({"$or": [{"org": {"$eq": "org-globex"}}, {"genre": {"$ne": "x"}}]});
    let out = rewritten(
        "POST",
        "/shared-pc/query",
        json!({"vector": [1.0], "filter": client.clone(), "namespace": "shared"}),
    )
    .unwrap();
    assert_eq!(
        out["filter"],
        json!({"$and": [{"org": {"$eq": "org-acme-ns"}}, client]})
    );
    assert_eq!(out["namespace"], "shared");
}

#[test]
fn pinecone_selection_by_id_is_refused_on_a_shared_index() {
    assert_eq!(
        refused_body("POST", "/shared-pc/query", json!({"id": "v1", "topK": 2})),
        Reason::VectorOperationNotAllowed
    );
    for body in [
        json!({"ids": ["v1"]}),
        json!({"deleteAll": true}),
        json!({}),
        json!({"ids": ["v1"], "filter": {"a": 1}}),
    ] {
        assert_eq!(
            refused_body("POST", "/shared-pc/vectors/delete", body.clone()),
            Reason::VectorOperationNotAllowed,
            "{body}"
        );
    }
    let out = rewritten(
        "POST",
        "/shared-pc/vectors/delete",
        json!({"filter": {"doc": {"$eq": "d"}}}),
    )
    .unwrap();
    assert_eq!(
        out["filter"],
        json!({"$and": [{"org": {"$eq": "org-acme-ns"}}, {"doc": {"$eq": "d"}}]})
    );
}

#[test]
fn pinecone_upserts_on_a_shared_index_are_stamped() {
    let out = rewritten(
        "POST",
        "/shared-pc/vectors/upsert",
        json!({"vectors": [{"id": "a", "values": [1.0]},
                           {"id": "b", "values": [1.0], "metadata": {"org": "org-acme-ns", "k": 1}}]}),
    )
    .unwrap();
    assert_eq!(out["vectors"][0]["metadata"], json!({"org": "org-acme-ns"}));
    assert_eq!(
        out["vectors"][1]["metadata"],
        json!({"org": "org-acme-ns", "k": 1})
    );
    assert_eq!(
        refused_body(
            "POST",
            "/shared-pc/vectors/upsert",
            json!({"vectors": [{"id": "a", "metadata": {"org": "org-globex"}}]})
        ),
        Reason::CrossTenantNamespace
    );
    assert_eq!(
        refused_body("POST", "/shared-pc/vectors/upsert", json!({"points": []})),
        Reason::InvalidBody
    );
}

#[test]
fn pinecone_operations_that_cannot_be_confined_are_refused_on_a_shared_index() {
    for (method, raw) in [
        ("GET", "/shared-pc/vectors/fetch?ids=a"),
        ("GET", "/shared-pc/vectors/list"),
        ("POST", "/shared-pc/vectors/update"),
        ("POST", "/shared-pc/describe_index_stats"),
        ("GET", "/shared-pc/query"),
    ] {
        assert_eq!(
            denied(method, raw),
            Reason::VectorOperationNotAllowed,
            "{method} {raw}"
        );
    }
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

// === Shared stores: allow-lists ===

#[test]
fn shared_stores_need_a_non_empty_allow_list_for_their_dialect() {
    let entry = |extra: Value| {
        let mut e = json!({"path_prefix": "/s", "kind": "metadata_filter", "dialect": "qdrant"});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        config_error(json!([e]))
    };
    assert!(
        entry(json!({})).starts_with("vector_stores[0].collections: required for dialect qdrant")
    );
    assert!(entry(json!({"collections": []})).starts_with("vector_stores[0].collections: required"));
    assert_eq!(
        entry(json!({"collections": ["a"], "namespaces": ["b"]})),
        "vector_stores[0].namespaces: not for dialect qdrant; use `collections`"
    );
    assert_eq!(
        entry(json!({"collections": ["a/b"]})),
        "vector_stores[0].collections[0]: must be 1-255 characters of A-Z a-z 0-9 - . _ ~"
    );
    assert_eq!(
        entry(json!({"collections": ["a", "a"]})),
        "vector_stores[0].collections[1]: listed twice"
    );
    for bad in ["..", ""] {
        assert!(
            entry(json!({"collections": [bad]})).contains("collections[0]"),
            "{bad}"
        );
    }
    let pinecone = |extra: Value| {
        let mut e = json!({"path_prefix": "/s", "kind": "metadata_filter", "dialect": "pinecone"});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        compiled(json!([e]))
    };
    assert!(pinecone(json!({})).is_err());
    assert!(pinecone(json!({"collections": ["a"]})).is_err());
    assert!(pinecone(json!({"namespaces": ["bad space"]})).is_err());
    assert!(pinecone(json!({"namespaces": [""]})).is_ok());
    // Not for the other kinds.
    assert_eq!(
        config_error(json!([{"path_prefix": "/q", "kind": "qdrant", "collections": ["a"]}])),
        "vector_stores[0].collections: only for kind metadata_filter"
    );
}

#[test]
fn shared_qdrant_store_reaches_only_its_listed_collections() {
    for collection in ["shared", "faq"] {
        let raw = format!("/search/collections/{collection}/points");
        assert!(rewritten("PUT", &raw, json!({"points": [{"id": 1, "vector": [1.0]}]})).is_ok());
    }
    // Another tenant's private collection on the same Qdrant, with the tenant's own stamp.
    for raw in [
        "/search/collections/globex~docs/points",
        "/search/collections/Shared/points",
        "/search/collections/shared2/points",
        "/search/collections/acme-ns~docs/points",
    ] {
        assert_eq!(denied("PUT", raw), Reason::CrossTenantNamespace, "{raw}");
        assert_eq!(
            denied("POST", &format!("{raw}/search")),
            Reason::CrossTenantNamespace,
            "{raw}"
        );
    }
}

#[test]
fn shared_pinecone_index_reaches_only_its_listed_namespaces() {
    for body in [
        json!({"vector": [1.0]}),
        json!({"vector": [1.0], "namespace": null}),
        json!({"vector": [1.0], "namespace": ""}),
        json!({"vector": [1.0], "namespace": "shared"}),
    ] {
        assert!(
            rewritten("POST", "/shared-pc/query", body.clone()).is_ok(),
            "{body}"
        );
    }
    for (path, body) in [
        (
            "/shared-pc/query",
            json!({"vector": [1.0], "namespace": "globex"}),
        ),
        (
            "/shared-pc/vectors/upsert",
            json!({"namespace": "globex", "vectors": [{"id": "a", "values": [1.0]}]}),
        ),
        (
            "/shared-pc/vectors/delete",
            json!({"namespace": "acme-ns", "filter": {"a": {"$eq": 1}}}),
        ),
    ] {
        assert_eq!(
            refused_body("POST", path, body.clone()),
            Reason::CrossTenantNamespace,
            "{body}"
        );
    }
    assert_eq!(
        refused_body("POST", "/shared-pc/query", json!({"namespace": 7})),
        Reason::InvalidBody
    );
    // The query string cannot name another one either.
    assert_eq!(
        denied("POST", "/shared-pc/query?namespace=globex"),
        Reason::CrossTenantNamespace
    );
    assert_eq!(
        denied("POST", "/shared-pc/query?NameSpace=globex"),
        Reason::CrossTenantNamespace
    );
    assert!(matches!(
        route_of(&stores(), "POST", "/shared-pc/query?namespace=shared"),
        VectorRoute::RewriteBody { .. }
    ));
}

// === Key spellings ===

#[test]
fn keys_fold_like_lenient_decoders_read_them() {
    for (canonical, folded) in RULE_KEYS {
        assert_eq!(fold_key(canonical), folded);
    }
    assert_eq!(fold_key("Delete_All"), "deleteall");
    assert_eq!(fold_key("ſilter"), "silter");
    assert_eq!(fold_key("\u{212A}ey"), "key");
    assert_eq!(fold_key("fil\u{0}ter\u{200B}"), "filter");
    assert_eq!(fold_key("NAME-SPACE"), "namespace");
}

#[test]
fn other_spellings_of_every_key_a_rule_reads_are_refused() {
    // (path, body with a key spelled another way)
    let cases = [
        // Selection by id, hidden from the shared-index rule.
        ("/shared-pc/query", json!({"ID": "v1"})),
        ("/shared-pc/query", json!({"Id": "v1"})),
        (
            "/shared-pc/vectors/delete",
            json!({"Ids": ["v1"], "filter": {"a": 1}}),
        ),
        (
            "/shared-pc/vectors/delete",
            json!({"delete_all": true, "filter": {"a": 1}}),
        ),
        (
            "/shared-pc/vectors/delete",
            json!({"DeleteAll": true, "filter": {"a": 1}}),
        ),
        (
            "/shared-pc/vectors/delete",
            json!({"deleteall": true, "filter": {"a": 1}}),
        ),
        // A second filter the tenant condition is not and-ed into.
        (
            "/shared-pc/query",
            json!({"Filter": {"org": {"$eq": "org-globex"}}}),
        ),
        (SEARCH, json!({"FILTER": {"must": []}})),
        (SEARCH, json!({"fil_ter": {"must": []}})),
        // Namespaces.
        ("/shared-pc/query", json!({"Namespace": "globex"})),
        ("/shared-pc/query", json!({"name_space": "globex"})),
        ("/pinecone/query", json!({"nameſpace": "globex"})),
        // Points selected by id, a lookup elsewhere, records without the stamp.
        (SEARCH, json!({"Points": [1]})),
        (SEARCH, json!({"lookupFrom": {"collection": "x"}})),
        (SEARCH, json!({"With_Lookup": "x"})),
        (
            "/search/collections/shared/points/query",
            json!({"Query": 42}),
        ),
        (
            "/search/collections/shared/points/query",
            json!({"PreFetch": {"query": 7}}),
        ),
        (
            "/search/collections/shared/points/query",
            json!({"query": {"Recommend": {"positive": [1]}}}),
        ),
        (
            "/search/collections/shared/points/search/batch",
            json!({"Searches": [{"vector": [1.0]}]}),
        ),
        (
            "/search/collections/shared/points/search/batch",
            json!({"searches": [{"vector": [1.0], "Filter": {}}]}),
        ),
        (
            "/search/collections/shared/points",
            json!({"Points": [{"id": 1}]}),
        ),
        (
            "/search/collections/shared/points",
            json!({"points": [{"id": 1, "Payload": {"tenant_id": "globex"}}]}),
        ),
        (
            "/search/collections/shared/points",
            json!({"points": [{"id": 1, "payload": {"Tenant_Id": "globex"}}]}),
        ),
        (
            "/search/collections/shared/points",
            json!({"batch": {"ids": [1], "Payloads": [{"tenant_id": "globex"}]}}),
        ),
        (
            "/shared-pc/vectors/upsert",
            json!({"vectors": [{"id": "a", "MetaData": {"org": "org-globex"}}]}),
        ),
        (
            "/shared-pc/vectors/upsert",
            json!({"Vectors": [{"id": "a", "metadata": {"org": "org-globex"}}]}),
        ),
        // Collection names in bodies of a collection-per-tenant store.
        (
            "/qdrant/collections/docs/points/query",
            json!({"query": [1.0], "Lookup_From": {"collection": "globex~docs"}}),
        ),
        (
            "/qdrant/collections/docs/points/query",
            json!({"query": [1.0], "lookup_from": {"Collection": "globex~docs"}}),
        ),
    ];
    for (path, body) in cases {
        let method = if path.ends_with("/points") {
            "PUT"
        } else {
            "POST"
        };
        assert_eq!(
            refused_body(method, path, body.clone()),
            Reason::InvalidBody,
            "{path} {body}"
        );
    }
}

#[test]
fn escaped_and_duplicate_keys_are_read_as_the_store_reads_them() {
    // `\u0069d` decodes to `id`: refused as selection by id, not missed.
    let (_, plan) = planned("POST", "/shared-pc/query");
    let refusal = rewrite_body(&plan, br#"{"vector": [1.0], "\u0069d": "v1"}"#).unwrap_err();
    assert_eq!(refusal.reason, Reason::VectorOperationNotAllowed);
    // A second `filter` after the first: decoded as the last, and-ed, and the body leaves
    // with one `filter` only.
    let (_, plan) = planned("POST", SEARCH);
    let out = rewrite_body(
        &plan,
        br#"{"filter": {"must": []}, "\u0066ilter": {"should": [{"key": "tenant_id", "match": {"value": "globex"}}]}}"#,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("\"filter\"").count(), 1, "{text}");
    let out: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(out["filter"]["must"][0]["match"]["value"], "acme");
}

#[test]
fn ordinary_keys_near_rule_keys_are_kept() {
    let out = rewritten(
        "POST",
        SEARCH,
        json!({"vector": [1.0], "with_payload": true, "with_vector": false,
               "score_threshold": 0.5, "using": "dense"}),
    )
    .unwrap();
    assert_eq!(out["with_payload"], true);
    // Payload keys other than the tenant field's spellings are the client's data.
    let out = rewritten(
        "PUT",
        "/search/collections/shared/points",
        json!({"points": [{"id": 1, "vector": [1.0], "payload": {"ID": 5, "Filter": "x"}}]}),
    )
    .unwrap();
    assert_eq!(out["points"][0]["payload"]["ID"], 5);
}
