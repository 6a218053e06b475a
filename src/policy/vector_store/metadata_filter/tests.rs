use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::policy::denial::Reason;
use crate::policy::vector_store::tests::{
    compiled, config_error, denied, refused_body, rewritten, route_of, stores, SEARCH,
};
use serde_json::json;

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

// === metadata_filter, qdrant dialect ===

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
        "vector_stores[0].collections: only for kind metadata_filter or weaviate"
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
