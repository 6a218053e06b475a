"""No memory shared between tenants behind one provider account (isolation): provider-side
objects belong to the tenant that created them, prompt-cache keys and user identifiers are
scoped to the tenant, and a shared HTTP cache never hands one tenant's answer to another.

The recording upstream mints ids like the providers do (unique per answer). Tenant acme is
vouched for by corp-idp, globex by globex-idp."""

import json
import os

import pytest

from harness import bootstrap as bs
from harness.answers import answer
from harness.expect import assert_denied
from harness.h2client import H2Client
from harness.keys import GLOBEX_ISSUER, claims, mint
from harness.plugin_config import gateway_config, tenant
from harness.records import filter_record
from harness.wait import wait_for


@pytest.fixture
def tokens(keys):
    return {
        "acme": mint(keys.corp_rsa, claims("acme", sub="alice")),
        "acme-bob": mint(keys.corp_rsa, claims("acme", sub="bob")),
        "globex": mint(keys.globex_rsa, claims("globex", iss=GLOBEX_ISSUER, sub="alice")),
    }


TENANTS = {"acme": tenant(), "globex": tenant(providers=["globex-idp"])}


@pytest.fixture
def gateway(gateway_factory, keys, tokens):
    def make(**isolation):
        config = gateway_config(keys, dict(TENANTS), isolation=isolation or None)
        proxy = gateway_factory(config, name="isolation")
        proxy.learn_header_mode(tokens["acme"])
        return proxy
    return make


def create(proxy, upstream, token, path, spec, body=None):
    """Creates an object through the gateway; returns its id as the upstream minted it."""
    resp = proxy.client.post(path, token=token, body=body if body is not None else {},
                             headers=answer(*spec[0], **spec[1]))
    assert resp.status == 200, resp
    return upstream.answered(resp.request_id).object_id


def refused_unseen(resp, upstream):
    """A 404 `provider_object_not_found` that no upstream heard of."""
    assert_denied(resp, 404, "provider_object_not_found")
    assert upstream.started(resp.request_id) == [], "the upstream saw the request"


# (creating path, answer spec, body, then: paths naming it, bodies naming it)
KINDS = {
    "response": ("/v1/responses", (("responses-json",), {}), {"model": "gpt-4o", "input": "hi"},
                 ["/v1/responses/{id}", "/v1/responses/{id}/input_items"],
                 [("/v1/responses", {"model": "gpt-4o", "input": "more",
                                     "previous_response_id": "{id}"})]),
    "conversation": ("/v1/conversations", (("object",), {"prefix": "conv_"}), {},
                     ["/v1/conversations/{id}", "/v1/conversations/{id}/items"],
                     [("/v1/responses", {"model": "gpt-4o", "input": "x",
                                         "conversation": "{id}"}),
                      ("/v1/responses", {"model": "gpt-4o", "input": "x",
                                         "conversation": {"id": "{id}"}})]),
    "file": ("/v1/files", (("object",), {"prefix": "file-"}), {"purpose": "batch"},
             ["/v1/files/{id}", "/v1/files/{id}/content"],
             [("/v1/batches", {"input_file_id": "{id}", "endpoint": "/v1/chat/completions"}),
              ("/v1/chat/completions",
               {"model": "gpt-4o", "messages": [{"role": "user", "content": [
                   {"type": "file", "file": {"file_id": "{id}"}}]}]})]),
    "vector store": ("/v1/vector_stores", (("object",), {"prefix": "vs_"}), {"name": "kb"},
                     ["/v1/vector_stores/{id}", "/v1/vector_stores/{id}/search"],
                     [("/v1/responses", {"model": "gpt-4o", "input": "q", "tools": [
                         {"type": "file_search", "vector_store_ids": ["{id}"]}]})]),
    "thread": ("/v1/threads", (("object",), {"prefix": "thread_"}), {},
               ["/v1/threads/{id}", "/v1/threads/{id}/messages", "/v1/threads/{id}/runs"],
               []),
    "thread of a run": ("/v1/threads/runs", (("object",), {"prefix": "thread_",
                                                            "id_field": "thread_id"}),
                        {"assistant_id": None},
                        ["/v1/threads/{id}/runs"], []),
    "batch": ("/v1/batches", (("object",), {"prefix": "batch_"}), {},
              ["/v1/batches/{id}", "/v1/batches/{id}/cancel"], []),
    "fine-tuning job": ("/v1/fine_tuning/jobs", (("object",), {"prefix": "ftjob-"}), {},
                        ["/v1/fine_tuning/jobs/{id}/events"], []),
    "stored completion": ("/v1/chat/completions", (("openai-json",), {}),
                          {"model": "gpt-4o", "store": True, "messages": []},
                          ["/v1/chat/completions/{id}", "/v1/chat/completions/{id}/messages"],
                          []),
    "message batch": ("/v1/messages/batches", (("object",), {"prefix": "msgbatch_"}),
                      {"requests": []}, ["/v1/messages/batches/{id}/results"], []),
}


def fill(template, object_id):
    return json.loads(json.dumps(template).replace("{id}", object_id))


@pytest.mark.parametrize("kind", list(KINDS))
def test_another_tenant_can_neither_read_continue_nor_delete_an_object(gateway, upstream,
                                                                      tokens, kind):
    create_path, spec, body, paths, bodies = KINDS[kind]
    proxy = gateway()
    object_id = create(proxy, upstream, tokens["acme"], create_path, spec, body)
    h2 = H2Client(proxy.listener_port)
    for path in paths:
        path = path.replace("{id}", object_id)
        for method in ("GET", "POST", "DELETE"):
            refused_unseen(proxy.client.request(method, path, token=tokens["globex"]), upstream)
        refused_unseen(h2.request("GET", path, token=tokens["globex"]), upstream)
        owner = proxy.client.get(path, token=tokens["acme"])
        assert owner.status == 200, owner
        assert upstream.received(owner.request_id).path == path
    for path, template in bodies:
        named = fill(template, object_id)
        refused_unseen(proxy.client.post(path, token=tokens["globex"], body=named), upstream)
        refused_unseen(h2.request("POST", path, token=tokens["globex"], body=named,
                                  trailers=[("x-end", "1")]), upstream)
        owner = proxy.client.post(path, token=tokens["acme"], body=named)
        assert owner.status == 200, owner
    # The audit record says whose object the other tenant tried.
    attempt = proxy.client.get(paths[0].replace("{id}", object_id), token=tokens["globex"])
    record = filter_record(proxy, attempt.request_id)
    assert (record["tenant"], record["reason"]) == ("globex", "provider_object_not_found")
    assert object_id in record["detail"] and "another tenant" in record["detail"], record


def test_objects_never_seen_created_are_refused_unless_the_tenant_lists_their_prefix(
        gateway_factory, keys, upstream, tokens):
    tenants = dict(TENANTS, acme=tenant(limits=None) | {"object_prefixes": ["file-legacy"]})
    proxy = gateway_factory(gateway_config(keys, tenants), name="object-prefixes")
    refused_unseen(proxy.client.get("/v1/files/file-other1", token=tokens["acme"]), upstream)
    assert proxy.client.get("/v1/files/file-legacy42", token=tokens["acme"]).status == 200
    refused_unseen(proxy.client.get("/v1/files/file-legacy42", token=tokens["globex"]),
                   upstream)


def test_chat_completions_not_stored_create_nothing(gateway, upstream, tokens):
    proxy = gateway()
    object_id = create(proxy, upstream, tokens["acme"], "/v1/chat/completions",
                       (("openai-json",), {}), {"model": "gpt-4o", "messages": []})
    refused_unseen(proxy.client.get(f"/v1/chat/completions/{object_id}",
                                    token=tokens["acme"]), upstream)


def test_a_streamed_response_belongs_to_its_tenant(gateway, upstream, tokens):
    proxy = gateway()
    resp = proxy.client.post("/v1/responses", token=tokens["acme"],
                             body={"model": "gpt-4o", "input": "hi", "stream": True},
                             headers=answer("responses-sse"))
    assert resp.status == 200, resp
    object_id = upstream.answered(resp.request_id).object_id
    refused_unseen(proxy.client.get(f"/v1/responses/{object_id}", token=tokens["globex"]),
                   upstream)
    assert proxy.client.get(f"/v1/responses/{object_id}", token=tokens["acme"]).status == 200


def test_listings_show_each_tenant_its_own_objects(gateway, upstream, tokens):
    proxy = gateway()
    acme_files = [create(proxy, upstream, tokens["acme"], "/v1/files",
                         (("object",), {"prefix": "file-"})) for _ in range(2)]
    globex_file = create(proxy, upstream, tokens["globex"], "/v1/files",
                         (("object",), {"prefix": "file-"}))
    listing = {"object": "list", "data": [{"id": i, "object": "file"} for i in
                                          [acme_files[0], globex_file, "file-unknown",
                                           acme_files[1]]],
               "first_id": acme_files[0], "last_id": acme_files[1], "has_more": False}
    seen = {}
    for name in ("acme", "globex"):
        request_id = f"tg-test-listing-{name}-{os.getpid()}"
        upstream.reply_for(request_id, listing)
        resp = proxy.client.get("/v1/files", token=tokens[name], request_id=request_id)
        assert resp.status == 200, resp
        seen[name] = [item["id"] for item in resp.json()["data"]]
    assert seen == {"acme": acme_files, "globex": [globex_file]}


def test_ownership_holds_on_every_worker_and_after_a_configuration_update(
        envoy_factory, tmp_path, wasm_path, upstream, jwks_server, keys, tokens):
    lds_dir = tmp_path / "lds"
    lds_dir.mkdir()

    def write(version, config, envoy):
        doc = bs.listener(envoy.listener_port, envoy.access_log_path,
                          [bs.wasm_filter(wasm_path, config)])
        tmp = lds_dir / f".lds.{version}.tmp"
        tmp.write_text(json.dumps(bs.lds_response(version, doc)))
        os.rename(tmp, lds_dir / "lds.json")

    config = gateway_config(keys, dict(TENANTS))

    def make(envoy):
        write("1", config, envoy)
        return bs.bootstrap(admin_port=envoy.admin_port, upstream_port=upstream.port,
                            jwks_port=jwks_server.port, lds_dir=str(lds_dir))

    proxy = envoy_factory(make_config=make, name="objects-lds")
    object_id = create(proxy, upstream, tokens["acme"], "/v1/files",
                       (("object",), {"prefix": "file-"}))

    def holds():
        for _ in range(8):  # new connections: both workers
            assert proxy.client.get(f"/v1/files/{object_id}", token=tokens["acme"]).status \
                == 200
            refused_unseen(proxy.client.get(f"/v1/files/{object_id}",
                                            token=tokens["globex"]), upstream)
    holds()
    assert len([w for w, n in proxy.worker_connections().items() if n > 0]) == 2
    updated = dict(config, bypass_paths=["/healthz", "/readyz"])
    write("2", updated, proxy)
    wait_for(lambda: proxy.client.get("/readyz").status != 401, timeout=15,
             message="the updated policy")
    holds()


def test_prompt_cache_keys_and_user_identifiers_are_scoped_to_the_tenant(gateway, upstream,
                                                                         tokens):
    proxy = gateway()
    client_key = {"prompt_cache_key": "customer-support-v1"}
    seen = {}
    for name in ("acme", "acme", "acme-bob", "globex"):
        resp = proxy.client.chat(token=tokens[name], body={"model": "gpt-4o", "messages": [],
                                                           "user": "raw-user", **client_key})
        assert resp.status == 200, resp
        body = json.loads(upstream.received(resp.request_id).body)
        seen.setdefault(name, []).append(body)
    acme, again, bob, globex = seen["acme"][0], seen["acme"][1], seen["acme-bob"][0], \
        seen["globex"][0]
    assert acme["prompt_cache_key"] == again["prompt_cache_key"] == bob["prompt_cache_key"]
    assert globex["prompt_cache_key"] != acme["prompt_cache_key"]
    assert "customer-support" not in acme["prompt_cache_key"]
    assert acme["safety_identifier"] == again["safety_identifier"] == acme["user"]
    assert bob["safety_identifier"] != acme["safety_identifier"]
    assert globex["safety_identifier"] != acme["safety_identifier"], "same sub, other tenant"
    assert "raw-user" not in json.dumps([acme, bob, globex])
    resp = proxy.client.post("/v1/messages", token=tokens["acme"],
                             body={"model": "claude-sonnet-4", "max_tokens": 5,
                                   "metadata": {"user_id": "raw-user"}, "messages": []},
                             headers=answer("anthropic-json"))
    assert resp.status == 200, resp
    user_id = json.loads(upstream.received(resp.request_id).body)["metadata"]["user_id"]
    assert user_id == acme["safety_identifier"]


UNSCOPABLE = [
    # Bodies serde_json cannot read, which a lenient provider might: a number out of range, a
    # lone surrogate, nesting past 128 levels.
    '{"model":"gpt-4o","messages":[],"prompt_cache_key":"mine","safety_identifier":"raw-user",'
    '"temperature":1e400}',
    '{"model":"gpt-4o","messages":[],"prompt_cache_key":"mine","user":"\\ud800"}',
    '{"model":"gpt-4o","messages":[],"prompt_cache_key":"mine","metadata":'
    + "[" * 130 + "]" * 130 + "}",
]


@pytest.mark.parametrize("body", UNSCOPABLE, ids=["1e400", "surrogate", "deep"])
@pytest.mark.parametrize("http", ["h1", "h2", "h2-trailers"])
def test_a_body_whose_cache_cannot_be_scoped_never_reaches_the_upstream(gateway, upstream,
                                                                       tokens, body, http):
    """A body the gateway cannot read would reach the provider with the client's own cache key
    and identifiers: it is refused with invalid_body, over HTTP/1.1 and HTTP/2 (in pieces, and
    ended by request trailers)."""
    proxy = gateway()
    headers = {"content-type": "application/json"}
    if http != "h1":
        trailers = [("x-checksum", "1")] if http == "h2-trailers" else None
        resp = H2Client(proxy.listener_port).request("POST", "/v1/chat/completions",
                                                     token=tokens["acme"], body=body,
                                                     headers=headers, pieces=3,
                                                     trailers=trailers)
    else:
        resp = proxy.client.post(token=tokens["acme"], body=body, headers=headers)
    assert resp.status == 400, resp
    assert json.loads(resp.body)["error"]["code"] == "invalid_body", resp
    assert upstream.started(resp.request_id) == []


def test_a_json_body_labelled_otherwise_is_still_scoped(gateway_factory, keys, upstream,
                                                        tokens):
    """The content-type does not decide whether a chat body is scoped: one sent as text/plain
    reaches the upstream with the tenant's cache key, and over usage.max_body_bytes it is
    refused rather than sent on unread."""
    config = gateway_config(keys, dict(TENANTS), usage={"max_body_bytes": 4096})
    proxy = gateway_factory(config, name="isolation-text-bodies")
    body = {"model": "gpt-4o", "messages": [], "prompt_cache_key": "mine"}
    text = {"content-type": "text/plain"}
    resp = proxy.client.post(token=tokens["acme"], body=json.dumps(body), headers=text)
    assert resp.status == 200, resp
    sent = json.loads(upstream.received(resp.request_id).body)
    assert sent["prompt_cache_key"].startswith("tg-"), sent
    big = dict(body, messages=[{"role": "user", "content": "x" * 8000}])
    resp = proxy.client.post(token=tokens["acme"], body=json.dumps(big), headers=text)
    assert resp.status == 413, resp
    assert json.loads(resp.body)["error"]["code"] == "body_too_large", resp
    assert upstream.started(resp.request_id) == []


def test_prompt_cache_scoping_can_be_turned_off(gateway, upstream, tokens):
    proxy = gateway(prompt_cache="off")
    body = {"model": "gpt-4o", "messages": [], "prompt_cache_key": "k"}
    resp = proxy.client.chat(token=tokens["acme"], body=body)
    assert json.loads(upstream.received(resp.request_id).body) == body


CACHE_FILTER = {
    "name": "envoy.filters.http.cache",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cache.v3.CacheConfig",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.http.cache.simple_http_cache.v3."
                     "SimpleHttpCacheConfig"}},
}


@pytest.mark.parametrize("routing", [None, {"path_prefix": "/tenants/{tenant}"}],
                         ids=["shared-path", "tenant-in-path"])
def test_a_shared_response_cache_never_serves_one_tenants_answer_to_another(
        envoy_factory, wasm_path, upstream, jwks_server, keys, tokens, routing):
    """Envoy's own cache filter after tenant-guard (it sees answers before tenant-guard does).
    Without the tenant in the path, requests go on saying `no-store` and answers come back
    `private`, so the cache keeps none; with it, the cache keys differ by tenant and a
    tenant's repeat is served from the cache (the cache is live), never another's answer."""
    config = gateway_config(keys, dict(TENANTS), routing=routing)
    proxy = envoy_factory(make_config=bs.gateway(
        upstream.port, jwks_server.port, [bs.wasm_filter(wasm_path, config), CACHE_FILTER]),
        name="cache")
    cacheable = {"object": "list", "data": [{"id": "gpt-4o"}]}
    ids = {}
    for n, name in enumerate(("acme", "acme", "globex")):
        request_id = f"tg-test-cache-{routing is None}-{n}-{os.getpid()}"
        upstream.reply_for(request_id, cacheable,
                           headers=[("cache-control", "public, max-age=300")])
        resp = proxy.client.get("/v1/models", token=tokens[name], request_id=request_id)
        assert resp.status == 200, resp
        ids.setdefault(name, []).append(request_id)
        if routing is None:
            assert "private" in resp.header("cache-control"), resp.headers
            sent = upstream.received(request_id).header("cache-control")
            assert sent == "no-store", sent
    reached = lambda request_id: bool(upstream.find(request_id))  # noqa: E731
    assert reached(ids["globex"][0]), "globex was served acme's cached answer"
    assert reached(ids["acme"][0])
    # The same tenant's repeat: from the cache only when the cache may keep the answer.
    assert reached(ids["acme"][1]) == (routing is None)


def test_the_store_keeps_its_bound_and_forgets_the_oldest_first(gateway, upstream, tokens):
    """A store of 32 objects (2 buckets of 16): after 80 objects the latest are remembered,
    the first ones given way (counted in tenant_guard.objects.evicted), and the store never
    grows."""
    proxy = gateway(objects={"max_objects": 32, "ttl_s": 3600})
    made = [create(proxy, upstream, tokens["acme"], "/v1/files",
                   (("object",), {"prefix": "file-"})) for _ in range(80)]
    assert proxy.stat("wasmcustom.tenant_guard.objects.evicted") >= 80 - 32
    assert proxy.client.get(f"/v1/files/{made[-1]}", token=tokens["acme"]).status == 200
    remembered = sum(proxy.client.get(f"/v1/files/{i}", token=tokens["acme"]).status == 200
                     for i in made)
    assert remembered <= 32
