"""Weaviate and Chroma through the gateway, driven by their official Python clients
(weaviate-client v4, chromadb-client; pinned in requirements.txt). The client of tenant acme
works in its own Weaviate tenant, its own Weaviate collections (collection per tenant) and its
own Chroma tenant and database; pointed at globex's, it is refused (403) and nothing reaches
the store. Weaviate's gRPC API, which the v4 client uses for queries and batch imports, is
refused, never passed.

Chroma is the real server (the ``chromadb`` package's ``chroma run``, installed apart from the
client by ``make venv``, see conftest's ``chroma_server``). Weaviate is a Go server shipped as a
container image, which the test machine cannot run: harness.weaviate_store answers the REST and
GraphQL shapes of Weaviate's API reference and keeps its tenant rules."""

import json
import subprocess
import urllib.request
import uuid
from pathlib import Path

import chromadb
import pytest
import weaviate
from weaviate.exceptions import UnexpectedStatusCodeError, WeaviateBaseError

from harness import bootstrap as bs
from harness.envoy_process import Envoy
from harness.keys import claims, mint
from harness.plugin_config import gateway_config, tenant
from harness.ports import port_accepts, reserve_port
from harness.process import die_with_parent, stop_process
from harness.records import filter_records
from harness.wait import wait_for
from harness.weaviate_store import WeaviateStore

CHROMA = Path(__file__).resolve().parent.parent / ".venv-chroma" / "bin" / "chroma"

TENANTS = {"acme": tenant(), "globex": tenant()}


@pytest.fixture(scope="module")
def weaviate_store():
    store = WeaviateStore({"Docs": True, "T_acme_Docs": False, "T_globex_Docs": False},
                          tenants=["acme", "globex"])
    try:
        yield store
    finally:
        store.close()


def _gateway(workdir, wasm_path, jwks_server, keys, vector_stores, routes, clusters):
    config = gateway_config(keys, TENANTS, vector_stores=vector_stores)
    default_port = next(iter(clusters.values()))
    return Envoy(workdir, bs.gateway(default_port, jwks_server.port,
                                     [bs.wasm_filter(wasm_path, config)],
                                     routes=routes, clusters=clusters))


@pytest.fixture(scope="module")
def weaviate_gateway(tmp_path_factory, wasm_path, jwks_server, keys, weaviate_store):
    """Weaviate's native multi-tenancy: the tenant's Weaviate tenant is its namespace. The
    store takes ``/v1`` (the client has no path prefix); every other path, gRPC's included,
    is routed to the store too, so a request the filter let through would reach it."""
    stores = [{"path_prefix": "/v1", "kind": "weaviate", "tenant": "{namespace}",
               "collections": ["Docs"]}]
    with _gateway(tmp_path_factory.mktemp("weaviate-mt"), wasm_path, jwks_server, keys,
                  stores, [bs.route("/", "weaviate")],
                  {"weaviate": weaviate_store.port}) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def weaviate_collections_gateway(tmp_path_factory, wasm_path, jwks_server, keys,
                                 weaviate_store):
    """A collection per tenant: ``T_<namespace>_<name>``."""
    stores = [{"path_prefix": "/v1", "kind": "weaviate", "collection": "T_{namespace}_{name}"}]
    with _gateway(tmp_path_factory.mktemp("weaviate-coll"), wasm_path, jwks_server, keys,
                  stores, [bs.route("/", "weaviate")],
                  {"weaviate": weaviate_store.port}) as proxy:
        yield proxy


def token(keys, tenant_id):
    return mint(keys.corp_rsa, claims(tenant_id))


def weaviate_client(proxy, bearer):
    """The v4 client on the gateway's one port (REST and gRPC; the client wants two host:port
    pairs, so gRPC goes to ``localhost``). ``skip_init_checks``: no gRPC health check at
    connect (gRPC is refused); the client still reads ``/v1/meta``."""
    return weaviate.connect_to_custom(
        http_host="127.0.0.1", http_port=proxy.listener_port, http_secure=False,
        grpc_host="localhost", grpc_port=proxy.listener_port, grpc_secure=False,
        headers={"authorization": f"Bearer {bearer}"}, skip_init_checks=True)


def records_for(proxy, path_start):
    return [r for r in filter_records(proxy.read_log()) if r["path"].startswith(path_start)]


class Attempt:
    """Counts what the gateway recorded and the store received before a request, so that
    what came after can be checked (records reach the log when a request ends)."""

    def __init__(self, proxy, store=None):
        self.proxy, self.store = proxy, store
        self.records = len(filter_records(proxy.read_log()))
        self.received = len(store.requests) if store else 0

    def refused(self, path_start, reason):
        """The request's record: acme's denial with ``reason``; the store received nothing."""
        def recorded():
            # An earlier request's record may still come in: only denials are counted.
            new = filter_records(self.proxy.read_log())[self.records:]
            return [r for r in new if r["path"].startswith(path_start)
                    and r["decision"] == "deny"] or None
        records = wait_for(recorded, message=f"a denial for {path_start}")
        assert [(r["tenant"], r["decision"], r["reason"]) for r in records] == \
            [("acme", "deny", reason)], records
        if self.store is not None:
            assert self.store.requests[self.received:] == [], \
                self.store.requests[self.received:]
        return records[0]


# === Weaviate: native multi-tenancy ===

def test_weaviate_client_works_in_its_own_tenant(weaviate_gateway, weaviate_store, keys):
    with weaviate_client(weaviate_gateway, token(keys, "acme")) as client:
        assert client.get_meta()["version"]
        own = client.collections.use("Docs").with_tenant("acme")
        first = own.data.insert({"title": "acme's report"})
        # Without with_tenant the gateway sets the tenant: Weaviate would refuse the request
        # to a multi-tenant collection otherwise (422).
        second = client.collections.use("Docs").data.insert({"title": "acme's memo"})
        assert own.data.exists(first) and own.data.exists(second)
        answer = client.graphql_raw_query("{ Get { Docs { title } } }")
        assert answer.errors is None
        assert sorted(d["title"] for d in answer.get["Docs"]) == ["acme's memo", "acme's report"]
        own.data.delete_by_id(second)
        assert not own.data.exists(second)
    # What Weaviate received: each request in tenant acme.
    inserts = [r for r in weaviate_store.requests if r.method == "POST" and
               r.path == "/v1/objects"]
    assert inserts and all(b'"tenant":"acme"' in r.body.replace(b" ", b"") for r in inserts)
    assert weaviate_store.objects[("Docs", "acme")].keys() == {str(first)}
    graphql = [r for r in weaviate_store.requests if r.path == "/v1/graphql"][-1]
    assert b'tenant:\\"acme\\"' in graphql.body, graphql.body


def test_weaviate_client_is_refused_another_tenants_data(weaviate_gateway, weaviate_store,
                                                         keys):
    with weaviate_client(weaviate_gateway, token(keys, "globex")) as client:
        theirs = client.collections.use("Docs").with_tenant("globex")
        secret = theirs.data.insert({"title": "globex's plan"})
    with weaviate_client(weaviate_gateway, token(keys, "acme")) as client:
        other = client.collections.use("Docs").with_tenant("globex")
        for name, attempt in [
            ("insert", lambda: other.data.insert({"title": "planted"})),
            ("exists", lambda: other.data.exists(secret)),
            ("delete", lambda: other.data.delete_by_id(secret)),
            ("graphql", lambda: client.graphql_raw_query(
                '{ Get { Docs(tenant: "globex") { title } } }')),
        ]:
            watch = Attempt(weaviate_gateway, weaviate_store)
            with pytest.raises(UnexpectedStatusCodeError) as refused:
                attempt()
            assert refused.value.status_code == 403, name
            watch.refused("/v1/", "cross_tenant_namespace")
        # Its own view holds nothing of globex's.
        answer = client.graphql_raw_query("{ Get { Docs { title } } }")
        assert "globex's plan" not in [d["title"] for d in answer.get["Docs"]]
    assert set(weaviate_store.objects[("Docs", "globex")]) == {str(secret)}


def test_weaviate_grpc_queries_and_batches_are_refused_not_passed(weaviate_gateway,
                                                                  weaviate_store, keys):
    with weaviate_client(weaviate_gateway, token(keys, "acme")) as client:
        docs = client.collections.use("Docs").with_tenant("acme")
        for method, attempt in [
            ("Search", lambda: docs.query.fetch_objects(limit=2)),
            ("BatchObjects", lambda: docs.data.insert_many([{"title": "batched"}])),
        ]:
            watch = Attempt(weaviate_gateway, weaviate_store)
            with pytest.raises(WeaviateBaseError) as refused:
                attempt()
            # gRPC status PERMISSION_DENIED (Envoy's mapping of the 403), the filter's reason in
            # its message.
            assert "vector_operation_not_allowed" in str(refused.value), refused.value
            record = watch.refused("/weaviate.v1.Weaviate/", "vector_operation_not_allowed")
            assert record["path"] == f"/weaviate.v1.Weaviate/{method}"
    assert not [p for p in weaviate_store.paths() if "weaviate.v1" in p]


# === Weaviate: a collection per tenant ===

def test_weaviate_client_works_in_its_own_collection(weaviate_collections_gateway,
                                                     weaviate_store, keys):
    proxy = weaviate_collections_gateway
    with weaviate_client(proxy, token(keys, "acme")) as client:
        own = client.collections.use("T_acme_Docs")
        made = own.data.insert({"title": "acme's own"}, uuid=uuid.uuid4())
        assert own.data.exists(made)
        answer = client.graphql_raw_query("{ Get { T_acme_Docs { title } } }")
        assert answer.errors is None
        assert [d["title"] for d in answer.get["T_acme_Docs"]] == ["acme's own"]
    insert = [r for r in weaviate_store.requests if r.method == "POST"
              and r.path == "/v1/objects"][-1]
    assert b"tenant" not in insert.body, "no Weaviate tenant is set on a tenant's collection"
    assert set(weaviate_store.objects[("T_acme_Docs", None)]) == {str(made)}


def test_weaviate_client_is_refused_another_tenants_collection(weaviate_collections_gateway,
                                                               weaviate_store, keys):
    proxy = weaviate_collections_gateway
    with weaviate_client(proxy, token(keys, "globex")) as client:
        secret = client.collections.use("T_globex_Docs").data.insert({"title": "globex's"})
    with weaviate_client(proxy, token(keys, "acme")) as client:
        theirs = client.collections.use("T_globex_Docs")
        shared = client.collections.use("Docs").with_tenant("acme")
        for name, attempt in [
            ("insert", lambda: theirs.data.insert({"title": "planted"})),
            ("exists", lambda: theirs.data.exists(secret)),
            ("delete", lambda: theirs.data.delete_by_id(secret)),
            ("graphql", lambda: client.graphql_raw_query("{ Get { T_globex_Docs { title } } }")),
            ("not the tenant's", lambda: shared.data.insert({"title": "x"})),
        ]:
            watch = Attempt(proxy, weaviate_store)
            with pytest.raises(UnexpectedStatusCodeError) as refused:
                attempt()
            assert refused.value.status_code == 403, name
            watch.refused("/v1/", "cross_tenant_namespace")
        watch = Attempt(proxy, weaviate_store)
        with pytest.raises(WeaviateBaseError):
            client.collections.use("T_acme_Docs").query.fetch_objects()
        watch.refused("/weaviate.v1.Weaviate/", "vector_operation_not_allowed")
    assert set(weaviate_store.objects[("T_globex_Docs", None)]) == {str(secret)}


# === Chroma: a Chroma tenant per gateway tenant, on the real server ===

def _chroma_call(port, method, path, body=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read() or b"null")


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    """The real Chroma server (``chroma run``), with Chroma tenants ``acme`` and ``globex``
    (each with ``default_database``) made on it directly, not through the gateway."""
    assert CHROMA.exists(), f"{CHROMA} is missing: run make venv"
    data = tmp_path_factory.mktemp("chroma-data")
    with reserve_port() as lease:
        log = open(data / "chroma.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([str(CHROMA), "run", "--path", str(data / "db"), "--host",
                                 "127.0.0.1", "--port", str(lease.port)],
                                stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent)
        try:
            wait_for(lambda: proc.poll() is None and port_accepts(lease.port), timeout=120,
                     message="the Chroma server listening")
            for name in ("acme", "globex"):
                _chroma_call(lease.port, "POST", "/api/v2/tenants", {"name": name})
                _chroma_call(lease.port, "POST", f"/api/v2/tenants/{name}/databases",
                             {"name": "default_database"})
            yield lease.port
        finally:
            stop_process(proc)
            log.close()


@pytest.fixture(scope="module")
def chroma_gateway(tmp_path_factory, wasm_path, jwks_server, keys, chroma_server):
    """``/chroma`` confined to the tenant's Chroma tenant; the route strips the prefix."""
    stores = [{"path_prefix": "/chroma", "kind": "chroma", "tenant": "{namespace}",
               "database": "default_database"}]
    routes = [{"match": {"prefix": "/chroma/"},
               "route": {"cluster": "chroma", "prefix_rewrite": "/", "timeout": "20s"}}]
    with _gateway(tmp_path_factory.mktemp("chroma-envoy"), wasm_path, jwks_server, keys,
                  stores, routes, {"chroma": chroma_server}) as proxy:
        yield proxy


def chroma_client(proxy, bearer, chroma_tenant):
    """chromadb-client's HttpClient on the gateway (its URL may carry a path: ``/chroma``)."""
    return chromadb.HttpClient(host=f"http://127.0.0.1:{proxy.listener_port}/chroma",
                               headers={"authorization": f"Bearer {bearer}"},
                               tenant=chroma_tenant, database="default_database")


def chroma_documents(port, chroma_tenant, name):
    """What the server holds in a tenant's collection, read from it directly."""
    base = f"/api/v2/tenants/{chroma_tenant}/databases/default_database/collections"
    collection = _chroma_call(port, "GET", f"{base}/{name}")
    got = _chroma_call(port, "POST", f"{base}/{collection['id']}/get",
                       {"include": ["documents"]})
    return sorted(got["documents"])


def test_chroma_client_works_in_its_own_tenant(chroma_gateway, chroma_server, keys):
    client = chroma_client(chroma_gateway, token(keys, "acme"), "acme")
    assert client.heartbeat() > 0
    docs = client.get_or_create_collection("docs")
    docs.add(ids=["a1", "a2"], documents=["acme roadmap", "acme budget"],
             embeddings=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert docs.count() == 2
    found = docs.query(query_embeddings=[[1.0, 0.1, 0.0]], n_results=1)
    assert found["ids"] == [["a1"]] and found["documents"] == [["acme roadmap"]]
    assert [c.name for c in client.list_collections()] == ["docs"]
    assert chroma_documents(chroma_server, "acme", "docs") == ["acme budget", "acme roadmap"]
    # Records reach the Envoy log as their requests end: wait for them, never assume them.
    records = wait_for(lambda: records_for(chroma_gateway, "/chroma/"),
                       message="the Chroma requests' records")
    assert all((r["tenant"], r["decision"]) == ("acme", "allow") for r in records), records


def test_chroma_client_is_refused_another_tenants(chroma_gateway, chroma_server, keys):
    theirs = chroma_client(chroma_gateway, token(keys, "globex"), "globex")
    theirs.get_or_create_collection("docs").add(ids=["g1"], documents=["globex secret"],
                                                embeddings=[[1.0, 0.0, 0.0]])
    # The client checks its tenant and database when made: the gateway refuses globex's.
    watch = Attempt(chroma_gateway)
    # (The client reports "Could not connect to tenant globex": the tenant exists on the
    # server; the record shows the gateway refused it.)
    with pytest.raises(ValueError, match="tenant globex"):
        chroma_client(chroma_gateway, token(keys, "acme"), "globex")
    watch.refused("/chroma/api/v2/tenants/globex", "cross_tenant_namespace")
    # Through the admin API: reading or adding to globex's tenant, making databases.
    admin = chromadb.AdminClient(chromadb.config.Settings(
        chroma_api_impl="chromadb.api.fastapi.FastAPI",
        chroma_server_host=f"http://127.0.0.1:{chroma_gateway.listener_port}/chroma",
        chroma_server_http_port=chroma_gateway.listener_port,
        chroma_server_headers={"authorization": f"Bearer {token(keys, 'acme')}"}))
    for path, reason, attempt in [
        ("/chroma/api/v2/tenants/globex", "cross_tenant_namespace",
         lambda: admin.get_tenant("globex")),
        ("/chroma/api/v2/tenants/globex/databases/default_database", "cross_tenant_namespace",
         lambda: admin.get_database("default_database", tenant="globex")),
        ("/chroma/api/v2/tenants/acme/databases", "vector_operation_not_allowed",
         lambda: admin.create_database("second", tenant="acme")),
        ("/chroma/api/v2/tenants", "vector_operation_not_allowed",
         lambda: admin.create_tenant("acme2")),
    ]:
        watch = Attempt(chroma_gateway)
        with pytest.raises(Exception):
            attempt()
        assert watch.refused("/chroma/", reason)["path"] == path
    assert chroma_documents(chroma_server, "globex", "docs") == ["globex secret"]
