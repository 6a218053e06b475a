"""Tenant API keys in real Envoy, through the official OpenAI and Anthropic Python SDKs: a
tenant's key (only its SHA-256 is in the policy) identifies the tenant and user, quotas and
records behave as for a JWT, and the key never reaches the upstream or any log; unknown,
revoked and expired keys, keys of suspended tenants, and keys sent twice are refused."""

import hashlib
import json
import secrets
import uuid

import anthropic
import httpx2
import openai
import pytest

from harness import bootstrap as bs
from harness import cli
from harness.audit import audit_event
from harness.envoy_process import Envoy
from harness.expect import assert_denied
from harness.h2client import H2Client
from harness.keys import claims, mint
from harness.plugin_config import gateway_config, tenant, windows
from harness.records import filter_record
from harness.workers import until_every_worker


def new_key(name):
    return f"tgk_{name}_{secrets.token_urlsafe(24)}"


KEYS = {name: new_key(name) for name in
        ("acme", "old", "temp", "later", "globex", "initech", "tight", "shared")}
# Never in the policy: the platform's key for OpenAI, read from Envoy's environment.
UPSTREAM_KEY = f"sk-tgsecret-platform-openai-{secrets.token_hex(16)}"
QUOTA = 3


def digest(key):
    return hashlib.sha256(key.encode()).hexdigest()


def entry(key_id, name, **fields):
    return {"id": key_id, "sha256": digest(KEYS[name]), **fields}


def key_policy(keys):
    config = gateway_config(keys, {
        "acme": dict(tenant("pro"), api_keys=[
            entry("ci", "acme", user="ci-bot"),
            entry("old", "old", status="revoked"),
            entry("temp", "temp", expires="2024-01-31T00:00:00Z"),
            entry("later", "later", expires="2099-12-31T23:59:59+01:00")]),
        "globex": dict(tenant("pro", providers=["globex-idp"]),
                       api_keys=[entry("main", "globex")]),
        "initech": dict(tenant("pro", status="suspended"),
                        api_keys=[entry("k1", "initech")]),
        # Known by its key alone: no identity provider.
        "tight": dict(tenant("tight", providers=()), api_keys=[entry("k", "tight")]),
        "shared": dict(tenant("tight"), api_keys=[entry("k", "shared")]),
    }, plans={"pro": {"requests": windows((100000, 60))},
              "tight": {"requests": windows((QUOTA, 3600))}})
    config["identity"]["api_key_sources"] = [{"header": "authorization", "prefix": "Bearer "},
                                             {"header": "x-api-key"}]
    config["upstreams"] = {"openai": {"path_prefixes": ["/v1/chat"]}}
    config["default_credentials"] = {
        "openai": {"header": "authorization", "prefix": "Bearer ", "env": "PLATFORM_OPENAI"}}
    return config


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, wasm_path, upstream, jwks_server, keys):
    filters = [bs.wasm_filter(wasm_path, key_policy(keys), env_keys=["PLATFORM_OPENAI"])]
    with Envoy(tmp_path_factory.mktemp("envoy-api-keys"),
               bs.gateway(upstream.port, jwks_server.port, filters),
               env={"PLATFORM_OPENAI": UPSTREAM_KEY}) as proxy:
        yield proxy


def http_client(protocol):
    """The SDKs' HTTP client: HTTP/1.1, or HTTP/2 with prior knowledge (h2c)."""
    if protocol == "h2":
        return httpx2.Client(http1=False, http2=True, timeout=10.0)
    return httpx2.Client(timeout=10.0)


def openai_client(gateway, key, protocol="h1"):
    return openai.OpenAI(api_key=key, base_url=f"http://127.0.0.1:{gateway.listener_port}/v1",
                         http_client=http_client(protocol), max_retries=0)


def anthropic_client(gateway, key, protocol="h1"):
    return anthropic.Anthropic(api_key=key, base_url=f"http://127.0.0.1:{gateway.listener_port}",
                               http_client=http_client(protocol), max_retries=0)


def request_headers(answer=None):
    headers = {"x-request-id": f"tg-test-{uuid.uuid4()}"}
    if answer:
        headers["x-test-answer"] = answer
    return headers


def assert_no_key_reached(received, key):
    """Nothing of the tenant's key in what the upstream got."""
    for name, value in received.headers:
        assert key not in value, (name, value)


def assert_key_record(gateway, request_id, tenant_id, key_id, user):
    record = filter_record(gateway, request_id)
    assert (record["tenant"], record["auth"], record["key_id"], record["user"]) == \
        (tenant_id, "api_key", key_id, user), record
    assert record.get("provider") is None
    return record


@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_the_openai_sdk_with_a_tenant_key_chats_and_streams(gateway, upstream, protocol):
    client = openai_client(gateway, KEYS["acme"], protocol)
    headers = request_headers()
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], extra_headers=headers)
    assert raw.http_response.http_version == ("HTTP/2" if protocol == "h2" else "HTTP/1.1")
    completion = raw.parse()
    assert completion.choices[0].message.content == "hello from upstream"
    received = upstream.received(headers["x-request-id"])
    # The tenant's key was replaced by the platform's upstream credential.
    assert received.header_values("authorization") == [f"Bearer {UPSTREAM_KEY}"]
    assert_no_key_reached(received, KEYS["acme"])
    record = assert_key_record(gateway, headers["x-request-id"], "acme", "ci", "ci-bot")
    assert record["credential"].startswith("(default)/openai#")

    headers = request_headers("openai-sse;in=20;out=9")
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True,
        extra_headers=headers)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.startswith("Hello from the")
    assert_no_key_reached(upstream.received(headers["x-request-id"]), KEYS["acme"])
    record = assert_key_record(gateway, headers["x-request-id"], "acme", "ci", "ci-bot")
    assert (record["input_tokens"], record["output_tokens"]) == (20, 9)


@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_the_anthropic_sdk_with_a_tenant_key_sends_and_streams(gateway, upstream, protocol):
    client = anthropic_client(gateway, KEYS["globex"], protocol)
    headers = request_headers("anthropic-json;in=11;out=4")
    message = client.messages.create(model="claude-sonnet-4", max_tokens=64,
                                     messages=[{"role": "user", "content": "hi"}],
                                     extra_headers=headers)
    assert message.content[0].text == "Hello from the"
    received = upstream.received(headers["x-request-id"])
    # No upstream of the policy: the key is still never forwarded.
    assert received.header_values("x-api-key") == []
    assert_no_key_reached(received, KEYS["globex"])
    assert received.header_values("x-tenant-id") == ["globex"]
    assert_key_record(gateway, headers["x-request-id"], "globex", "main", "main")

    headers = request_headers("anthropic-sse;in=30;out=6;chunks=4")
    with client.messages.stream(model="claude-sonnet-4", max_tokens=64,
                                messages=[{"role": "user", "content": "hi"}],
                                extra_headers=headers) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the recording"
    assert final.usage.output_tokens == 6
    assert_no_key_reached(upstream.received(headers["x-request-id"]), KEYS["globex"])
    record = assert_key_record(gateway, headers["x-request-id"], "globex", "main", "main")
    assert (record["input_tokens"], record["output_tokens"]) == (30, 6)


@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_the_sdks_raise_their_typed_429_when_a_keys_tenant_is_out_of_quota(
        gateway_factory, keys, protocol):
    proxy = gateway_factory(key_policy(keys), env={"PLATFORM_OPENAI": UPSTREAM_KEY},
                            name=f"quota-{protocol}")
    client = openai_client(proxy, KEYS["tight"], protocol)
    for _ in range(QUOTA - 1):
        client.chat.completions.create(model="gpt-4o", messages=[], extra_headers=request_headers())
    claude = anthropic_client(proxy, KEYS["tight"], protocol)
    claude.messages.create(model="claude-sonnet-4", max_tokens=8, messages=[],
                           extra_headers=request_headers("anthropic-json"))
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-4o", messages=[],
                                       extra_headers=request_headers())
    assert refused.value.code == "request_quota_exceeded"
    assert refused.value.response.headers.get("retry-after")
    with pytest.raises(anthropic.RateLimitError) as refused:
        claude.messages.create(model="claude-sonnet-4", max_tokens=8, messages=[],
                               extra_headers=request_headers("anthropic-json"))
    assert refused.value.body["error"]["code"] == "request_quota_exceeded"


def test_jwts_and_keys_side_by_side_share_the_tenants_quota_on_every_worker(
        gateway_factory, keys, upstream):
    proxy = gateway_factory(key_policy(keys), env={"PLATFORM_OPENAI": UPSTREAM_KEY},
                            name="side-by-side")
    token = mint(keys.corp_rsa, claims("shared", sub="bob"))
    sent = []

    def one():
        by_key = len(sent) % 2 == 0
        sent.append("api_key" if by_key else "jwt")
        if by_key:
            return proxy.client.get("/v1/models", headers={"x-api-key": KEYS["shared"]})
        return proxy.client.get("/v1/models", token=token)

    statuses = []

    def check(resp):
        statuses.append(resp.status)
        record = filter_record(proxy, resp.request_id)
        assert (record["tenant"], record["auth"]) == ("shared", sent[-1]), record
        assert record["user"] == ("bob" if sent[-1] == "jwt" else "k")
        if resp.status == 200:
            assert_no_key_reached(upstream.received(resp.request_id), KEYS["shared"])

    until_every_worker(proxy, one, check, max_requests=40)
    while len(statuses) < QUOTA + 2:
        check(one())
    # One tenant, one quota: tokens and keys take from the same windows.
    assert statuses == [200] * QUOTA + [429] * (len(statuses) - QUOTA), statuses


@pytest.mark.parametrize("name,status,reason", [
    ("nobody", 401, "invalid_api_key"),
    ("old", 401, "api_key_revoked"),
    ("temp", 401, "api_key_expired"),
    ("initech", 403, "tenant_suspended"),
])
def test_unknown_revoked_expired_and_suspended_keys_are_refused_and_audited(
        gateway, upstream, name, status, reason):
    key = KEYS.get(name) or new_key(name)
    resp = gateway.client.get("/v1/models", headers={"authorization": f"Bearer {key}"})
    assert_denied(resp, status, reason, upstream)
    event = audit_event(gateway, resp.request_id)
    assert (event["reason"], event["auth"]) == (reason, "api_key"), event
    if status == 401:
        assert event["key_digest"] == digest(key)[:8], event
    if name != "nobody":
        assert event["key_id"] in ("old", "temp", "k1")
        assert event["tenant"] in ("acme", "initech")
    else:
        assert event["tenant"] is None and "key_id" not in event


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_the_sdks_surface_a_refused_key_as_an_authentication_error(gateway, sdk):
    if sdk == "openai":
        with pytest.raises(openai.AuthenticationError) as refused:
            openai_client(gateway, KEYS["old"]).models.list(extra_headers=request_headers())
        assert refused.value.code == "api_key_revoked"
    else:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            anthropic_client(gateway, new_key("x")).messages.create(
                model="claude-sonnet-4", max_tokens=8, messages=[],
                extra_headers=request_headers())
        assert refused.value.body["error"]["code"] == "invalid_api_key"


def test_a_key_expiring_later_is_taken(gateway, upstream):
    resp = gateway.client.get("/v1/models", headers={"x-api-key": KEYS["later"]})
    assert resp.status == 200, resp
    assert_key_record(gateway, resp.request_id, "acme", "later", "later")


def h2_get(gateway, headers):
    return H2Client(gateway.listener_port).request("GET", "/v1/models", headers=headers)


@pytest.mark.parametrize("send", ["h1", "h2"])
def test_a_key_sent_twice_or_two_different_credentials_are_refused(gateway, upstream, send):
    key, other = KEYS["acme"], KEYS["globex"]
    cases = [
        ([("x-api-key", key), ("x-api-key", key)], 401),
        ([("x-api-key", key), ("x-api-key", other)], 401),
        ([("authorization", f"Bearer {key}"), ("x-api-key", other)], 401),
        ([("authorization", f"Bearer {key}"), ("authorization", f"Bearer {key}")], 401),
        # The same key in both headers is one credential.
        ([("authorization", f"Bearer {key}"), ("x-api-key", key)], 200),
    ]
    for headers, status in cases:
        if send == "h1":
            resp = gateway.client.get("/v1/models", headers=headers)
        else:
            resp = h2_get(gateway, headers)
        if status == 200:
            assert resp.status == 200, (headers, resp)
            assert_no_key_reached(upstream.received(resp.request_id), key)
        else:
            assert_denied(resp, 401, "invalid_api_key", upstream)


def test_a_token_beside_a_different_key_is_refused(gateway, upstream, keys):
    token = mint(keys.corp_rsa, claims("acme"))
    resp = gateway.client.get("/v1/models", token=token, headers={"x-api-key": KEYS["acme"]})
    assert_denied(resp, 401, "invalid_api_key", upstream)
    resp = gateway.client.get("/v1/models", token=token)
    assert resp.status == 200, resp
    assert filter_record(gateway, resp.request_id)["auth"] == "jwt"


def test_keys_are_absent_from_every_log(gateway, upstream):
    # After the tests above (module order): refusals, SDK calls, streams.
    for name in ("acme", "old", "initech"):
        gateway.client.get("/v1/models", headers={"x-api-key": KEYS[name]})
    gateway.wait_access_log_flushed()
    texts = {"envoy log": gateway.read_log(), "access log": gateway.access_log_path.read_text()}
    if gateway.audit_log_path.exists():
        texts["audit log"] = gateway.audit_log_path.read_text()
    for path in ("/config_dump", "/stats"):
        texts[path] = gateway.admin_get(path)[1]
    for where, text in texts.items():
        for name, key in KEYS.items():
            assert key not in text, f"{name}'s key is in the {where}"
        assert UPSTREAM_KEY not in text, f"the upstream key is in the {where}"
    assert '"auth":"api_key"' in texts["envoy log"]


def test_a_key_from_tenant_guard_api_key_works_as_pasted(gateway_factory, keys, upstream):
    """`make api-key TENANT=acme` (the `tenant-guard api-key` command): its entry pasted into
    the policy admits the client holding its key, and the key alone."""
    minted = json.loads(cli.run("api-key", "--tenant", "acme", "--user", "dev", "--json").stdout)
    config = key_policy(keys)
    config["tenants"]["acme"]["api_keys"].append(minted["entry"])
    proxy = gateway_factory(config, env={"PLATFORM_OPENAI": UPSTREAM_KEY}, name="minted")
    models = openai_client(proxy, minted["key"]).models.with_raw_response.list(
        extra_headers=request_headers())
    assert models.http_response.status_code == 200
    assert_key_record(proxy, models.http_response.request.headers["x-request-id"], "acme",
                      minted["entry"]["id"], "dev")
    assert minted["key"] not in json.dumps(config)
