"""Vector stores (contract: ``vector_stores``, documented in src/policy/vector_store.rs and,
kind by kind, in src/policy/vector_store/): Qdrant with a collection per tenant, Pinecone with
a namespace per tenant, and shared collections confined by a metadata filter. Every test checks what the upstream received (or
that nothing reached it)."""

import json

import pytest

from harness.expect import assert_denied
from harness.records import filter_record


def post(gw, path, body, token=None, method="POST", **kwargs):
    return gw.client.request(method, path, body=body, token=token or gw.acme, **kwargs)


def forwarded(gw, resp):
    """What the vector-store upstream received for an admitted request (and nothing else
    anywhere)."""
    assert resp.status == 200, resp
    assert gw.reached(resp.request_id) == ["v"]
    seen = gw.vec.received(resp.request_id)
    assert seen.header_values("x-tenant-namespace") == ["acme-ns"]
    return seen


def refused(gw, resp, status, reason, body_time=False):
    """A denial with its record. Decided from the headers: nothing reached any upstream.
    Decided from the body (``body_time``): the upstream never received the request; its
    headers may have left already (Envoy forwards them before the body is read, see
    src/host/filter.rs), and the request was then reset."""
    assert_denied(resp, status, reason)
    reached = gw.reached(resp.request_id)
    if body_time:
        assert gw.vec.find(resp.request_id) == [], "a refused request reached the upstream"
        assert reached in ([], ["v"]), f"a refused request reached upstream(s) {reached}"
    else:
        assert reached == [], f"a refused request reached upstream(s) {reached}"
    record = filter_record(gw.proxy, resp.request_id)
    assert (record["decision"], record["reason"], record["tenant"]) == \
        ("deny", reason, "acme"), record


# === Qdrant: a collection per tenant ===

def test_qdrant_collection_in_the_path_is_the_tenants(namespace_gateway):
    gw = namespace_gateway
    body = {"vector": [0.1, 0.2, 0.3], "limit": 3, "with_payload": True}
    seen = forwarded(gw, post(gw, "/qdrant/collections/docs/points/search?timeout=5", body))
    assert seen.method == "POST"
    assert seen.path == "/qdrant/collections/acme-ns~docs/points/search?timeout=5"
    assert json.loads(seen.body) == body
    # Not placed under routing.path_prefix (confined by its own rule), but on the tenant's
    # routing.authority, so no route can pick a backend by the client's Host.
    assert seen.header("host") == "acme-ns.models.internal"


@pytest.mark.parametrize("method,path,target", [
    ("GET", "/qdrant/collections/docs", "/qdrant/collections/acme-ns~docs"),
    ("DELETE", "/qdrant/collections/docs", "/qdrant/collections/acme-ns~docs"),
    ("GET", "/qdrant/collections/docs/exists", "/qdrant/collections/acme-ns~docs/exists"),
    ("GET", "/qdrant/collections/docs/points/17", "/qdrant/collections/acme-ns~docs/points/17"),
    ("PUT", "/qdrant/collections/docs/index", "/qdrant/collections/acme-ns~docs/index"),
])
def test_qdrant_operations_below_a_collection_reach_the_tenants(namespace_gateway, method,
                                                                path, target):
    gw = namespace_gateway
    body = {"field_name": "color"} if method == "PUT" else None
    seen = forwarded(gw, gw.client.request(method, path, body=body, token=gw.acme))
    assert (seen.method, seen.path) == (method, target)


def test_qdrant_collection_names_inside_bodies_are_wrapped(namespace_gateway):
    gw = namespace_gateway
    create = {"vectors": {"size": 4, "distance": "Cosine"}, "init_from": {"collection": "old"}}
    seen = forwarded(gw, post(gw, "/qdrant/collections/docs", create, method="PUT"))
    assert seen.path == "/qdrant/collections/acme-ns~docs"
    assert json.loads(seen.body) == dict(create, init_from={"collection": "acme-ns~old"})

    query = {"query": {"recommend": {"positive": [1]}}, "lookup_from": {"collection": "other"},
             "limit": 2}
    seen = forwarded(gw, post(gw, "/qdrant/collections/docs/points/query", query))
    assert json.loads(seen.body) == dict(query, lookup_from={"collection": "acme-ns~other"})


def test_qdrant_collection_list_shows_only_the_tenants_under_client_names(namespace_gateway):
    gw = namespace_gateway
    listing = {"result": {"collections": [
        {"name": "acme-ns~docs"}, {"name": "globex~docs"}, {"name": "acme-ns~faq"},
        {"name": "plain"}, {"name": "acme-ns~"}, {"name": "acme-ns~a~b"},
        {"name": "acme-ns-x~docs"}, {"name": "xacme-ns~docs"}]},
        "status": "ok", "time": 0.000021}
    request_id = "tg-test-qdrant-list"
    gw.vec.reply_for(request_id, listing)
    resp = gw.client.get("/qdrant/collections", token=gw.acme, request_id=request_id)
    seen = forwarded(gw, resp)
    assert (seen.method, seen.path) == ("GET", "/qdrant/collections")
    body = resp.json()
    assert body["result"]["collections"] == [{"name": "docs"}, {"name": "faq"}]
    assert body["status"] == "ok"
    length = resp.header("content-length")
    assert length is None or int(length) == len(resp.body)


@pytest.mark.parametrize("method,path", [
    ("GET", "/qdrant/aliases"),
    ("POST", "/qdrant/collections/aliases"),
    ("GET", "/qdrant/collections/docs/aliases"),
    ("GET", "/qdrant/collections/docs/snapshots"),
    ("POST", "/qdrant/collections/docs/shards"),
    ("GET", "/qdrant/collections/docs/cluster"),
    ("GET", "/qdrant/cluster"),
    ("GET", "/qdrant/telemetry"),
    ("GET", "/qdrant/metrics"),
    ("GET", "/qdrant/snapshots"),
    ("GET", "/qdrant"),
    ("GET", "/qdrant/"),
    ("DELETE", "/qdrant/collections"),
])
def test_qdrant_operations_that_cross_tenants_are_refused(namespace_gateway, method, path):
    gw = namespace_gateway
    body = {"actions": []} if method == "POST" else None
    resp = gw.client.request(method, path, body=body, token=gw.acme)
    refused(gw, resp, 403, "vector_operation_not_allowed")


@pytest.mark.parametrize("name", ["globex~docs", "acme-ns~docs", "a~b", "bad%20name"])
def test_qdrant_names_that_could_cross_tenants_are_invalid(namespace_gateway, name):
    gw = namespace_gateway
    resp = post(gw, f"/qdrant/collections/{name}/points/search", {"vector": [1.0]})
    refused(gw, resp, 400, "invalid_path")


# === Pinecone: a namespace per tenant ===

QUERY = {"vector": [0.1, 0.2], "topK": 3, "includeMetadata": True}


@pytest.mark.parametrize("given", [None, "", "acme-ns"], ids=["absent", "empty", "own"])
def test_pinecone_namespace_is_the_tenants(namespace_gateway, given):
    gw = namespace_gateway
    body = dict(QUERY) if given is None else dict(QUERY, namespace=given)
    seen = forwarded(gw, post(gw, "/pinecone/query", body))
    assert seen.path == "/pinecone/query"
    assert json.loads(seen.body) == dict(QUERY, namespace="acme-ns")


@pytest.mark.parametrize("path", ["/pinecone/vectors/upsert", "/pinecone/vectors/delete",
                                  "/pinecone/vectors/update"])
def test_pinecone_writes_get_the_tenants_namespace(namespace_gateway, path):
    gw = namespace_gateway
    body = {"vectors": [{"id": "v1", "values": [0.1, 0.2]}]} if path.endswith("upsert") \
        else {"ids": ["v1"]} if path.endswith("delete") else {"id": "v1", "values": [0.3, 0.4]}
    seen = forwarded(gw, post(gw, path, body))
    assert json.loads(seen.body) == dict(body, namespace="acme-ns")


def test_pinecone_other_tenants_namespace_is_refused(namespace_gateway):
    gw = namespace_gateway
    resp = post(gw, "/pinecone/query", dict(QUERY, namespace="globex"))
    refused(gw, resp, 403, "cross_tenant_namespace", body_time=True)


@pytest.mark.parametrize("body", [
    dict(QUERY, Namespace="globex"),
    dict(QUERY, namespace=7),
    b"not json at all",
    b"[1, 2, 3]",
], ids=["case-variant-key", "number", "not-json", "json-array"])
def test_pinecone_body_that_is_not_a_query_object_is_invalid(namespace_gateway, body):
    gw = namespace_gateway
    resp = post(gw, "/pinecone/query", body,
                headers={"content-type": "application/json"})
    refused(gw, resp, 400, "invalid_body", body_time=True)


def test_pinecone_body_over_its_cap_is_too_large(namespace_gateway):
    gw = namespace_gateway
    body = dict(QUERY, vector=[0.123456789] * 1000)  # > 4096 bytes, the store's cap
    assert len(json.dumps(body)) > 4096
    resp = post(gw, "/pinecone/query", body)
    refused(gw, resp, 413, "body_too_large", body_time=True)


@pytest.mark.parametrize("query,target", [
    ("ids=a&ids=b", "ids=a&ids=b&namespace=acme-ns"),
    ("ids=a&namespace=acme-ns", "ids=a&namespace=acme-ns"),
    ("namespace=&ids=a", "ids=a&namespace=acme-ns"),
    ("", "namespace=acme-ns"),
])
def test_pinecone_fetch_gets_the_tenants_namespace_in_its_query(namespace_gateway, query,
                                                                 target):
    gw = namespace_gateway
    path = "/pinecone/vectors/fetch" + (f"?{query}" if query else "")
    seen = forwarded(gw, gw.client.get(path, token=gw.acme))
    assert seen.path == f"/pinecone/vectors/fetch?{target}"


@pytest.mark.parametrize("query", ["ids=a&namespace=globex", "namespace=globex",
                                   "NAMESPACE=globex&ids=a", "namespace=acme-ns&namespace=x",
                                   "name%73pace=globex"])
def test_pinecone_fetch_from_another_namespace_is_refused(namespace_gateway, query):
    gw = namespace_gateway
    resp = gw.client.get(f"/pinecone/vectors/fetch?{query}", token=gw.acme)
    refused(gw, resp, 403, "cross_tenant_namespace")


@pytest.mark.parametrize("method,path", [
    ("POST", "/pinecone/describe_index_stats"),
    ("GET", "/pinecone/describe_index_stats"),
    ("GET", "/pinecone/namespaces"),
    ("POST", "/pinecone/query/legacy"),
    ("GET", "/pinecone/vectors/anything"),
])
def test_pinecone_operations_that_reveal_other_namespaces_are_refused(namespace_gateway,
                                                                      method, path):
    gw = namespace_gateway
    body = {} if method == "POST" else None
    refused(gw, gw.client.request(method, path, body=body, token=gw.acme), 403,
            "vector_operation_not_allowed")


# === Shared collections: a metadata filter ===

def test_qdrant_filter_is_anded_into_reads(namespace_gateway):
    gw = namespace_gateway
    client_filter = {"must": [{"key": "color", "match": {"value": "red"}}]}
    body = {"vector": [0.1, 0.2], "limit": 5, "filter": client_filter}
    seen = forwarded(gw, post(gw, "/search/collections/shared/points/search", body))
    assert seen.path == "/search/collections/shared/points/search"
    sent = json.loads(seen.body)
    assert sent["filter"] == {"must": [{"key": "tenant_id", "match": {"value": "acme"}},
                                       client_filter]}
    assert {k: v for k, v in sent.items() if k != "filter"} == \
        {"vector": [0.1, 0.2], "limit": 5}

    seen = forwarded(gw, post(gw, "/search/collections/shared/points/scroll", {"limit": 10}))
    assert json.loads(seen.body) == {
        "limit": 10, "filter": {"must": [{"key": "tenant_id", "match": {"value": "acme"}}]}}


def test_qdrant_upsert_is_stamped_with_the_tenant(namespace_gateway):
    gw = namespace_gateway
    body = {"points": [{"id": 1, "vector": [0.1, 0.2], "payload": {"color": "red"}},
                       {"id": 2, "vector": [0.3, 0.4]}]}
    seen = forwarded(gw, post(gw, "/search/collections/shared/points", body, method="PUT"))
    points = json.loads(seen.body)["points"]
    assert points[0]["payload"] == {"color": "red", "tenant_id": "acme"}
    assert points[1]["payload"] == {"tenant_id": "acme"}


def test_qdrant_upsert_for_another_tenant_is_refused(namespace_gateway):
    gw = namespace_gateway
    body = {"points": [{"id": 1, "vector": [0.1], "payload": {"tenant_id": "globex"}}]}
    resp = post(gw, "/search/collections/shared/points", body, method="PUT")
    refused(gw, resp, 403, "cross_tenant_namespace", body_time=True)


@pytest.mark.parametrize("path,body", [
    ("/search/collections/shared/points", {"ids": [1, 2]}),
    ("/search/collections/shared/points/delete", {"points": [1]}),
    ("/search/collections/shared/points/query", {"query": 17}),
    ("/search/collections/shared/points/recommend", {"positive": [1]}),
], ids=["retrieve", "delete-by-id", "query-by-id", "recommend"])
def test_qdrant_selection_by_id_in_a_shared_collection_is_refused(namespace_gateway, path,
                                                                 body):
    gw = namespace_gateway
    refused(gw, post(gw, path, body), 403, "vector_operation_not_allowed",
            body_time=path.endswith(("/query", "/delete")))


def test_pinecone_filter_is_anded_and_upserts_stamped(namespace_gateway):
    gw = namespace_gateway
    client_filter = {"genre": {"$eq": "drama"}}
    seen = forwarded(gw, post(gw, "/pcsearch/query", dict(QUERY, filter=client_filter)))
    assert json.loads(seen.body)["filter"] == \
        {"$and": [{"tenant": {"$eq": "acme-ns"}}, client_filter]}
    upsert = {"vectors": [{"id": "v1", "values": [0.1], "metadata": {"genre": "drama"}}]}
    seen = forwarded(gw, post(gw, "/pcsearch/vectors/upsert", upsert))
    assert json.loads(seen.body)["vectors"][0]["metadata"] == \
        {"genre": "drama", "tenant": "acme-ns"}


def test_metadata_filter_body_that_is_not_json_is_invalid(namespace_gateway):
    gw = namespace_gateway
    resp = post(gw, "/search/collections/shared/points/search", b"{not json",
                headers={"content-type": "application/json"})
    refused(gw, resp, 400, "invalid_body", body_time=True)


# === Weaviate: native multi-tenancy ===

def test_weaviate_objects_get_the_tenants_weaviate_tenant(namespace_gateway):
    gw = namespace_gateway
    seen = forwarded(gw, gw.client.request(
        "GET", "/weaviate/v1/objects/Docs/7a5f?consistency_level=ONE", token=gw.acme))
    assert seen.path == "/weaviate/v1/objects/Docs/7a5f?consistency_level=ONE&tenant=acme-ns"
    body = {"class": "Docs", "properties": {"title": "hello"}}
    seen = forwarded(gw, post(gw, "/weaviate/v1/objects", body))
    assert json.loads(seen.body) == dict(body, tenant="acme-ns")
    batch = {"objects": [{"class": "Docs", "properties": {}},
                         {"class": "Authors", "properties": {}, "tenant": "acme-ns"}]}
    seen = forwarded(gw, post(gw, "/weaviate/v1/batch/objects", batch))
    assert [o["tenant"] for o in json.loads(seen.body)["objects"]] == ["acme-ns", "acme-ns"]


def test_weaviate_graphql_gets_the_tenant_on_every_collection(namespace_gateway):
    gw = namespace_gateway
    query = '{ Get { Docs(limit: 2) { title } } Aggregate { Authors { meta { count } } } }'
    seen = forwarded(gw, post(gw, "/weaviate/v1/graphql", {"query": query}))
    assert json.loads(seen.body)["query"] == (
        '{ Get { Docs(tenant:"acme-ns" limit: 2) { title } } '
        'Aggregate { Authors(tenant:"acme-ns") { meta { count } } } }')


@pytest.mark.parametrize("method,path,body,status,reason,body_time", [
    ("GET", "/weaviate/v1/objects/Docs/1?tenant=globex", None, 403, "cross_tenant_namespace",
     False),
    ("GET", "/weaviate/v1/objects/Docs/1?Tenant=globex", None, 403, "cross_tenant_namespace",
     False),
    ("POST", "/weaviate/v1/objects", {"class": "Docs", "tenant": "globex"}, 403,
     "cross_tenant_namespace", True),
    ("POST", "/weaviate/v1/objects", {"class": "Secrets"}, 403, "cross_tenant_namespace",
     True),
    ("POST", "/weaviate/v1/graphql", {"query": '{ Get { Docs(tenant: "globex") { t } } }'},
     403, "cross_tenant_namespace", True),
    ("POST", "/weaviate/v1/graphql", {"query": "query($t: String) { Get { Docs(tenant: $t)"
                                               " { t } } }"}, 400, "invalid_body", True),
    ("GET", "/weaviate/v1/schema/Docs/tenants", None, 403, "vector_operation_not_allowed",
     False),
    ("POST", "/weaviate/v1/schema", {"class": "New"}, 403, "vector_operation_not_allowed",
     False),
    ("GET", "/weaviate/v1/objects", None, 403, "vector_operation_not_allowed", False),
    ("POST", "/weaviate.v1.Weaviate/Search", None, 403, "vector_operation_not_allowed",
     False),
])
def test_weaviate_requests_naming_another_tenant_or_outside_data_are_refused(
        namespace_gateway, method, path, body, status, reason, body_time):
    gw = namespace_gateway
    resp = gw.client.request(method, path, body=body, token=gw.acme)
    refused(gw, resp, status, reason, body_time=body_time)


def test_weaviate_own_tenant_management_only(namespace_gateway):
    gw = namespace_gateway
    own = [{"name": "acme-ns", "activityStatus": "HOT"}]
    seen = forwarded(gw, post(gw, "/weaviate/v1/schema/Docs/tenants", own))
    assert json.loads(seen.body) == own
    resp = post(gw, "/weaviate/v1/schema/Docs/tenants", [{"name": "globex"}])
    refused(gw, resp, 403, "cross_tenant_namespace", body_time=True)


# === Chroma: a tenant and database per gateway tenant ===

def test_chroma_paths_into_the_own_database_go_on(namespace_gateway):
    gw = namespace_gateway
    own = "/chroma/api/v2/tenants/acme-ns/databases/default_database"
    for method, path in [("GET", f"{own}/collections"), ("GET", "/chroma/api/v2/heartbeat"),
                         ("GET", "/chroma/api/v2/tenants/acme-ns"),
                         ("POST", f"{own}/collections/3fa85f64/query")]:
        body = {"query_embeddings": [[0.1, 0.2]], "n_results": 2} if method == "POST" else None
        seen = forwarded(gw, gw.client.request(method, path, body=body, token=gw.acme))
        assert seen.path == path
    seen = forwarded(gw, post(gw, "/chroma/api/v2/tenants/acme-ns/databases",
                              {"name": "default_database"}))
    assert json.loads(seen.body) == {"name": "default_database"}


@pytest.mark.parametrize("method,path,body,reason,body_time", [
    ("GET", "/chroma/api/v2/tenants/globex/databases/default_database/collections", None,
     "cross_tenant_namespace", False),
    ("GET", "/chroma/api/v2/tenants/acme-ns/databases/other/collections", None,
     "cross_tenant_namespace", False),
    ("POST", "/chroma/api/v2/tenants", {"name": "acme-ns"}, "vector_operation_not_allowed",
     False),
    ("GET", "/chroma/api/v2/tenants/acme-ns/databases", None, "vector_operation_not_allowed",
     False),
    ("POST", "/chroma/api/v2/tenants/acme-ns/databases", {"name": "other"},
     "cross_tenant_namespace", True),
    ("POST", "/chroma/api/v2/reset", None, "vector_operation_not_allowed", False),
])
def test_chroma_paths_into_another_tenant_and_creation_are_refused(namespace_gateway, method,
                                                                   path, body, reason,
                                                                   body_time):
    gw = namespace_gateway
    resp = gw.client.request(method, path, body=body, token=gw.acme)
    refused(gw, resp, 403, reason, body_time=body_time)
