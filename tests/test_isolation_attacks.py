"""Isolation attacks a red team tried (issue 9), against real Envoy 1.40: default tenants taking
a listed tenant's namespace, shared vector stores reaching collections and namespaces they do
not list, a client's Host choosing a tenant's backend, store prefixes without a segment
boundary, `;` in store query strings, other spellings of the body keys a rule reads, HMAC
secrets from a remote JWKS, kid-less tokens, missing audiences, and Retry-After.

Each attack runs over HTTP/1.1 and HTTP/2 (h2c, which `codec_type: AUTO` accepts from any
client) where the protocol could matter, and is followed by valid requests that must be served
on every worker."""

import http.client
import json

import jwt
import pytest

from harness import bootstrap as bs
from harness.client import Response, new_request_id
from harness.envoy_process import Envoy
from harness.expect import (assert_denied, assert_eventually_accepted_on_all_workers,
                            assert_healthy_on_all_workers)
from harness.h2client import H2Client
from harness.keys import GLOBEX_ISSUER, REMOTE_ISSUER, claims, hmac_key, jwk_set, mint
from harness.limits import LONG, assert_quota_denied
from harness.plugin_config import gateway_config, main_plugin_config, tenant, windows
from harness.records import filter_record
from harness.servers import JwksServer, RecordingUpstream

PROTOCOLS = ["http1", "http2"]


def send(proxy, proto, method, path, *, token=None, body=None, headers=None, authority=None):
    """One request over a new connection, HTTP/1.1 or HTTP/2; ``authority``: the Host (or
    `:authority`) the client claims."""
    if proto == "http2":
        return H2Client(proxy.listener_port).request(method, path, body=body, token=token,
                                                      headers=headers, authority=authority,
                                                      content_length=True)
    if authority is None:
        return proxy.client.request(method, path, body=body, token=token, headers=headers)
    return http1_with_host(proxy.listener_port, method, path, authority, token=token,
                           body=body)


def http1_with_host(port, method, path, host, *, token, body):
    request_id = new_request_id()
    data = json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in (("host", host), ("authorization", f"Bearer {token}"),
                            ("x-request-id", request_id), ("content-type", "application/json"),
                            ("content-length", str(len(data)))):
            conn.putheader(name, value)
        conn.endheaders(data)
        resp = conn.getresponse()
        return Response(resp.status, [(k.lower(), v) for k, v in resp.getheaders()],
                        resp.read(), request_id)
    finally:
        conn.close()


def recorded(gw, resp, reason, tenant_id):
    record = filter_record(gw.proxy, resp.request_id)
    assert (record["decision"], record["reason"], record["tenant"]) == \
        ("deny", reason, tenant_id), record
    return record


# === Default tenants ===

class DefaultTenantGateway:
    """Listed tenants acme (namespace acme-ns, corp-idp) and globex (globex-idp); both providers
    admit unlisted tenants; requests are placed under /tenants/{namespace}. Routes send
    /tenants/acme-ns/ to upstream ``a``, /tenants/globex/ to ``b``, everything else to ``c``."""

    def __init__(self, proxy, upstreams, keys):
        self.proxy = proxy
        self.a, self.b, self.c = upstreams
        self.keys = keys

    def corp(self, tenant_id):
        return mint(self.keys.corp_rsa, claims(tenant_id))

    def globex(self, tenant_id):
        return mint(self.keys.globex_rsa, claims(tenant_id, iss=GLOBEX_ISSUER))

    def reached(self, request_id):
        return [name for name, up in zip("abc", (self.a, self.b, self.c))
                if up.find(request_id) or up.started(request_id)]

    def healthy(self):
        assert_healthy_on_all_workers(
            self.proxy, lambda: self.proxy.client.chat(token=self.corp("acme")))


@pytest.fixture(scope="module")
def defaults_gw(tmp_path_factory, wasm_path, jwks_server, keys):
    config = gateway_config(keys, {
        "acme": tenant(namespace="acme-ns"),
        "globex": tenant(providers=["globex-idp"]),
    }, default_tenant={"providers": ["corp-idp", "globex-idp"]},
        routing={"path_prefix": "/tenants/{namespace}",
                 "namespace_header": "x-tenant-namespace"})
    upstreams = [RecordingUpstream() for _ in range(3)]
    routes = [bs.route("/tenants/acme-ns/", "a"), bs.route("/tenants/globex/", "b"),
              bs.route("/", "c")]
    clusters = {"a": upstreams[0].port, "b": upstreams[1].port, "c": upstreams[2].port}
    try:
        with Envoy(tmp_path_factory.mktemp("envoy-default-tenants"),
                   bs.gateway(upstreams[2].port, jwks_server.port,
                              [bs.wasm_filter(wasm_path, config)], routes=routes,
                              clusters=clusters)) as proxy:
            yield DefaultTenantGateway(proxy, upstreams, keys)
    finally:
        for up in upstreams:
            up.close()


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_default_tenant_named_after_a_listed_namespace_is_refused(defaults_gw, proto):
    """A self-chosen tenant id `acme-ns` used to land in listed tenant acme's namespace."""
    gw = defaults_gw
    resp = send(gw.proxy, proto, "POST", "/v1/chat/completions", token=gw.corp("acme-ns"),
                body={"model": "gpt-4o", "messages": []})
    assert_denied(resp, 403, "tenant_namespace_conflict")
    assert gw.reached(resp.request_id) == []
    record = recorded(gw, resp, "tenant_namespace_conflict", "acme-ns")
    assert record["provider"] == "corp-idp"
    gw.healthy()


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_default_tenants_live_in_their_providers_namespace(defaults_gw, proto):
    """The same unlisted id from two default providers is two tenants in two places."""
    gw = defaults_gw
    for token, namespace in ((gw.corp("hooli"), "corp-idp.hooli"),
                             (gw.globex("hooli"), "globex-idp.hooli")):
        resp = send(gw.proxy, proto, "POST", "/v1/chat/completions?x=1", token=token,
                    body={"model": "gpt-4o", "messages": []})
        assert resp.status == 200, resp
        assert gw.reached(resp.request_id) == ["c"]
        seen = gw.c.received(resp.request_id)
        assert seen.path == f"/tenants/{namespace}/v1/chat/completions?x=1"
        assert seen.header_values("x-tenant-namespace") == [namespace]


def test_default_tenant_cannot_address_a_listed_namespace_by_path(defaults_gw):
    gw = defaults_gw
    for path in ("/tenants/acme-ns/v1/chat/completions", "/v1/../tenants/globex/v1/x"):
        resp = gw.proxy.client.post(path, token=gw.corp("hooli"),
                                    body={"model": "gpt-4o", "messages": []})
        assert_denied(resp, 403, "cross_tenant_path")
        assert gw.reached(resp.request_id) == []
    gw.healthy()


def refused_config(envoy_factory, wasm_path, upstream, jwks_server, config, needle):
    proxy = envoy_factory(make_config=bs.gateway(upstream.port, jwks_server.port,
                                                 [bs.wasm_filter(wasm_path, config)]),
                          start=False)
    code = proxy.wait_exit(timeout=30)
    assert code != 0, f"Envoy accepted the configuration\n{proxy.log_tail()}"
    lines = [line for line in proxy.read_log().splitlines()
             if "invalid configuration" in line and needle in line]
    assert lines, f"no log line names {needle!r}\n{proxy.log_tail()}"


NAMESPACE_COLLISIONS = {
    "two_tenants_one_namespace": (
        {"acme": tenant(namespace="shared"), "globex": tenant(namespace="shared")}, None,
        "tenants.globex.namespace: namespace \"shared\" is also tenant acme's"),
    "namespace_is_another_tenants_id": (
        {"acme": tenant(namespace="globex"), "globex": tenant(namespace="globex-ns")}, None,
        "tenants.acme.namespace: namespace \"globex\" is the id of another tenant"),
    "namespace_in_the_default_tenants_shape": (
        {"acme": tenant(namespace="corp-idp.acme")}, {"providers": ["corp-idp"]},
        "tenants.acme.namespace"),
    "default_namespace_without_provider": (
        {"acme": tenant()}, {"providers": ["corp-idp"], "namespace": "{tenant}"},
        "default_tenant.namespace"),
    "max_tenants_zero": (
        {"acme": tenant()}, {"providers": ["corp-idp"], "max_tenants": 0},
        "default_tenant.max_tenants"),
}


@pytest.mark.parametrize("case", list(NAMESPACE_COLLISIONS))
def test_configurations_that_let_namespaces_collide_are_refused(envoy_factory, wasm_path,
                                                                upstream, jwks_server, keys,
                                                                case):
    tenants, default, needle = NAMESPACE_COLLISIONS[case]
    config = gateway_config(keys, tenants, default_tenant=default,
                            routing={"path_prefix": "/tenants/{namespace}"})
    refused_config(envoy_factory, wasm_path, upstream, jwks_server, config, needle)


# === Vector stores ===

AUTHORITIES = {"acme-ns.models.internal": "va", "globex.models.internal": "vb"}
STORE_PREFIXES = ("/qdrant", "/pinecone", "/search", "/pcsearch", "/wv-coll")


class StoreGateway:
    """Tenants acme (namespace acme-ns) and globex; `routing.authority` is
    `{namespace}.models.internal`, and the route table picks a tenant's vector-store backend by
    authority (``va`` for acme-ns, ``vb`` for globex) with plain `prefix: /qdrant`-style
    matches, as gateways often write them; everything else goes to ``c``."""

    def __init__(self, proxy, upstreams, keys):
        self.proxy = proxy
        self.va, self.vb, self.c = upstreams
        self.acme = mint(keys.corp_rsa, claims("acme"))

    def reached(self, request_id):
        return [name for name, up in zip(("va", "vb", "c"), (self.va, self.vb, self.c))
                if up.find(request_id) or up.started(request_id)]

    def valid(self):
        return self.proxy.client.post("/search/collections/shared/points/search",
                                      token=self.acme, body={"vector": [0.1], "limit": 1})

    def healthy(self):
        assert_healthy_on_all_workers(self.proxy, self.valid)


@pytest.fixture(scope="module")
def store_gw(tmp_path_factory, wasm_path, jwks_server, keys):
    config = gateway_config(keys, {
        "acme": tenant(namespace="acme-ns"),
        "globex": tenant(providers=["globex-idp"]),
    }, routing={"authority": "{namespace}.models.internal",
                "namespace_header": "x-tenant-namespace"},
        vector_stores=[
            {"path_prefix": "/qdrant", "kind": "qdrant"},
            {"path_prefix": "/pinecone", "kind": "pinecone"},
            {"path_prefix": "/search", "kind": "metadata_filter", "dialect": "qdrant",
             "collections": ["shared"]},
            {"path_prefix": "/pcsearch", "kind": "metadata_filter", "dialect": "pinecone",
             "field": "tenant", "value": "{namespace}", "namespaces": [""]},
            {"path_prefix": "/wv-coll", "kind": "weaviate", "collection": "T_{tenant}_{name}"},
        ])
    upstreams = [RecordingUpstream() for _ in range(3)]
    routes = [{"match": {"prefix": prefix,
                         "headers": [{"name": ":authority",
                                      "string_match": {"exact": authority}}]},
               "route": {"cluster": cluster, "timeout": "20s"}}
              for authority, cluster in AUTHORITIES.items() for prefix in STORE_PREFIXES]
    routes.append(bs.route("/", "c"))
    clusters = {"va": upstreams[0].port, "vb": upstreams[1].port, "c": upstreams[2].port}
    try:
        with Envoy(tmp_path_factory.mktemp("envoy-store-attacks"),
                   bs.gateway(upstreams[2].port, jwks_server.port,
                              [bs.wasm_filter(wasm_path, config)], routes=routes,
                              clusters=clusters)) as proxy:
            yield StoreGateway(proxy, upstreams, keys)
    finally:
        for up in upstreams:
            up.close()


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("method,path", [
    ("PUT", "/search/collections/globex~docs/points"),
    ("POST", "/search/collections/globex~docs/points/search"),
    ("POST", "/search/collections/acme-ns~docs/points/scroll"),
], ids=["upsert", "search", "scroll"])
def test_shared_store_refuses_collections_it_does_not_list(store_gw, proto, method, path):
    """Another tenant's private collection on the same Qdrant, with the tenant's own stamp."""
    gw = store_gw
    body = {"points": [{"id": 1, "vector": [0.1], "payload": {"tenant_id": "acme"}}]} \
        if method == "PUT" else {"vector": [0.1], "limit": 3}
    resp = send(gw.proxy, proto, method, path, token=gw.acme, body=body)
    assert_denied(resp, 403, "cross_tenant_namespace")
    assert gw.reached(resp.request_id) == []
    recorded(gw, resp, "cross_tenant_namespace", "acme")
    gw.healthy()


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("method,path,body", [
    ("GET", "/wv-coll/v1/objects/T_globex_Docs/7", None),
    # Tenant acme_x's collection Docs, spelled with acme's prefix.
    ("GET", "/wv-coll/v1/objects/T_acme_x_Docs/7", None),
    ("POST", "/wv-coll/v1/objects", {"class": "T_globex_Docs", "properties": {}}),
    ("POST", "/wv-coll/v1/batch/objects",
     {"objects": [{"class": "T_acme_Docs"}, {"class": "t_globex_Docs"}]}),
    ("POST", "/wv-coll/v1/graphql",
     {"query": "{ Get { T_acme_Docs { cites { ... on T_globex_Docs { secret } } } } }"}),
    ("POST", "/wv-coll/v1/graphql", {"query": "{ Get { mine: T_globex_Docs { secret } } }"}),
], ids=["path", "separator", "object", "batch", "fragment", "alias"])
def test_weaviate_collection_per_tenant_refuses_another_tenants_collection(store_gw, proto,
                                                                           method, path,
                                                                           body):
    gw = store_gw
    resp = send(gw.proxy, proto, method, path, token=gw.acme, body=body)
    assert_denied(resp, 403, "cross_tenant_namespace")
    assert gw.reached(resp.request_id) == []
    recorded(gw, resp, "cross_tenant_namespace", "acme")
    gw.healthy()


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_weaviate_collection_per_tenant_serves_the_tenants_own(store_gw, proto):
    gw = store_gw
    body = {"class": "T_acme_Docs", "properties": {"title": "x"}}
    resp = send(gw.proxy, proto, "POST", "/wv-coll/v1/objects", token=gw.acme, body=body)
    assert resp.status == 200, resp
    assert gw.reached(resp.request_id) == ["va"]
    assert json.loads(gw.va.received(resp.request_id).body) == body


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_shared_store_serves_its_listed_collection_on_the_tenants_backend(store_gw, proto):
    gw = store_gw
    body = {"points": [{"id": 1, "vector": [0.1], "payload": {"color": "red"}}]}
    resp = send(gw.proxy, proto, "PUT", "/search/collections/shared/points", token=gw.acme,
                body=body)
    assert resp.status == 200, resp
    assert gw.reached(resp.request_id) == ["va"]
    seen = gw.va.received(resp.request_id)
    assert json.loads(seen.body)["points"][0]["payload"] == {"color": "red",
                                                            "tenant_id": "acme"}
    assert seen.header("host") == "acme-ns.models.internal"


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("path,body", [
    ("/pcsearch/vectors/upsert",
     {"namespace": "globex", "vectors": [{"id": "v1", "values": [0.1]}]}),
    ("/pcsearch/query", {"namespace": "acme-ns", "vector": [0.1], "topK": 1}),
], ids=["upsert", "query"])
def test_shared_index_refuses_namespaces_it_does_not_list(store_gw, proto, path, body):
    gw = store_gw
    resp = send(gw.proxy, proto, "POST", path, token=gw.acme, body=body)
    assert_denied(resp, 403, "cross_tenant_namespace")
    assert gw.va.find(resp.request_id) == [] and gw.vb.find(resp.request_id) == []
    recorded(gw, resp, "cross_tenant_namespace", "acme")
    gw.healthy()


def test_shared_index_refuses_an_unlisted_namespace_in_the_query_string(store_gw):
    gw = store_gw
    resp = gw.proxy.client.post("/pcsearch/query?namespace=globex", token=gw.acme,
                                body={"vector": [0.1]})
    assert_denied(resp, 403, "cross_tenant_namespace")
    assert gw.reached(resp.request_id) == []
    gw.healthy()


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("path", ["/qdrant/collections/docs/points/search",
                                  "/pcsearch/query"])
def test_client_host_cannot_pick_another_tenants_store_backend(store_gw, proto, path):
    gw = store_gw
    resp = send(gw.proxy, proto, "POST", path, token=gw.acme, body={"vector": [0.1]},
                authority="globex.models.internal")
    assert resp.status == 200, resp
    assert gw.reached(resp.request_id) == ["va"]
    assert gw.va.received(resp.request_id).header("host") == "acme-ns.models.internal"


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("path", [
    "/qdrant.Points/Search",
    "/qdrant.Collections/List",
    "/qdrant;x/collections/globex~docs/points",
    "/QDRANT/collections/docs/points/search",
    "/search-v2/collections/globex~docs/points/search",
    "/pineconeX/query",
])
def test_paths_sharing_a_store_prefix_without_its_boundary_are_refused(store_gw, proto, path):
    """A route with `prefix: /qdrant` sends these to the store; they used to pass as ordinary
    paths (Qdrant's gRPC API is `/qdrant.Points/...`), confined by nothing."""
    gw = store_gw
    resp = send(gw.proxy, proto, "POST", path, token=gw.acme, body={"limit": 1},
                headers={"content-type": "application/json"})
    assert_denied(resp, 400, "invalid_path")
    assert gw.reached(resp.request_id) == []
    recorded(gw, resp, "invalid_path", "acme")
    gw.healthy()


@pytest.mark.parametrize("path", [
    "/pinecone/vectors/fetch?ids=a;namespace=globex",
    "/pinecone/vectors/list?namespace=acme-ns;namespace=globex",
    "/qdrant/collections/docs/points/17?x=1;y=2",
])
def test_semicolons_in_store_query_strings_are_refused(store_gw, path):
    gw = store_gw
    resp = gw.proxy.client.get(path, token=gw.acme)
    assert_denied(resp, 400, "invalid_path")
    assert gw.reached(resp.request_id) == []
    gw.healthy()


SPELLINGS = {
    "pinecone_ID": ("/pcsearch/query", "POST", {"vector": [0.1], "ID": "v1"}),
    "pinecone_delete_all": ("/pcsearch/vectors/delete", "POST",
                            {"delete_all": True, "filter": {"a": {"$eq": 1}}}),
    "pinecone_Filter": ("/pcsearch/query", "POST",
                        {"vector": [0.1], "Filter": {"tenant": {"$eq": "globex"}}}),
    "pinecone_metadata": ("/pcsearch/vectors/upsert", "POST",
                          {"vectors": [{"id": "v", "values": [0.1],
                                        "MetaData": {"tenant": "globex"}}]}),
    "pinecone_name_space": ("/pinecone/query", "POST", {"vector": [0.1], "name_space": "x"}),
    "qdrant_Payload": ("/search/collections/shared/points", "PUT",
                       {"points": [{"id": 1, "vector": [0.1],
                                    "Payload": {"tenant_id": "globex"}}]}),
    "qdrant_tenant_field": ("/search/collections/shared/points", "PUT",
                            {"points": [{"id": 1, "vector": [0.1],
                                         "payload": {"Tenant_Id": "globex"}}]}),
    "qdrant_FILTER": ("/search/collections/shared/points/search", "POST",
                      {"vector": [0.1], "FILTER": {"must": []}}),
    "qdrant_lookupFrom": ("/qdrant/collections/docs/points/query", "POST",
                          {"query": [0.1], "lookupFrom": {"collection": "globex~docs"}}),
}


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("case", list(SPELLINGS))
def test_other_spellings_of_keys_a_rule_reads_are_refused(store_gw, proto, case):
    gw = store_gw
    path, method, body = SPELLINGS[case]
    resp = send(gw.proxy, proto, method, path, token=gw.acme, body=body)
    assert_denied(resp, 400, "invalid_body")
    assert gw.va.find(resp.request_id) == [] and gw.vb.find(resp.request_id) == []
    recorded(gw, resp, "invalid_body", "acme")
    gw.healthy()


def test_escaped_keys_are_read_as_the_store_reads_them(store_gw):
    """`\\u0069d` is `id` to every JSON decoder: selection by id, refused."""
    gw = store_gw
    resp = gw.proxy.client.post("/pcsearch/query", token=gw.acme,
                                body=b'{"vector": [0.1], "\\u0069d": "v1"}',
                                headers={"content-type": "application/json"})
    assert_denied(resp, 403, "vector_operation_not_allowed")
    assert gw.va.find(resp.request_id) == []
    gw.healthy()


# === Remote JWKS, kid, audiences ===

def kidless(key, payload, alg="HS256"):
    """A correctly signed token whose header carries no kid."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return jwt.api_jws.PyJWS().encode(body, key.private, algorithm=alg, headers={})


class IdentityGateway:
    def __init__(self, proxy, jwks, keys, remote_hs):
        self.proxy = proxy
        self.jwks = jwks
        self.keys = keys
        self.remote_hs = remote_hs


@pytest.fixture(scope="module")
def identity_gw(tmp_path_factory, wasm_path, keys):
    """remote-idp's JWKS publishes an HMAC secret next to its RSA key; corp-idp requires kids
    and accepts any audience."""
    remote_hs = hmac_key("remote-hs", size=32)
    config = main_plugin_config(keys)
    config["providers"]["corp-idp"].update({"audiences": "any", "require_kid": True})
    config.pop("default_tenant")
    upstream = RecordingUpstream()
    try:
        with JwksServer(jwk_set(remote_hs, keys.remote_rsa)) as jwks, \
                Envoy(tmp_path_factory.mktemp("envoy-identity-attacks"),
                      bs.gateway(upstream.port, jwks.port,
                                 [bs.wasm_filter(wasm_path, config)])) as proxy:
            gw = IdentityGateway(proxy, jwks, keys, remote_hs)
            gw.upstream = upstream
            # Every worker has fetched the remote set once its RSA key verifies everywhere.
            token = mint(keys.remote_rsa, claims("umbrella", iss=REMOTE_ISSUER))
            assert_eventually_accepted_on_all_workers(
                proxy, lambda: proxy.client.chat(token=token))
            yield gw
    finally:
        upstream.close()


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_hmac_secret_published_in_a_remote_jwks_signs_nothing(identity_gw, proto):
    gw = identity_gw
    payload = claims("umbrella", iss=REMOTE_ISSUER)
    for token in (mint(gw.remote_hs, payload), kidless(gw.remote_hs, payload)):
        resp = send(gw.proxy, proto, "POST", "/v1/chat/completions", token=token,
                    body={"model": "gpt-4o", "messages": []})
        assert_denied(resp, 401, "invalid_token", gw.upstream)
    log = gw.proxy.read_log()
    assert "provider remote-idp: remote JWKS key skipped: keys[0].kty: symmetric" in log, \
        gw.proxy.log_tail()
    token = mint(gw.keys.remote_rsa, claims("umbrella", iss=REMOTE_ISSUER))
    assert_healthy_on_all_workers(gw.proxy, lambda: gw.proxy.client.chat(token=token))


def test_provider_requiring_kids_refuses_kidless_tokens(identity_gw):
    gw = identity_gw
    payload = claims("acme")
    resp = gw.proxy.client.chat(token=kidless(gw.keys.corp_rsa, payload, alg="RS256"))
    assert_denied(resp, 401, "invalid_token", gw.upstream)
    record = filter_record(gw.proxy, resp.request_id)
    assert "requires a kid" in record["detail"], record
    assert gw.proxy.client.chat(token=mint(gw.keys.corp_rsa, payload)).status == 200


def test_provider_saying_any_accepts_every_audience(identity_gw):
    gw = identity_gw
    for aud in ("some-other-service", None):
        resp = gw.proxy.client.chat(token=mint(gw.keys.corp_rsa, claims("acme", aud=aud)))
        assert resp.status == 200, resp
    # A provider with a list still checks it.
    resp = gw.proxy.client.chat(
        token=mint(gw.keys.globex_rsa, claims("globex", iss=GLOBEX_ISSUER, aud="other")))
    assert_denied(resp, 401, "invalid_token", gw.upstream)


@pytest.mark.parametrize("audiences", ["absent", [], "all"])
def test_provider_without_explicit_audiences_is_refused(envoy_factory, wasm_path, upstream,
                                                        jwks_server, keys, audiences):
    config = main_plugin_config(keys)
    if audiences == "absent":
        del config["providers"]["corp-idp"]["audiences"]
    else:
        config["providers"]["corp-idp"]["audiences"] = audiences
    refused_config(envoy_factory, wasm_path, upstream, jwks_server, config,
                   "providers.corp-idp.audiences")


# === Retry-After ===

# Two windows far longer than a test whose next resets differ: the ten-year window resets in
# December 2029, the seven-year one in December 2032 (both aligned to the epoch).
SEVEN_YEARS = 7 * 365 * 86400


def test_retry_after_waits_for_the_last_full_window(gateway_factory, keys):
    """Both request windows full: Retry-After is when the later of them frees (seven-year
    window), not the earlier (ten-year window); assert_quota_denied checks both exactly."""
    plans = {"tight": {"requests": windows((1, LONG), (1, SEVEN_YEARS))}}
    proxy = gateway_factory(gateway_config(keys, {"acme": tenant("tight")}, plans=plans))
    token = mint(keys.corp_rsa, claims("acme"))
    assert proxy.client.chat(token=token).status == 200
    resp = proxy.client.chat(token=token)
    result = assert_quota_denied(resp, "request_quota_exceeded",
                                 [("requests", 1, LONG), ("requests", 1, SEVEN_YEARS)],
                                 refusing=SEVEN_YEARS)
    ratelimit = result["ratelimit"]
    assert result["retry_after"] == ratelimit[f"requests-{SEVEN_YEARS}s"]["t"] > \
        ratelimit[f"requests-{LONG}s"]["t"], ratelimit
