"""Per-tenant upstream credentials in real Envoy: the keys live in Envoy's process environment,
reach the Wasm VM through ``vm_config.environment_variables.host_env_keys``, and go upstream with
their own tenant's requests only; a client's own keys never do, and no key byte shows in the
Envoy log, the access log, the audit stream, /config_dump or /stats."""

import copy
import hashlib
import secrets

import pytest

from harness import bootstrap as bs
from harness.audit import audit_event
from harness.envoy_process import Envoy
from harness.expect import assert_denied
from harness.h2client import H2Client
from harness.keys import GLOBEX_ISSUER, claims, mint
from harness.plugin_config import gateway_config, tenant
from harness.records import filter_record
from harness.wait import wait_for
from harness.workers import until_every_worker
from test_bad_config import assert_refused
from test_config_update import write_lds

# Fresh values every run, each with a marker no other text of a run contains.
SECRETS = {
    "ACME_OPENAI_KEY": f"sk-tgsecret-acme-openai-{secrets.token_hex(16)}",
    "ACME_ANTHROPIC_KEY": f"sk-tgsecret-acme-anthropic-{secrets.token_hex(16)}",
    "GLOBEX_OPENAI_KEY": f"sk-tgsecret-globex-openai-{secrets.token_hex(16)}",
    "PLATFORM_ANTHROPIC_KEY": f"sk-tgsecret-platform-anthropic-{secrets.token_hex(16)}",
    "ACME_OPENAI_KEY_NEXT": f"sk-tgsecret-acme-openai-next-{secrets.token_hex(16)}",
}
# What a client sends as its own provider keys: none may reach the upstream of the policy.
CLIENT_KEYS = [("x-api-key", "sk-client-own-anthropic"), ("api-key", "client-own-azure"),
               ("x-goog-api-key", "client-own-google"), ("openai-project", "proj_client")]


def fingerprint(owner, upstream, variable):
    digest = hashlib.sha256(SECRETS[variable].encode()).hexdigest()[:8]
    return f"{owner}/{upstream}#{digest}"


def credentials_policy(keys, acme_openai_env="ACME_OPENAI_KEY"):
    config = gateway_config(keys, {
        "acme": dict(tenant(), credentials={
            "openai": {"header": "authorization", "prefix": "Bearer ", "env": acme_openai_env},
            "anthropic": {"header": "x-api-key", "env": "ACME_ANTHROPIC_KEY"}},
            upstream_headers={"openai-project": "proj_acme"}),
        "globex": dict(tenant(providers=["globex-idp"]), credentials={
            "openai": {"header": "authorization", "prefix": "Bearer ",
                       "env": "GLOBEX_OPENAI_KEY"}}),
        "hooli": tenant(),
    })
    # Tokens go upstream unless a credential replaces them (the rule under test).
    config["identity"]["strip_token"] = False
    config["upstreams"] = {"openai": {"path_prefixes": ["/v1/chat", "/v1/responses"]},
                           "anthropic": {"path_prefixes": ["/v1/messages"]}}
    config["default_credentials"] = {
        "anthropic": {"header": "x-api-key", "env": "PLATFORM_ANTHROPIC_KEY"}}
    return config


class Gateway:
    def __init__(self, proxy, keys):
        self.proxy = proxy
        self.client = proxy.client
        self._keys = keys

    def token(self, name):
        if name == "globex":
            return mint(self._keys.globex_rsa, claims("globex", iss=GLOBEX_ISSUER))
        return mint(self._keys.corp_rsa, claims(name))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, wasm_path, upstream, jwks_server, keys):
    config = credentials_policy(keys)
    filters = [bs.wasm_filter(wasm_path, config, env_keys=list(SECRETS))]
    with Envoy(tmp_path_factory.mktemp("envoy-credentials"),
               bs.gateway(upstream.port, jwks_server.port, filters),
               env=SECRETS) as proxy:
        yield Gateway(proxy, keys)


def send_h1(gateway, tenant_name, path="/v1/chat/completions"):
    return gateway.client.post(path, token=gateway.token(tenant_name), headers=CLIENT_KEYS,
                               body={"model": "gpt-4o", "messages": []})


def send_h2(gateway, tenant_name, path="/v1/chat/completions"):
    headers = [("authorization", f"Bearer {gateway.token(tenant_name)}")] + CLIENT_KEYS
    return H2Client(gateway.proxy.listener_port).request(
        "POST", path, headers=headers, body={"model": "gpt-4o", "messages": []})


def assert_went_with(received, header, value):
    """The upstream got ``header: value`` once, and none of the client's keys."""
    assert received.header_values(header) == [value], received.headers
    for name, client_value in CLIENT_KEYS:
        assert client_value not in received.header_values(name), (name, received.headers)
    for name in ("authorization", "x-api-key", "api-key", "x-goog-api-key"):
        if name != header:
            assert received.header_values(name) == [], (name, received.headers)


@pytest.mark.parametrize("send", [send_h1, send_h2], ids=["http1", "http2"])
def test_each_tenant_reaches_the_upstream_with_its_own_key_on_every_worker(gateway, upstream,
                                                                          send):
    expected = {"acme": ("ACME_OPENAI_KEY", "proj_acme"), "globex": ("GLOBEX_OPENAI_KEY", None)}
    turn = []

    def one():
        name = ["acme", "globex"][len(turn) % 2]
        turn.append(name)
        return send(gateway, name)

    def check(resp):
        name = turn[-1]
        assert resp.status == 200, resp
        received = upstream.received(resp.request_id)
        variable, project = expected[name]
        assert_went_with(received, "authorization", f"Bearer {SECRETS[variable]}")
        assert received.header_values("openai-project") == ([project] if project else [])
        record = filter_record(gateway.proxy, resp.request_id)
        assert record["tenant"] == name
        assert record["credential"] == fingerprint(name, "openai", variable)
        log = gateway.proxy.access_log_entry(resp.request_id)
        assert log["credential"] == record["credential"]

    served = until_every_worker(gateway.proxy, one, check)
    assert len(served) == gateway.proxy.concurrency
    assert {"acme", "globex"} <= set(turn)


def test_a_tenant_without_its_own_key_gets_the_platforms_and_never_anothers(gateway,
                                                                            upstream):
    for name, variable, owner in [("acme", "ACME_ANTHROPIC_KEY", "acme"),
                                  ("hooli", "PLATFORM_ANTHROPIC_KEY", "(default)"),
                                  ("globex", "PLATFORM_ANTHROPIC_KEY", "(default)")]:
        resp = send_h1(gateway, name, "/v1/messages")
        assert resp.status == 200, resp
        received = upstream.received(resp.request_id)
        # The token's own header is not forwarded when a credential replaces it.
        assert_went_with(received, "x-api-key", SECRETS[variable])
        assert filter_record(gateway.proxy, resp.request_id)["credential"] == \
            fingerprint(owner, "anthropic", variable)


def test_a_tenant_with_no_key_for_an_upstream_that_needs_one_is_refused_and_audited(
        gateway, upstream):
    resp = send_h1(gateway, "hooli")
    assert_denied(resp, 403, "no_upstream_credential", upstream)
    event = audit_event(gateway.proxy, resp.request_id)
    assert (event["event"], event["reason"], event["tenant"]) == \
        ("deny", "no_upstream_credential", "hooli")
    assert "credential" not in event


def test_a_request_to_no_upstream_is_left_alone(gateway, upstream):
    token = gateway.token("acme")
    resp = gateway.client.get("/v1/models", token=token,
                              headers=[("x-api-key", "sk-client-own")])
    assert resp.status == 200, resp
    received = upstream.received(resp.request_id)
    assert received.header_values("x-api-key") == ["sk-client-own"]
    assert received.header_values("authorization") == [f"Bearer {token}"]
    assert received.header_values("openai-project") == ["proj_acme"]
    record = filter_record(gateway.proxy, resp.request_id)
    assert "credential" not in record
    assert gateway.proxy.access_log_entry(resp.request_id)["credential"] is None


def test_key_material_is_absent_from_logs_records_audit_config_dump_and_stats(gateway,
                                                                              upstream):
    for name, path in [("acme", "/v1/chat/completions"), ("globex", "/v1/responses"),
                       ("hooli", "/v1/chat/completions"), ("hooli", "/v1/messages")]:
        send_h1(gateway, name, path)
        send_h2(gateway, name, path)
    proxy = gateway.proxy
    proxy.wait_access_log_flushed()
    wait_for(lambda: proxy.audit_log_path.exists(), message="the audit log")
    places = {
        "envoy log": proxy.read_log(),
        "access log": proxy.access_log_path.read_text(),
        "audit log": proxy.audit_log_path.read_text(),
    }
    for path in ["/config_dump", "/config_dump?include_eds", "/stats", "/stats?format=json",
                 "/stats/prometheus", "/server_info", "/clusters", "/listeners"]:
        status, body = proxy.admin_get(path)
        assert status == 200, (path, body[:200])
        places[path] = body
    for name, text in places.items():
        for variable, value in SECRETS.items():
            assert value not in text, f"{variable}'s value is in the {name}"
            assert "sk-tgsecret" not in text, f"key material in the {name}"
    # The searches looked where the names and fingerprints are.
    assert "ACME_OPENAI_KEY" in places["/config_dump"]
    assert fingerprint("acme", "openai", "ACME_OPENAI_KEY") in places["access log"]
    assert fingerprint("acme", "openai", "ACME_OPENAI_KEY") in places["envoy log"]
    assert "no_upstream_credential" in places["audit log"]


def test_a_variable_the_vm_lacks_refuses_the_configuration_naming_it(gateway_factory, keys):
    # Set in Envoy's environment but not handed to the VM (`tenant-guard check` on the
    # bootstrap says so too), then handed over but not set in Envoy's environment.
    listed = [k for k in SECRETS if k != "GLOBEX_OPENAI_KEY"]
    for env_keys, env in [(listed, SECRETS),
                          (list(SECRETS), {k: v for k, v in SECRETS.items()
                                           if k != "GLOBEX_OPENAI_KEY"})]:
        proxy = gateway_factory(credentials_policy(keys), env=env, env_keys=env_keys,
                                start=False, name=f"missing-{len(env_keys)}")
        message = assert_refused(
            proxy, "tenants.globex.credentials.openai.env: environment variable "
                   "GLOBEX_OPENAI_KEY is not set in the Wasm VM (list it in "
                   "vm_config.environment_variables.host_env_keys",
            check=env_keys is listed)
        log = proxy.read_log()
        assert all(value not in log for value in SECRETS.values()), message


def test_a_policy_update_takes_the_new_key_and_a_missing_variable_is_refused(
        envoy_factory, tmp_path, wasm_path, upstream, jwks_server, keys):
    lds_dir = tmp_path / "lds"
    lds_dir.mkdir()

    def listener_for(proxy, policy):
        return bs.listener(proxy.listener_port, proxy.access_log_path,
                           [bs.wasm_filter(wasm_path, policy, env_keys=list(SECRETS))])

    def make(proxy):
        write_lds(lds_dir, "1", listener_for(proxy, credentials_policy(keys)))
        return bs.bootstrap(admin_port=proxy.admin_port, upstream_port=upstream.port,
                            jwks_port=jwks_server.port, lds_dir=str(lds_dir))

    proxy = envoy_factory(make_config=make, name="lds-credentials", env=SECRETS)
    gateway = Gateway(proxy, keys)

    def acme_key_is(variable):
        def check(resp):
            assert resp.status == 200, resp
            assert_went_with(upstream.received(resp.request_id), "authorization",
                             f"Bearer {SECRETS[variable]}")
        return check

    until_every_worker(proxy, lambda: send_h1(gateway, "acme"), acme_key_is("ACME_OPENAI_KEY"))
    success = proxy.stat("listener_manager.lds.update_success")
    write_lds(lds_dir, "2", listener_for(proxy, credentials_policy(
        keys, acme_openai_env="ACME_OPENAI_KEY_NEXT")))
    wait_for(lambda: proxy.stat("listener_manager.lds.update_success") > success, timeout=15,
             message="the rotated policy to be taken")

    def rotated():
        resp = send_h1(gateway, "acme")
        received = upstream.received(resp.request_id)
        return received.header("authorization") == f"Bearer {SECRETS['ACME_OPENAI_KEY_NEXT']}"
    # Connections of the old listener drain; new ones get the new policy.
    wait_for(lambda: all(rotated() for _ in range(6)), timeout=15,
             message="acme's requests to carry the rotated key")
    until_every_worker(proxy, lambda: send_h1(gateway, "acme"),
                       acme_key_is("ACME_OPENAI_KEY_NEXT"))

    rejected = proxy.stat("listener_manager.lds.update_rejected")
    missing = copy.deepcopy(credentials_policy(keys, acme_openai_env="ACME_OPENAI_KEY_NEXT"))
    missing["tenants"]["globex"]["credentials"]["openai"]["env"] = "GLOBEX_OPENAI_KEY_NEW"
    write_lds(lds_dir, "3", listener_for(proxy, missing))
    wait_for(lambda: proxy.stat("listener_manager.lds.update_rejected") > rejected, timeout=15,
             message="the update naming a missing variable to be refused")
    proxy.wait_for_log("tenant-guard: invalid configuration: tenants.globex.credentials.openai"
                       ".env: environment variable GLOBEX_OPENAI_KEY_NEW is not set in the "
                       "Wasm VM")
    until_every_worker(proxy, lambda: send_h1(gateway, "acme"),
                       acme_key_is("ACME_OPENAI_KEY_NEXT"))
    assert "sk-tgsecret" not in proxy.read_log()
