//! `namespace::normalize`: never panics, is idempotent (normalising a result's target gives the
//! same result), and its result has no dot segments, no empty segments, no `\`, and no escape of
//! `/`, `\` or `%`. Then the normalised path is placed for a tenant (`namespace::place`) and
//! routed through vector stores (`vector_store::route`): neither panics, and a placed path stays
//! under the tenant's prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_guard::policy::config::Config;
use tenant_guard::policy::{namespace, vector_store};

fn config() -> &'static Config {
    // Built once per thread (libFuzzer runs one) and kept: `Config` is not `Sync` (plans'
    // limits are shared through `Rc`).
    thread_local! {
        static CONFIG: &'static Config = Box::leak(Box::new({
            let doc = serde_json::json!({
              "providers": {"corp": {"issuer": "https://corp", "audiences": ["gw"],
                "jwks": {"keys": [{"kty": "oct", "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}}},
              "routing": {"path_prefix": "/tenants/{namespace}", "authority": "{namespace}.internal"},
              "vector_stores": [
                {"path_prefix": "/qdrant", "kind": "qdrant"},
                {"path_prefix": "/v1/pinecone", "kind": "pinecone"},
                {"path_prefix": "/search", "kind": "metadata_filter", "dialect": "qdrant",
                 "collections": ["shared"]},
                {"path_prefix": "/pcsearch", "kind": "metadata_filter", "dialect": "pinecone",
                 "namespaces": ["", "shared"]}
              ]
            });
            Config::parse(doc.to_string().as_bytes()).expect("fixture configuration")
        }));
    }
    CONFIG.with(|config| *config)
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, raw)) = data.split_first() else {
        return;
    };
    let Ok(path) = namespace::normalize(raw) else {
        return;
    };
    let again = namespace::normalize(path.target().as_bytes()).expect("normal form refused");
    assert_eq!(again, path, "not idempotent");
    assert!(path.path.starts_with('/'));
    assert!(!path.path.contains('\\'));
    assert!(!path.path.contains("//"));
    for bad in ["%2F", "%5C", "%25"] {
        assert!(!path.path.contains(bad), "{bad} in {}", path.path);
    }
    for segment in path.path.split('/') {
        assert!(
            segment != "." && segment != "..",
            "dot segment in {}",
            path.path
        );
    }

    let config = config();
    let method = METHODS[usize::from(selector) % METHODS.len()];
    let _ = vector_store::route(&config.vector_stores, method, &path, "acme", "acme-ns");
    if let Some(routing) = &config.routing {
        if let Ok(placed) = namespace::place(routing, "acme", "acme-ns", &path) {
            let target = placed.path.unwrap_or_else(|| path.target());
            assert!(
                target == "/tenants/acme-ns"
                    || target.starts_with("/tenants/acme-ns/")
                    || target.starts_with("/tenants/acme-ns?"),
                "{target} is outside the tenant's prefix"
            );
        }
    }
});
