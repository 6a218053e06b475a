use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::policy::denial::Reason;
use crate::policy::namespace::normalize;
use crate::policy::vector_store::route;
use crate::policy::vector_store::tests::{
    compiled, config_error, denied, forwarded, refused_body, rewritten, route_of, stores,
    NAMESPACE, TENANT,
};
use serde_json::json;

fn naming(template: &str, namespace: &str) -> CollectionNaming {
    parse_collection("t", template)
        .unwrap()
        .for_tenant("tenant", namespace)
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
