"""Every body rule holds however a body ends, and a changed body never travels with a stale
length (issue: close the isolation holes a red team finds, items 1 and 5).

- HTTP/2 requests that end with a trailer block (listeners with `codec_type: AUTO` accept h2c
  from anyone) get every body rule: vector-store confinement, the 413 cap, `include_usage`,
  metering. Responses that end with trailers get the listing filter.
- With Envoy holding headers while the body is read, a request refused for its body never
  opens an upstream stream, and a rewritten body goes with its own `content-length`. Without
  it (older Envoys), a body that may change goes chunked, never with a stale length.
- Only what the one predicate (POST to `.../completions`) lets change may change: a PUT with
  `"stream": true` reaches the upstream byte for byte."""

import json

import pytest

from harness.answers import answer
from harness.expect import assert_denied
from harness.h2client import H2Client
from harness.records import filter_record

TRAILERS = [("x-client-trailer", "end")]


@pytest.fixture(params=[True, False], ids=["headers-held", "headers-forwarded"])
def gw(request):
    """The namespace gateway in each of Envoy's header modes."""
    name = "namespace_gateway" if request.param else "namespace_gateway_forwarded"
    gateway = request.getfixturevalue(name)
    gateway.held = request.param
    return gateway


def h2(gw) -> H2Client:
    return H2Client(gw.proxy.listener_port)


def never_reached(gw, request_id):
    """Nothing reached any upstream whole; with headers held, not even the headers."""
    assert gw.reached(request_id) == [] if gw.held else \
        all(up.find(request_id) == [] for up in gw.upstreams), gw.reached(request_id)


# === Request trailers ===

def test_pinecone_namespace_of_another_tenant_is_refused_when_the_request_ends_with_trailers(
        gw):
    resp = h2(gw).request("POST", "/pinecone/query", token=gw.acme, trailers=TRAILERS,
                          body={"namespace": "globex", "topK": 3, "vector": [0.1]})
    assert resp.status == 403, resp
    assert json.loads(resp.body)["error"]["code"] == "cross_tenant_namespace"
    never_reached(gw, resp.request_id)
    record = filter_record(gw.proxy, resp.request_id)
    assert (record["decision"], record["reason"]) == ("deny", "cross_tenant_namespace")


@pytest.mark.parametrize("pieces", [1, 3])
def test_pinecone_query_with_trailers_gets_the_tenants_namespace(gw, pieces):
    resp = h2(gw).request("POST", "/pinecone/query", token=gw.acme, trailers=TRAILERS,
                          pieces=pieces, body={"topK": 3, "vector": [0.1]})
    assert resp.status == 200, resp
    seen = gw.vec.received(resp.request_id)
    assert json.loads(seen.body)["namespace"] == "acme-ns"
    if gw.held:
        assert seen.header("content-length") == str(len(seen.body))


def test_qdrant_collection_names_in_a_body_ending_with_trailers_are_wrapped(gw):
    body = {"prefetch": [{"query": [0.1], "lookup_from": {"collection": "faq"}}],
            "query": [0.2]}
    resp = h2(gw).request("POST", "/qdrant/collections/docs/points/query", token=gw.acme,
                          trailers=TRAILERS, body=body)
    assert resp.status == 200, resp
    seen = gw.vec.received(resp.request_id)
    assert seen.path == "/qdrant/collections/acme-ns~docs/points/query"
    sent = json.loads(seen.body)
    assert sent["prefetch"][0]["lookup_from"]["collection"] == "acme-ns~faq"


def test_metadata_filter_is_anded_into_a_body_ending_with_trailers(gw):
    resp = h2(gw).request("POST", "/search/collections/shared/points/search", token=gw.acme,
                          trailers=TRAILERS, body={"vector": [0.1], "limit": 3})
    assert resp.status == 200, resp
    sent = json.loads(gw.vec.received(resp.request_id).body)
    assert {"key": "tenant_id", "match": {"value": "acme"}} in sent["filter"]["must"]


def test_a_body_over_the_cap_is_refused_when_it_ends_with_trailers(gw):
    resp = h2(gw).request("POST", "/pinecone/query", token=gw.acme, trailers=TRAILERS,
                          pieces=4, body={"topK": 3, "vector": [0.5] * 2000})
    assert resp.status == 413, resp
    never_reached(gw, resp.request_id)


def test_stream_usage_is_asked_for_when_the_request_ends_with_trailers(gw):
    resp = h2(gw).request("POST", "/v1/chat/completions", token=gw.acme, trailers=TRAILERS,
                          body={"model": "gpt-4o", "stream": True, "messages": []},
                          headers=[("x-test-answer", "openai-sse;in=9;out=4")])
    assert resp.status == 200, resp
    seen = gw.a.received(resp.request_id)
    assert json.loads(seen.body)["stream_options"] == {"include_usage": True}
    if gw.held:
        assert seen.header("content-length") == str(len(seen.body))
    record = filter_record(gw.proxy, resp.request_id)
    assert (record["input_tokens"], record["output_tokens"], record["usage_source"]) == \
        (9, 4, "sse"), record


def test_a_request_ending_with_trailers_is_metered(gw):
    resp = h2(gw).request("POST", "/v1/chat/completions", token=gw.acme, trailers=TRAILERS,
                          body={"model": "gpt-4o", "max_tokens": 5, "messages": []},
                          headers=[("x-test-answer", "openai-json;in=21;out=5")])
    assert resp.status == 200, resp
    record = filter_record(gw.proxy, resp.request_id)
    assert (record["input_tokens"], record["output_tokens"], record["usage_source"]) == \
        (21, 5, "json"), record


# === Response trailers ===

def test_a_collection_listing_ending_with_trailers_is_filtered(gw):
    listing = {"result": {"collections": [
        {"name": "acme-ns~docs"}, {"name": "globex~secrets"}, {"name": "acme-ns~faq"}]},
        "status": "ok"}
    request_id = f"tg-test-listing-trailers-{gw.held}"
    gw.vec.reply_for(request_id, listing, trailers=True)
    resp = gw.client.get("/qdrant/collections", token=gw.acme, request_id=request_id)
    assert resp.status == 200, resp
    assert b"globex" not in resp.body
    assert json.loads(resp.body)["result"]["collections"] == [{"name": "docs"},
                                                              {"name": "faq"}]


def test_a_collection_listing_ending_with_trailers_is_filtered_over_http2(gw):
    listing = {"result": {"collections": [{"name": "globex~secrets"}]}, "status": "ok"}
    request_id = f"tg-test-listing-h2-trailers-{gw.held}"
    gw.vec.reply_for(request_id, listing, trailers=True)
    resp = h2(gw).request("GET", "/qdrant/collections", token=gw.acme, request_id=request_id)
    assert resp.status == 200, resp
    assert b"globex" not in resp.body
    assert json.loads(resp.body)["result"]["collections"] == []


# === Bodies refused or changed ===

def test_a_body_refused_by_a_vector_store_rule_never_opens_an_upstream_stream(gw):
    resp = gw.client.post("/pinecone/query", token=gw.acme,
                          body={"namespace": "globex", "topK": 1})
    assert_denied(resp, 403, "cross_tenant_namespace")
    never_reached(gw, resp.request_id)


def test_a_rewritten_body_never_travels_with_a_stale_length(gw):
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    resp = gw.client.post("/v1/chat/completions", token=gw.acme, body=body,
                          headers=answer("openai-sse", in_=3, out=2))
    assert resp.status == 200, resp
    seen = gw.a.received(resp.request_id)
    sent = json.loads(seen.body)  # the upstream read a whole, valid JSON body
    assert sent["stream_options"] == {"include_usage": True}
    if gw.held:
        assert seen.header("content-length") == str(len(seen.body))
    else:
        assert seen.header("content-length") is None
        assert "chunked" in (seen.header("transfer-encoding") or "")


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_a_body_the_filter_may_not_change_reaches_the_upstream_byte_for_byte(gw, method):
    """`PUT /v1/chat/completions` with `"stream": true` once got `include_usage` injected under
    its old `content-length`: the upstream read a truncated body and the rest stayed on the
    connection, to be read as the next request."""
    raw = b'{"model": "gpt-4o", "stream": true, "messages": []}'
    before = len(gw.a.requests)
    resp = gw.client.request(method, "/v1/chat/completions", token=gw.acme, body=raw,
                             headers=[("content-type", "application/json")])
    assert resp.status == 200, resp
    seen = gw.a.received(resp.request_id)
    assert seen.body == raw
    assert seen.header("content-length") in (None, str(len(raw)))
    follow = gw.client.chat(token=gw.acme)
    assert follow.status == 200, follow
    arrived = gw.a.requests[before:]
    assert all(r.method in ("PUT", "PATCH", "POST") and r.path.startswith("/tenants/")
               for r in arrived), [(r.method, r.path) for r in arrived]


# === Before a worker knows Envoy's header mode ===

@pytest.mark.parametrize("trailers", [None, TRAILERS], ids=["end-stream", "trailers"])
def test_the_first_requests_without_held_headers_are_decided_like_any_other(
        gateway_factory, upstream, keys, trailers):
    """A gateway without allow_on_headers_stop_iteration, fresh: its workers do not know yet
    that Envoy forwards headers before the body. The first body requests hold their headers,
    the workers find out and let them go (without content-length), and their bodies are still
    confined and rewritten, over HTTP/2 and with trailers too."""
    from harness.keys import claims, mint
    from harness.plugin_config import gateway_config, tenant
    config = gateway_config(keys, {"acme": tenant(namespace="acme-ns")},
                            vector_stores=[{"path_prefix": "/pinecone", "kind": "pinecone"}])
    proxy = gateway_factory(config, hold_headers=False, name="fresh-forwarded")
    token = mint(keys.corp_rsa, claims("acme"))
    client = H2Client(proxy.listener_port)
    for _ in range(4):  # more than workers, each its first
        resp = client.request("POST", "/pinecone/query", token=token, trailers=trailers,
                              body={"topK": 3, "vector": [0.1]})
        assert resp.status == 200, resp
        seen = upstream.received(resp.request_id)
        assert json.loads(seen.body)["namespace"] == "acme-ns"
        assert seen.header("content-length") is None
        refused = client.request("POST", "/pinecone/query", token=token, trailers=trailers,
                                 body={"namespace": "other", "topK": 3})
        assert refused.status == 403, refused
        assert upstream.find(refused.request_id) == []
    assert proxy.stat("wasmcustom.tenant_guard.header_mode.forwarded") >= 1
