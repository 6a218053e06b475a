use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::policy::denial::Reason;
use crate::policy::vector_store::rewrite_body;
use crate::policy::vector_store::tests::{planned, refused_body, rewritten, SEARCH};
use serde_json::json;

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
