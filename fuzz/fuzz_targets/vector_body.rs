//! Vector-store bodies: `vector_store::rewrite_body` for every kind of body plan, and
//! `filter_response` for a Qdrant collection list. The first byte picks the request.
//!
//! Never panics; a rewritten body is a JSON object, and for the shared (metadata filter) plans
//! it carries the tenant's condition (reads) or stamp (writes); a filtered listing holds only
//! the tenant's collections, under the client's names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tenant_guard::policy::config::Config;
use tenant_guard::policy::namespace;
use tenant_guard::policy::vector_store::{self, VectorRoute};

fn config() -> &'static Config {
    // Built once per thread (libFuzzer runs one) and kept: `Config` is not `Sync` (plans'
    // limits are shared through `Rc`).
    thread_local! {
        static CONFIG: &'static Config = Box::leak(Box::new({
            let doc = serde_json::json!({
              "providers": {"corp": {"issuer": "https://corp", "audiences": ["gw"],
                "jwks": {"keys": [{"kty": "oct", "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}}},
              "vector_stores": [
                {"path_prefix": "/qdrant", "kind": "qdrant"},
                {"path_prefix": "/pinecone", "kind": "pinecone"},
                {"path_prefix": "/search", "kind": "metadata_filter", "dialect": "qdrant",
                 "collections": ["shared"]},
                {"path_prefix": "/pcsearch", "kind": "metadata_filter", "dialect": "pinecone",
                 "field": "org", "value": "org-{namespace}", "namespaces": ["", "shared"]}
              ]
            });
            Config::parse(doc.to_string().as_bytes()).expect("fixture configuration")
        }));
    }
    CONFIG.with(|config| *config)
}

/// (method, path, kind of check): 0 none, 1 Qdrant tenant filter, 2 Qdrant stamp,
/// 3 Pinecone tenant filter, 4 Pinecone stamp, 5 Pinecone namespace.
const REQUESTS: [(&str, &str, u8); 14] = [
    ("PUT", "/qdrant/collections/docs", 0),
    ("POST", "/qdrant/collections/docs/points/query", 0),
    ("POST", "/qdrant/collections/docs/points/query/batch", 0),
    ("POST", "/qdrant/collections/docs/points/search/groups", 0),
    ("POST", "/pinecone/query", 5),
    ("POST", "/pinecone/vectors/upsert", 5),
    ("POST", "/search/collections/shared/points/search", 1),
    ("POST", "/search/collections/shared/points/query", 1),
    ("POST", "/search/collections/shared/points/search/batch", 0),
    ("POST", "/search/collections/shared/points/delete", 1),
    ("PUT", "/search/collections/shared/points", 2),
    ("POST", "/pcsearch/query", 3),
    ("POST", "/pcsearch/vectors/delete", 3),
    ("POST", "/pcsearch/vectors/upsert", 4),
];

fn qdrant_condition(filter: &Value) -> bool {
    filter["must"][0] == serde_json::json!({"key": "tenant_id", "match": {"value": "acme"}})
}

fn pinecone_condition(filter: &Value) -> bool {
    let own = serde_json::json!({"org": {"$eq": "org-acme-ns"}});
    *filter == own || filter["$and"][0] == own
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let config = config();
    if selector == 0xff {
        list_collections(config, body);
        return;
    }
    let (method, path, check) = REQUESTS[usize::from(selector) % REQUESTS.len()];
    let normalized = namespace::normalize(path.as_bytes()).expect("fixture path");
    let route = vector_store::route(
        &config.vector_stores,
        method,
        &normalized,
        "acme",
        "acme-ns",
    );
    let VectorRoute::RewriteBody { plan, .. } = route else {
        panic!("{method} {path}: no body plan: {route:?}");
    };
    let Ok(out) = vector_store::rewrite_body(&plan, body) else {
        return;
    };
    let out: Value = serde_json::from_slice(&out).expect("rewritten body is not JSON");
    assert!(out.is_object());
    match check {
        1 => assert!(qdrant_condition(&out["filter"]), "{out}"),
        2 => {
            let payloads: Vec<&Value> = match out.get("points") {
                Some(Value::Array(points)) => points.iter().map(|p| &p["payload"]).collect(),
                _ => out["batch"]["payloads"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .collect(),
            };
            for payload in payloads {
                assert_eq!(payload["tenant_id"], "acme", "{out}");
            }
        }
        3 => assert!(pinecone_condition(&out["filter"]), "{out}"),
        4 => {
            for record in out["vectors"].as_array().into_iter().flatten() {
                assert_eq!(record["metadata"]["org"], "org-acme-ns", "{out}");
            }
        }
        5 => assert_eq!(out["namespace"], "acme-ns", "{out}"),
        _ => {}
    }
});

fn list_collections(config: &Config, body: &[u8]) {
    let path = namespace::normalize(b"/qdrant/collections").expect("fixture path");
    let route = vector_store::route(&config.vector_stores, "GET", &path, "acme", "acme-ns");
    let VectorRoute::FilterResponse { plan, .. } = route else {
        panic!("no response plan: {route:?}");
    };
    let Some(out) = vector_store::filter_response(&plan, body) else {
        return;
    };
    let out: Value = serde_json::from_slice(&out).expect("filtered listing is not JSON");
    for entry in out["result"]["collections"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = entry["name"].as_str().expect("listed name");
        assert!(
            !name.contains('~'),
            "a wrapped (or foreign) name was listed: {name}"
        );
    }
}
