use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::policy::denial::Reason;
use crate::policy::vector_store::rewrite_body;
use crate::policy::vector_store::tests::{
    denied, forwarded, planned, refused_body, rewritten, NAMESPACE,
};
use serde_json::json;

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
