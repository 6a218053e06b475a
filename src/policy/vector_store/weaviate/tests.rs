#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::policy::denial::Reason;
use crate::policy::vector_store::tests::{
    compiled, config_error, denied, forwarded, planned, refused_body, rewritten, route_of,
    NAMESPACE,
};
use crate::policy::vector_store::VectorRoute;
use serde_json::json;

#[test]
fn object_requests_get_the_tenant_query_parameter() {
    for (method, raw, target) in [
        (
            "GET",
            "/weaviate/v1/objects/Docs/7a5f?consistency_level=ONE",
            "/weaviate/v1/objects/Docs/7a5f?consistency_level=ONE&tenant=acme-ns",
        ),
        (
            "HEAD",
            "/weaviate/v1/objects/Docs/7a5f?tenant=acme-ns",
            "/weaviate/v1/objects/Docs/7a5f?tenant=acme-ns",
        ),
        (
            "DELETE",
            "/weaviate/v1/objects/Docs/7a5f?tenant=",
            "/weaviate/v1/objects/Docs/7a5f?tenant=acme-ns",
        ),
        (
            "GET",
            "/weaviate/v1/objects?class=Docs&limit=5",
            "/weaviate/v1/objects?class=Docs&limit=5&tenant=acme-ns",
        ),
        (
            "GET",
            "/wv-open/objects/Anything/1",
            "/wv-open/objects/Anything/1?tenant=t-acme",
        ),
        ("GET", "/weaviate/v1/meta", "/weaviate/v1/meta"),
        (
            "GET",
            "/weaviate/v1/.well-known/ready",
            "/weaviate/v1/.well-known/ready",
        ),
    ] {
        assert_eq!(forwarded(method, raw), target, "{method} {raw}");
    }
}

#[test]
fn another_tenant_in_the_query_is_refused_however_spelled() {
    for raw in [
        "/weaviate/v1/objects/Docs/1?tenant=globex",
        "/weaviate/v1/objects/Docs/1?tenant=acme-ns&tenant=globex",
        "/weaviate/v1/objects/Docs/1?Tenant=globex",
        "/weaviate/v1/objects/Docs/1?t%65nant=globex",
        "/weaviate/v1/objects?class=Docs&tenant=globex",
    ] {
        assert_eq!(denied("GET", raw), Reason::CrossTenantNamespace, "{raw}");
    }
}

#[test]
fn collections_not_shared_and_objects_without_a_collection_are_refused() {
    assert_eq!(
        denied("GET", "/weaviate/v1/objects/Secrets/1"),
        Reason::CrossTenantNamespace
    );
    assert_eq!(
        denied("GET", "/weaviate/v1/objects?class=Secrets"),
        Reason::CrossTenantNamespace
    );
    for (method, raw) in [
        ("GET", "/weaviate/v1/objects"),
        ("GET", "/weaviate/v1/objects?limit=100"),
        ("GET", "/weaviate/v1/objects/7a5f"),
        ("DELETE", "/weaviate/v1/objects/7a5f"),
    ] {
        assert_eq!(
            denied(method, raw),
            Reason::VectorOperationNotAllowed,
            "{raw}"
        );
    }
}

#[test]
fn objects_in_bodies_get_the_tenant() {
    let object = json!({"class": "Docs", "properties": {"title": "a"}, "id": "7a5f"});
    let out = rewritten("POST", "/weaviate/v1/objects", object.clone()).unwrap();
    assert_eq!(
        out,
        json!({"class": "Docs", "properties": {"title": "a"}, "id": "7a5f", "tenant": NAMESPACE})
    );
    for tenant in [json!(null), json!(""), json!(NAMESPACE)] {
        let mut body = object.clone();
        body["tenant"] = tenant;
        let out = rewritten("PUT", "/weaviate/v1/objects/Docs/7a5f", body).unwrap();
        assert_eq!(out["tenant"], NAMESPACE);
    }
    let (path, _) = planned("PATCH", "/weaviate/v1/objects/Docs/7a5f");
    assert_eq!(path, "/weaviate/v1/objects/Docs/7a5f?tenant=acme-ns");
    let batch = json!({"fields": ["ALL"], "objects": [
        {"class": "Docs", "properties": {}},
        {"class": "Authors", "properties": {}, "tenant": NAMESPACE}
    ]});
    let out = rewritten("POST", "/weaviate/v1/batch/objects", batch).unwrap();
    for object in out["objects"].as_array().unwrap() {
        assert_eq!(object["tenant"], NAMESPACE);
    }
}

#[test]
fn bodies_naming_another_tenant_or_collection_are_refused() {
    for (method, raw, body, reason) in [
        (
            "POST",
            "/weaviate/v1/objects",
            json!({"class": "Docs", "tenant": "globex"}),
            Reason::CrossTenantNamespace,
        ),
        (
            "POST",
            "/weaviate/v1/objects",
            json!({"class": "Secrets"}),
            Reason::CrossTenantNamespace,
        ),
        (
            "POST",
            "/weaviate/v1/objects",
            json!({"class": "Docs", "Tenant": "globex"}),
            Reason::InvalidBody,
        ),
        (
            "POST",
            "/weaviate/v1/objects",
            json!({"properties": {}}),
            Reason::InvalidBody,
        ),
        (
            "POST",
            "/weaviate/v1/objects",
            json!({"class": "Docs", "tenant": 7}),
            Reason::InvalidBody,
        ),
        (
            "POST",
            "/weaviate/v1/batch/objects",
            json!({"objects": [{"class": "Docs"}, {"class": "Docs", "tenant": "globex"}]}),
            Reason::CrossTenantNamespace,
        ),
        (
            "POST",
            "/weaviate/v1/batch/objects",
            json!({"objects": "all"}),
            Reason::InvalidBody,
        ),
        (
            "DELETE",
            "/weaviate/v1/batch/objects",
            json!({"match": {"class": "Secrets", "where": {}}}),
            Reason::CrossTenantNamespace,
        ),
        (
            "DELETE",
            "/weaviate/v1/batch/objects",
            json!({"match": {"class": "Docs"}, "tenant": "globex"}),
            Reason::InvalidBody,
        ),
        (
            "POST",
            "/weaviate/v1/batch/references",
            json!([{"from": "weaviate://localhost/Docs/1/author", "to": "weaviate://localhost/Authors/2", "tenant": "globex"}]),
            Reason::CrossTenantNamespace,
        ),
        (
            "POST",
            "/weaviate/v1/batch/references",
            json!([{"from": "weaviate://localhost/Secrets/1/author", "to": "weaviate://localhost/Authors/2"}]),
            Reason::CrossTenantNamespace,
        ),
        (
            "POST",
            "/weaviate/v1/batch/references",
            json!([{"from": "weaviate://localhost/1/author"}]),
            Reason::InvalidBody,
        ),
    ] {
        assert_eq!(
            refused_body(method, raw, body.clone()),
            reason,
            "{raw} {body}"
        );
    }
}

#[test]
fn batch_references_and_deletes_get_the_tenant() {
    let references = json!([{"from": "weaviate://localhost/Docs/1/author", "to": "weaviate://localhost/Authors/2"}]);
    let out = rewritten("POST", "/weaviate/v1/batch/references", references).unwrap();
    assert_eq!(out[0]["tenant"], NAMESPACE);
    let (path, _) = planned("DELETE", "/weaviate/v1/batch/objects?output=minimal");
    assert_eq!(
        path,
        "/weaviate/v1/batch/objects?output=minimal&tenant=acme-ns"
    );
    let body = json!({"match": {"class": "Docs", "where": {"operator": "Like", "path": ["id"], "valueText": "*"}}});
    assert_eq!(
        rewritten("DELETE", "/weaviate/v1/batch/objects", body.clone()).unwrap(),
        body
    );
}

#[test]
fn graphql_gets_the_tenant() {
    let query = json!({"query": "{ Get { Docs(limit: 2) { title } } }"});
    let out = rewritten("POST", "/weaviate/v1/graphql", query).unwrap();
    assert_eq!(
        out["query"],
        "{ Get { Docs(tenant:\"acme-ns\" limit: 2) { title } } }"
    );
    let cross = json!({"query": "{ Get { Docs(tenant: \"globex\") { title } } }"});
    assert_eq!(
        refused_body("POST", "/weaviate/v1/graphql", cross),
        Reason::CrossTenantNamespace
    );
    assert_eq!(
        refused_body("POST", "/weaviate/v1/graphql", json!({"q": "{}"})),
        Reason::InvalidBody
    );
    assert_eq!(
        denied("POST", "/weaviate/v1/graphql/batch"),
        Reason::VectorOperationNotAllowed
    );
}

#[test]
fn schema_and_tenant_management_only_as_allowed() {
    assert_eq!(
        forwarded("GET", "/weaviate/v1/schema"),
        "/weaviate/v1/schema"
    );
    assert_eq!(
        forwarded("GET", "/weaviate/v1/schema/Docs"),
        "/weaviate/v1/schema/Docs"
    );
    assert_eq!(
        forwarded("GET", "/weaviate/v1/schema/Docs/tenants/acme-ns"),
        "/weaviate/v1/schema/Docs/tenants/acme-ns"
    );
    assert_eq!(
        denied("GET", "/weaviate/v1/schema/Docs/tenants/globex"),
        Reason::CrossTenantNamespace
    );
    let own = json!([{"name": NAMESPACE, "activityStatus": "HOT"}]);
    assert_eq!(
        rewritten("POST", "/weaviate/v1/schema/Docs/tenants", own.clone()).unwrap(),
        own
    );
    assert_eq!(
        rewritten(
            "DELETE",
            "/weaviate/v1/schema/Docs/tenants",
            json!([NAMESPACE])
        )
        .unwrap(),
        json!([NAMESPACE])
    );
    for body in [json!([{"name": "globex"}]), json!([NAMESPACE, "globex"])] {
        assert_eq!(
            refused_body("PUT", "/weaviate/v1/schema/Docs/tenants", body),
            Reason::CrossTenantNamespace
        );
    }
    for (method, raw) in [
        ("GET", "/weaviate/v1/schema/Docs/tenants"),
        ("POST", "/weaviate/v1/schema"),
        ("DELETE", "/weaviate/v1/schema/Docs"),
        ("POST", "/weaviate/v1/schema/Docs/properties"),
        ("GET", "/weaviate/v1/schema/Docs/shards"),
        ("GET", "/wv-open/schema"),
        ("POST", "/wv-open/schema/Anything/tenants"),
        ("GET", "/weaviate/v1/nodes"),
        ("GET", "/weaviate/v1/cluster/statistics"),
        ("POST", "/weaviate/v1/backups/filesystem"),
        ("GET", "/weaviate/v1/aliases"),
        ("POST", "/weaviate/v1/objects/validate"),
        ("GET", "/weaviate/v1/grpc-web/weaviate.v1.Weaviate/Search"),
    ] {
        assert_eq!(
            denied(method, raw),
            Reason::VectorOperationNotAllowed,
            "{method} {raw}"
        );
    }
}

#[test]
fn grpc_to_weaviate_is_refused_whatever_the_prefix() {
    for raw in [
        "/weaviate.v1.Weaviate/Search",
        "/weaviate.v1.Weaviate/BatchObjects",
        "/Weaviate.V1.Weaviate/TenantsGet",
    ] {
        assert_eq!(
            denied("POST", raw),
            Reason::VectorOperationNotAllowed,
            "{raw}"
        );
    }
}

#[test]
fn weaviate_configuration_is_checked() {
    for (entry, expected) in [
        (
            json!({"path_prefix": "/w", "kind": "weaviate", "tenant": "fixed"}),
            "vector_stores[0].tenant",
        ),
        (
            json!({"path_prefix": "/w", "kind": "weaviate", "collections": ["docs"]}),
            "vector_stores[0].collections[0]",
        ),
        (
            json!({"path_prefix": "/w", "kind": "weaviate", "allow": ["create_tenant"]}),
            "vector_stores[0].allow[0]",
        ),
        (
            json!({"path_prefix": "/w", "kind": "qdrant", "tenant": "{tenant}"}),
            "vector_stores[0].tenant: only for kind weaviate or chroma",
        ),
    ] {
        let error = config_error(json!([entry]));
        assert!(error.contains(expected), "{error}");
    }
}

// === Collection per tenant (`collection`) ===

#[test]
fn a_collection_per_tenant_confines_paths_to_the_tenants_collections() {
    for (method, raw) in [
        ("GET", "/wv-coll/v1/objects/T_acme_Docs/1"),
        (
            "DELETE",
            "/wv-coll/v1/objects/T_acme_Faq/1?consistency_level=ALL",
        ),
        // Weaviate upper-cases a collection's first letter, so does the check.
        ("GET", "/wv-coll/v1/objects/t_acme_Docs/1"),
        // The collection is the tenant's own: a tenant inside it is the tenant's business.
        ("GET", "/wv-coll/v1/objects/T_acme_Docs/1?tenant=team1"),
        ("GET", "/wv-coll/v1/objects?class=T_acme_Docs&limit=2"),
        ("GET", "/wv-one/objects/Docs_acme/1"),
        ("GET", "/wv-coll/v1/schema/T_acme_Docs"),
    ] {
        assert_eq!(forwarded(method, raw), raw, "{method} {raw}");
    }
    for (method, raw) in [
        ("GET", "/wv-coll/v1/objects/T_globex_Docs/1"),
        // Tenant acme_a's collection Docs: names may not hold the separator.
        ("GET", "/wv-coll/v1/objects/T_acme_a_Docs/1"),
        ("GET", "/wv-coll/v1/objects/T_acme_/1"),
        ("GET", "/wv-coll/v1/objects/Docs/1"),
        ("GET", "/wv-coll/v1/objects?class=T_globex_Docs"),
        ("HEAD", "/wv-one/objects/Docs_globex/1"),
        ("GET", "/wv-one/objects/Docs_acme2/1"),
        ("GET", "/wv-coll/v1/schema/T_globex_Docs"),
    ] {
        assert_eq!(
            denied(method, raw),
            Reason::CrossTenantNamespace,
            "{method} {raw}"
        );
    }
    for (method, raw) in [
        // The whole schema and tenant management name other tenants' collections.
        ("GET", "/wv-coll/v1/schema"),
        ("GET", "/wv-coll/v1/schema/T_acme_Docs/tenants/acme"),
        ("POST", "/wv-coll/v1/schema/T_acme_Docs/tenants"),
        ("POST", "/wv-coll/v1/schema"),
        ("GET", "/wv-coll/v1/objects"),
    ] {
        assert_eq!(
            denied(method, raw),
            Reason::VectorOperationNotAllowed,
            "{method} {raw}"
        );
    }
}

#[test]
fn a_collection_per_tenant_confines_collections_in_bodies() {
    let own = json!({"class": "T_acme_Docs", "tenant": "team1", "properties": {"title": "x",
        "cites": [{"beacon": "weaviate://localhost/T_acme_Docs/2"}]}});
    assert_eq!(
        rewritten("POST", "/wv-coll/v1/objects", own.clone()).unwrap(),
        own,
        "the body goes unchanged: no Weaviate tenant is set"
    );
    let batch = json!({"objects": [{"class": "T_acme_Docs", "properties": {}},
                                   {"class": "t_acme_Faq", "properties": {}}]});
    assert_eq!(
        rewritten("POST", "/wv-coll/v1/batch/objects", batch.clone()).unwrap(),
        batch
    );
    let references = json!([{"from": "weaviate://localhost/T_acme_Docs/1/cites",
                             "to": "weaviate://localhost/T_acme_Docs/2"}]);
    assert_eq!(
        rewritten("POST", "/wv-coll/v1/batch/references", references.clone()).unwrap(),
        references
    );
    let graphql = json!({"query": "{ Get { T_acme_Docs(limit: 1, nearObject: {beacon: \"weaviate://localhost/T_acme_Docs/1\"}) { cites { ... on T_acme_Docs { title } } } } Aggregate { T_acme_Faq(tenant: \"team1\") { meta { count } } } }"});
    assert_eq!(
        rewritten("POST", "/wv-coll/v1/graphql", graphql.clone()).unwrap(),
        graphql,
        "the query goes unchanged"
    );
    for (method, raw, body) in [
        (
            "POST",
            "/wv-coll/v1/objects",
            json!({"class": "T_globex_Docs"}),
        ),
        (
            "PUT",
            "/wv-coll/v1/objects/T_acme_Docs/1",
            json!({"class": "T_globex_Docs"}),
        ),
        (
            "POST",
            "/wv-coll/v1/objects",
            json!({"class": "T_acme_Docs", "properties": {
                "cites": [{"beacon": "weaviate://localhost/T_globex_Docs/2"}]}}),
        ),
        (
            "POST",
            "/wv-coll/v1/batch/objects",
            json!({"objects": [{"class": "T_acme_Docs"}, {"class": "T_globex_Docs"}]}),
        ),
        (
            "DELETE",
            "/wv-coll/v1/batch/objects",
            json!({"match": {"class": "T_globex_Docs", "where": {}}}),
        ),
        (
            "POST",
            "/wv-coll/v1/batch/references",
            json!([{"from": "weaviate://localhost/T_globex_Docs/1/cites",
                    "to": "weaviate://localhost/T_acme_Docs/2"}]),
        ),
        (
            "POST",
            "/wv-coll/v1/batch/references",
            json!([{"from": "weaviate://localhost/T_acme_Docs/1/cites",
                    "to": "weaviate://localhost/T_globex_Docs/2"}]),
        ),
        (
            "POST",
            "/wv-coll/v1/objects/T_acme_Docs/1/references/cites",
            json!({"beacon": "weaviate://localhost/T_globex_Docs/2"}),
        ),
        (
            "PUT",
            "/wv-coll/v1/objects/T_acme_Docs/1/references/cites",
            json!([{"beacon": "weaviate://localhost/T_acme_Docs/2"},
                   {"beacon": "weaviate://localhost/T_globex_Docs/3"}]),
        ),
        (
            "POST",
            "/wv-coll/v1/graphql",
            json!({"query": "{ Get { T_globex_Docs { title } } }"}),
        ),
        (
            "POST",
            "/wv-coll/v1/graphql",
            json!({"query": "{ Aggregate { T_globex_Docs { meta { count } } } }"}),
        ),
        (
            "POST",
            "/wv-coll/v1/graphql",
            json!({"query": "{ Get { mine: T_globex_Docs { title } } }"}),
        ),
        (
            "POST",
            "/wv-coll/v1/graphql",
            json!({"query": "{ Get { T_acme_Docs { cites { ... on T_globex_Docs { title } } } } }"}),
        ),
        (
            "POST",
            "/wv-coll/v1/graphql",
            json!({"query": "{ Get { T_acme_Docs(nearObject: {beacon: \"weaviate://localhost/T_globex_Docs/1\"}) { title } } }"}),
        ),
    ] {
        assert_eq!(
            refused_body(method, raw, body.clone()),
            Reason::CrossTenantNamespace,
            "{method} {raw} {body}"
        );
    }
    for body in [
        // A beacon without its collection (Weaviate's older form) could reach any.
        json!({"beacon": "weaviate://localhost/8e3a"}),
        json!({"Beacon": "weaviate://localhost/T_globex_Docs/2", "beacon": "weaviate://localhost/T_acme_Docs/2"}),
    ] {
        assert_eq!(
            refused_body(
                "POST",
                "/wv-coll/v1/objects/T_acme_Docs/1/references/cites",
                body
            ),
            Reason::InvalidBody
        );
    }
}

#[test]
fn shared_collections_also_confine_references_and_fragments() {
    for (raw, body) in [
        (
            "/weaviate/v1/batch/references",
            json!([{"from": "weaviate://localhost/Docs/1/author",
                    "to": "weaviate://localhost/Secrets/2"}]),
        ),
        (
            "/weaviate/v1/objects/Docs/1/references/author",
            json!({"beacon": "weaviate://localhost/Secrets/2"}),
        ),
        (
            "/weaviate/v1/graphql",
            json!({"query": "{ Get { Docs { author { ... on Secrets { x } } } } }"}),
        ),
    ] {
        assert_eq!(
            refused_body("POST", raw, body.clone()),
            Reason::CrossTenantNamespace,
            "{raw} {body}"
        );
    }
    let (path, _) = planned("POST", "/weaviate/v1/objects/Docs/1/references/author");
    assert_eq!(
        path,
        "/weaviate/v1/objects/Docs/1/references/author?tenant=acme-ns"
    );
}

#[test]
fn collection_templates_are_checked() {
    for (entry, expected) in [
        (
            json!({"collection": "{namespace}_Docs"}),
            "vector_stores[0].collection: must start with an upper-case letter or {name}",
        ),
        (
            json!({"collection": "T_{tenant}{name}"}),
            "vector_stores[0].collection: needs a separator",
        ),
        (
            json!({"collection": "T-{tenant}_{name}"}),
            "vector_stores[0].collection: besides its placeholders",
        ),
        (
            json!({"collection": "T_{name}_{name}_{tenant}"}),
            "vector_stores[0].collection: may contain {name} at most once",
        ),
        (
            json!({"collection": "T_{tenant}_{namespace}"}),
            "vector_stores[0].collection: must contain exactly one of",
        ),
        (
            json!({"collection": "T_Docs"}),
            "vector_stores[0].collection: must contain exactly one of",
        ),
        (
            json!({"collection": "T_{tenant}", "tenant": "{tenant}"}),
            "vector_stores[0].tenant: not with collection",
        ),
        (
            json!({"collection": "T_{tenant}", "collections": ["Docs"]}),
            "vector_stores[0].collections: not with collection",
        ),
        (
            json!({"collection": "T_{tenant}", "allow": ["read_schema", "own_tenant"]}),
            "vector_stores[0].allow[1]: own_tenant is for native multi-tenancy",
        ),
    ] {
        let mut entry = entry;
        entry["path_prefix"] = json!("/w");
        entry["kind"] = json!("weaviate");
        let error = config_error(json!([entry]));
        assert!(error.starts_with(expected), "{error}");
    }
    for template in ["{name}_{namespace}", "Docs{tenant}", "T_{tenant}_{name}_V2"] {
        let entry = json!([{"path_prefix": "/w", "kind": "weaviate", "collection": template}]);
        assert!(compiled(entry).is_ok(), "{template}");
    }
}

#[test]
fn a_name_first_template_confines_by_its_suffix() {
    let stores = compiled(json!([
        {"path_prefix": "/w", "kind": "weaviate", "collection": "{name}_{namespace}"}
    ]))
    .unwrap();
    for (raw, own) in [
        ("/w/objects/Docs_acme-ns/1", true),
        ("/w/objects/docs_acme-ns/1", true),
        ("/w/objects/Docs_x_acme-ns/1", false),
        ("/w/objects/Docs_globex/1", false),
        ("/w/objects/_acme-ns/1", false),
    ] {
        let route = route_of(&stores, "GET", raw);
        assert_eq!(
            matches!(route, VectorRoute::Forward { .. }),
            own,
            "{raw}: {route:?}"
        );
    }
}

#[test]
fn without_collections_to_confine_reference_targets_go_as_sent() {
    // Native multi-tenancy, any collection: the target resolves in the same tenant.
    let one = json!({"beacon": "weaviate://localhost/8e3a"});
    assert_eq!(
        rewritten(
            "POST",
            "/wv-open/objects/Anything/1/references/p",
            one.clone()
        )
        .unwrap(),
        one
    );
    let batch = json!([{"from": "weaviate://localhost/Anything/1/p",
                        "to": "weaviate://localhost/8e3a"}]);
    let out = rewritten("POST", "/wv-open/batch/references", batch).unwrap();
    assert_eq!(out[0]["tenant"], "t-acme");
}
