#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::policy::denial::Reason;
use crate::policy::vector_store::tests::{
    config_error, denied, forwarded, refused_body, rewritten, NAMESPACE,
};
use serde_json::json;

const OWN: &str = "/chroma/api/v2/tenants/acme-ns/databases/default_database";

#[test]
fn paths_into_the_tenants_own_database_go_on() {
    for (method, below) in [
        ("GET", ""),
        ("GET", "/collections"),
        ("POST", "/collections"),
        ("GET", "/collections/docs"),
        ("PUT", "/collections/3fa85f64-5717-4562-b3fc-2c963f66afa6"),
        ("DELETE", "/collections/docs"),
        (
            "POST",
            "/collections/3fa85f64-5717-4562-b3fc-2c963f66afa6/add",
        ),
        (
            "POST",
            "/collections/3fa85f64-5717-4562-b3fc-2c963f66afa6/query",
        ),
        (
            "GET",
            "/collections/3fa85f64-5717-4562-b3fc-2c963f66afa6/count",
        ),
        ("GET", "/collections_count"),
    ] {
        let raw = format!("{OWN}{below}");
        assert_eq!(forwarded(method, &raw), raw, "{method} {raw}");
    }
    for raw in [
        "/chroma/api/v2/heartbeat",
        "/chroma/api/v2/version",
        "/chroma/api/v2/auth/identity",
        "/chroma/api/v2/pre-flight-checks",
        "/chroma/api/v2/tenants/acme-ns",
        "/shared-chroma/api/v2/tenants/shared/databases/db-acme/collections",
        "/shared-chroma/api/v2/tenants/shared",
    ] {
        assert_eq!(forwarded("GET", raw), raw);
    }
}

#[test]
fn paths_into_another_tenant_or_database_are_refused() {
    for raw in [
        "/chroma/api/v2/tenants/globex/databases/default_database/collections",
        "/chroma/api/v2/tenants/acme-ns/databases/other/collections",
        "/chroma/api/v2/tenants/acme/databases/default_database",
        "/chroma/api/v2/tenants/globex",
        "/chroma/api/v2/tenants/acme%2Dns2/databases/default_database",
        "/shared-chroma/api/v2/tenants/shared/databases/db-globex/collections",
        "/shared-chroma/api/v2/tenants/default_tenant/databases/db-acme/collections",
    ] {
        assert_eq!(denied("GET", raw), Reason::CrossTenantNamespace, "{raw}");
    }
}

#[test]
fn creation_only_as_allowed_and_only_of_the_own() {
    let body = json!({"name": "default_database"});
    assert_eq!(
        rewritten(
            "POST",
            "/chroma/api/v2/tenants/acme-ns/databases",
            body.clone()
        )
        .unwrap(),
        body
    );
    assert_eq!(
        refused_body(
            "POST",
            "/chroma/api/v2/tenants/acme-ns/databases",
            json!({"name": "other"})
        ),
        Reason::CrossTenantNamespace
    );
    assert_eq!(
        denied("POST", "/chroma/api/v2/tenants/globex/databases"),
        Reason::CrossTenantNamespace
    );
    let tenant = json!({"name": "shared"});
    assert_eq!(
        rewritten("POST", "/shared-chroma/api/v2/tenants", tenant.clone()).unwrap(),
        tenant
    );
    assert_eq!(
        refused_body(
            "POST",
            "/shared-chroma/api/v2/tenants",
            json!({"Name": "shared"})
        ),
        Reason::InvalidBody
    );
    for (method, raw) in [
        ("POST", "/chroma/api/v2/tenants"),
        ("POST", "/shared-chroma/api/v2/tenants/shared/databases"),
        ("GET", "/chroma/api/v2/tenants/acme-ns/databases"),
        ("DELETE", OWN),
        ("PATCH", "/chroma/api/v2/tenants/acme-ns"),
        ("POST", "/chroma/api/v2/reset"),
        ("GET", "/chroma/api/v1/collections"),
        ("GET", "/chroma/openapi.json"),
    ] {
        assert_eq!(
            denied(method, raw),
            Reason::VectorOperationNotAllowed,
            "{method} {raw}"
        );
    }
    assert_eq!(NAMESPACE, "acme-ns");
}

#[test]
fn chroma_configuration_is_checked() {
    for (entry, expected) in [
        (
            json!({"path_prefix": "/c", "kind": "chroma", "tenant": "t", "database": "d"}),
            "vector_stores[0].tenant",
        ),
        (
            json!({"path_prefix": "/c", "kind": "chroma", "tenant": "{tenant}/x"}),
            "vector_stores[0].tenant",
        ),
        (
            json!({"path_prefix": "/c", "kind": "chroma", "database": "{tenant}{namespace}"}),
            "vector_stores[0].database",
        ),
        (
            json!({"path_prefix": "/c", "kind": "chroma", "allow": ["own_tenant"]}),
            "vector_stores[0].allow[0]",
        ),
        (
            json!({"path_prefix": "/c", "kind": "weaviate", "database": "d"}),
            "vector_stores[0].database: only for kind chroma",
        ),
    ] {
        let error = config_error(json!([entry]));
        assert!(error.contains(expected), "{error}");
    }
}
