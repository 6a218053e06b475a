//! Weaviate and Chroma bodies: `vector_store::rewrite_body` for every Weaviate body plan (one
//! object, batch objects, batch deletes, batch references, GraphQL, own tenants) and Chroma's
//! creation bodies. The first byte picks the request.
//!
//! Never panics; every object, batch object and reference that goes on carries the tenant's
//! Weaviate tenant; a confined GraphQL query is confined again unchanged (every collection
//! already carries the tenant) and never names another tenant. On a store with a collection
//! per tenant (`/wv-coll`), every object and reference that goes on names the tenant's own
//! collections only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tenant_guard::policy::config::Config;
use tenant_guard::policy::namespace;
use tenant_guard::policy::vector_store::{self, BodyEdit, VectorRoute};

fn config() -> &'static Config {
    thread_local! {
        static CONFIG: &'static Config = Box::leak(Box::new({
            let doc = serde_json::json!({
              "providers": {"corp": {"issuer": "https://corp", "audiences": ["gw"],
                "jwks": {"keys": [{"kty": "oct", "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}}},
              "vector_stores": [
                {"path_prefix": "/weaviate", "kind": "weaviate", "allow": ["own_tenant"]},
                {"path_prefix": "/wv-coll", "kind": "weaviate", "collection": "T_{tenant}_{name}"},
                {"path_prefix": "/chroma", "kind": "chroma",
                 "allow": ["create_tenant", "create_database"]}
              ]
            });
            Config::parse(doc.to_string().as_bytes()).expect("fixture configuration")
        }));
    }
    CONFIG.with(|c| *c)
}

const REQUESTS: [(&str, &str); 13] = [
    ("POST", "/weaviate/v1/objects"),
    ("PUT", "/weaviate/v1/objects/Docs/1"),
    ("POST", "/weaviate/v1/batch/objects"),
    ("DELETE", "/weaviate/v1/batch/objects"),
    ("POST", "/weaviate/v1/batch/references"),
    ("POST", "/weaviate/v1/graphql"),
    ("POST", "/weaviate/v1/schema/Docs/tenants"),
    ("POST", "/chroma/api/v2/tenants"),
    ("POST", "/weaviate/v1/objects/Docs/1/references/cites"),
    ("POST", "/wv-coll/v1/objects"),
    ("POST", "/wv-coll/v1/batch/objects"),
    ("POST", "/wv-coll/v1/batch/references"),
    ("POST", "/wv-coll/v1/graphql"),
];

const OWN: &str = "acme-ns";
/// The tenant's collections on `/wv-coll`, as Weaviate reads names (first letter upper-cased).
const OWN_PREFIX: &str = "T_acme_";

fn own_collection(name: &Value) -> bool {
    let name = name.as_str().expect("a collection name");
    let mut chars = name.chars();
    let read: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    read.strip_prefix(OWN_PREFIX)
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('_'))
}

/// The collection of a beacon `weaviate://host/C/...`.
fn beacon_collection(beacon: &Value) -> Value {
    let beacon = beacon.as_str().expect("a beacon");
    Value::String(beacon.split('/').nth(3).expect("a collection").to_string())
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (method, path) = REQUESTS[usize::from(selector) % REQUESTS.len()];
    let normalized = namespace::normalize(path.as_bytes()).expect("fixture path");
    let route = vector_store::route(&config().vector_stores, method, &normalized, "acme", OWN);
    let VectorRoute::RewriteBody { plan, .. } = route else {
        panic!("{method} {path}: no body plan: {route:?}");
    };
    let Ok(out) = vector_store::rewrite_body(&plan, body) else {
        return;
    };
    let out: Value = serde_json::from_slice(&out).expect("rewritten body is not JSON");
    let BodyEdit::Weaviate(edit) = &plan.edit else {
        return;
    };
    match path {
        "/weaviate/v1/objects" | "/weaviate/v1/objects/Docs/1" => {
            assert_eq!(out["tenant"], OWN, "{out}")
        }
        "/weaviate/v1/batch/objects" if method == "POST" => {
            for object in out["objects"].as_array().expect("objects") {
                assert_eq!(object["tenant"], OWN, "{out}");
            }
        }
        "/weaviate/v1/batch/references" => {
            for reference in out.as_array().expect("references") {
                assert_eq!(reference["tenant"], OWN, "{out}");
            }
        }
        "/weaviate/v1/graphql" | "/wv-coll/v1/graphql" => {
            let query = out["query"].as_str().expect("query");
            let again = serde_json::json!({"query": query}).to_string();
            let twice = vector_store::rewrite_body(&plan, again.as_bytes())
                .expect("a confined query is confined again");
            let twice: Value = serde_json::from_slice(&twice).expect("JSON");
            assert_eq!(twice["query"], query, "confining is not idempotent");
            let tenant = path.starts_with("/weaviate").then(|| OWN.to_string());
            assert_eq!(edit.tenant, tenant);
        }
        "/wv-coll/v1/objects" => {
            assert!(own_collection(&out["class"]), "{out}");
            assert_eq!(out, serde_json::from_slice::<Value>(body).expect("JSON"));
        }
        "/wv-coll/v1/batch/objects" => {
            for object in out["objects"].as_array().expect("objects") {
                assert!(own_collection(&object["class"]), "{out}");
            }
        }
        "/wv-coll/v1/batch/references" => {
            for reference in out.as_array().expect("references") {
                assert!(
                    own_collection(&beacon_collection(&reference["from"])),
                    "{out}"
                );
                assert!(
                    own_collection(&beacon_collection(&reference["to"])),
                    "{out}"
                );
            }
        }
        _ => {}
    }
});
