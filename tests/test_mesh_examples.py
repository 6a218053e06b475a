"""envoy/istio and envoy/envoy-gateway: every manifest validates against the real CRD schema of
its kind (tests/crds), and each example's plugin configuration loads into the real Envoy in the
exact form Istio and Envoy Gateway hand it over, and decides requests there."""

import copy
import functools
import hashlib
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness import bootstrap as bs
from harness.expect import assert_allowed, assert_denied
from harness.keys import claims, jwk_set, mint
from harness.manifests import (crd_schemas, documents, eg_route_enabling, eg_wasm_filter,
                               istio_wasm_filter, validate)
from harness.ratelimit import ScriptedRateLimitService
from harness.servers import JwksServer
from harness.wait import wait_for

REPO = Path(__file__).resolve().parent.parent
ISTIO = REPO / "envoy" / "istio"
ENVOY_GATEWAY = REPO / "envoy" / "envoy-gateway"
MANIFESTS = sorted(ISTIO.glob("*.yaml")) + sorted(ENVOY_GATEWAY.glob("*.yaml"))


@pytest.fixture(scope="module")
def schemas():
    return crd_schemas()


def doc_of(path: Path, kind: str, name: str = None) -> dict:
    found = [d for d in documents(path) if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (path, kind, name)
    return found[0]


# === The manifests against their CRDs ===

def test_the_crd_schemas_kept_are_the_ones_the_examples_need(schemas):
    assert ("extensions.istio.io", "v1alpha1", "WasmPlugin") in schemas
    assert ("networking.istio.io", "v1", "ServiceEntry") in schemas
    assert ("networking.istio.io", "v1", "DestinationRule") in schemas
    assert ("gateway.envoyproxy.io", "v1alpha1", "EnvoyExtensionPolicy") in schemas
    assert ("gateway.envoyproxy.io", "v1alpha1", "Backend") in schemas
    assert ("gateway.envoyproxy.io", "v1alpha1", "SecurityPolicy") in schemas
    assert ("gateway.networking.k8s.io", "v1", "HTTPRoute") in schemas
    for folder in ("istio", "envoy-gateway"):
        assert (REPO / "tests" / "crds" / folder / "LICENSE").is_file()
    assert "version" in (REPO / "tests" / "crds" / "README.md").read_text()


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_manifest_validates_against_its_crd(path, schemas):
    docs = documents(path)
    assert docs
    for doc in docs:
        assert validate(doc, schemas) == [], f"{doc['kind']} {doc['metadata']['name']}"


def test_validation_catches_what_the_api_server_would_refuse(schemas):
    """So the check above can fail: a wrong enum value (Envoy's name for Istio's), an unknown
    field, a wrong type and a missing required field are all found."""
    plugin = doc_of(ISTIO / "wasmplugin.yaml", "WasmPlugin")
    broken = copy.deepcopy(plugin)
    broken["spec"]["failStrategy"] = "FAIL_CLOSED"
    assert any("FAIL_CLOSED" in e for e in validate(broken, schemas))
    broken = copy.deepcopy(plugin)
    broken["spec"]["pluginconfig"] = {}
    assert validate(broken, schemas) == ["spec.pluginconfig: field not declared by the schema"]
    policy = doc_of(ENVOY_GATEWAY / "extension-policy.yaml", "EnvoyExtensionPolicy")
    broken = copy.deepcopy(policy)
    broken["spec"]["wasm"][0]["failOpen"] = "no"
    assert any("failOpen" in e for e in validate(broken, schemas))
    broken = copy.deepcopy(policy)
    del broken["spec"]["wasm"][0]["code"]["type"]
    assert any("'type' is a required property" in e for e in validate(broken, schemas))
    # The plugin configuration itself is free-form for both (x-kubernetes-preserve-unknown-
    # fields): the filter checks it, as the tests below show.
    broken = copy.deepcopy(policy)
    broken["spec"]["wasm"][0]["config"]["colour"] = "blue"
    assert validate(broken, schemas) == []


# === Istio: the WasmPlugin's pluginConfig in the real Envoy ===

@pytest.fixture
def rls():
    with ScriptedRateLimitService() as service:
        yield service


def test_istio_plugin_config_loads_and_decides(envoy_factory, wasm_path, upstream, keys, rls):
    plugin = doc_of(ISTIO / "wasmplugin.yaml", "WasmPlugin")
    config = plugin["spec"]["pluginConfig"]
    provider = config["providers"]["corp-idp"]
    jwks_cluster = provider["remote_jwks"]["cluster"]
    rls_cluster = config["global_rate_limit"]["cluster"]
    # The clusters are the ones Istio makes of the ServiceEntries.
    entries = documents(ISTIO / "clusters.yaml")
    made = {f"outbound|{p['number']}||{h}" for e in entries if e["kind"] == "ServiceEntry"
            for h in e["spec"]["hosts"] for p in e["spec"]["ports"]}
    assert {jwks_cluster, rls_cluster} <= made

    with JwksServer(jwk_set(keys.remote_rsa), path=provider["remote_jwks"]["path"]) as idp:
        proxy = envoy_factory(make_config=bs.with_clusters(
            bs.gateway(upstream.port, idp.port, [istio_wasm_filter(plugin, wasm_path)],
                       clusters={jwks_cluster: idp.port}),
            bs.grpc_cluster(rls_cluster, rls.port)), name="istio")
        token = mint(keys.remote_rsa, claims("acme", iss=provider["issuer"],
                                             aud=provider["audiences"][0]))
        # Keys come from the IdP through its cluster about a second after the load.
        resp = wait_for(lambda: (lambda r: r if r.status == 200 else None)(
            proxy.client.chat(token=token)), timeout=15,
            message="a token of the remote IdP to be accepted")
        seen = assert_allowed(resp, upstream)
        assert seen.path == "/tenants/acme/v1/chat/completions"
        assert seen.header("x-tenant-id") == "acme"
        assert idp.fetches >= 1
        call = rls.wait_calls(1)[0]
        assert call.request.domain == config["global_rate_limit"]["domain"]
        assert_denied(proxy.client.chat(), 401, "missing_token", upstream)
        assert_denied(proxy.client.chat(token=mint(keys.remote_rsa, claims(
            "hooli", iss=provider["issuer"]))), 403, "unknown_tenant", upstream)
        # The form Istio sends: JSON text in a StringValue, no vm_id.
        wasm = proxy.config_path.read_text()
        assert "google.protobuf.StringValue" in wasm and "vm_id" not in wasm


def test_istio_refuses_a_bad_plugin_config_with_its_path(envoy_factory, wasm_path, upstream,
                                                         jwks_server):
    plugin = copy.deepcopy(doc_of(ISTIO / "wasmplugin.yaml", "WasmPlugin"))
    plugin["spec"]["pluginConfig"]["tenants"]["acme"]["plan"] = "gold"
    proxy = envoy_factory(make_config=bs.gateway(
        upstream.port, jwks_server.port, [istio_wasm_filter(plugin, wasm_path)]),
        name="istio-bad", start=False)
    assert proxy.wait_exit() != 0
    assert 'tenants.acme.plan: unknown plan "gold"' in proxy.read_log()


# === Envoy Gateway: the EnvoyExtensionPolicy's config in the real Envoy ===

class ModuleServer:
    """Envoy Gateway's wasm HTTP server, as far as Envoy sees it: serves one file."""

    def __init__(self, path: Path):
        directory = str(path.parent)
        handler = functools.partial(_QuietHandler, directory=directory)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.uri = f"http://127.0.0.1:{self.port}/{path.name}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def mint_demo(tenant: str) -> str:
    out = subprocess.run([sys.executable, str(REPO / "tools" / "mint_token.py"),
                          "--tenant", tenant], capture_output=True, text=True, timeout=30,
                         check=True)
    return out.stdout.strip()


def test_envoy_gateway_config_loads_and_decides(envoy_factory, wasm_path, upstream, rls,
                                                tmp_path):
    policy = doc_of(ENVOY_GATEWAY / "extension-policy.yaml", "EnvoyExtensionPolicy")
    config = policy["spec"]["wasm"][0]["config"]
    rls_cluster = config["global_rate_limit"]["cluster"]
    route = doc_of(ENVOY_GATEWAY / "ratelimit.yaml", "HTTPRoute")
    meta = route["metadata"]
    assert rls_cluster == f"httproute/{meta['namespace']}/{meta['name']}/rule/0"
    backend = doc_of(ENVOY_GATEWAY / "ratelimit.yaml", "Backend")
    assert "gateway.envoyproxy.io/h2c" in backend["spec"]["appProtocols"]

    # The module as Envoy Gateway serves it, pinned by the SHA-256 `make oci` prints.
    printed = subprocess.run([sys.executable, str(REPO / "tools" / "oci_image.py"), "--wasm",
                              str(wasm_path), "--out", str(tmp_path / "oci"), "--json"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    sha256 = hashlib.sha256(wasm_path.read_bytes()).hexdigest()
    assert sha256 in printed
    module = ModuleServer(wasm_path)
    try:
        wasm = eg_wasm_filter(policy, 0, module.uri, sha256, "wasm_cluster")
        routes = [
            # A route the policy does not target: the filter stays disabled there.
            dict(bs.route("/untargeted/", "upstream")),
            dict(bs.route("/", "upstream"), typed_per_filter_config=eg_route_enabling(policy, 0)),
        ]
        proxy = envoy_factory(make_config=bs.with_clusters(
            bs.gateway(upstream.port, upstream.port, [wasm], routes=routes,
                       clusters={"wasm_cluster": module.port}),
            bs.grpc_cluster(rls_cluster, rls.port)), name="envoy-gateway")
        acme = mint_demo("acme")
        seen = assert_allowed(proxy.client.chat(token=acme), upstream)
        assert seen.header("x-tenant-id") == "acme"
        assert seen.header("authorization") is None  # strip_token
        assert rls.wait_calls(1)[0].request.domain == "tenant-guard"
        assert_denied(proxy.client.chat(), 401, "missing_token", upstream)
        assert_denied(proxy.client.chat(token=mint_demo("initech")), 403, "tenant_suspended",
                      upstream)
        # Where Envoy Gateway leaves the filter disabled, it does nothing.
        assert proxy.client.get("/untargeted/v1/models").status == 200
    finally:
        module.close()


def test_envoy_gateway_module_with_another_sha256_is_refused(envoy_factory, wasm_path,
                                                             upstream, tmp_path):
    """The pin holds: Envoy refuses a module whose SHA-256 is not the one configured, and the
    route fails closed."""
    policy = doc_of(ENVOY_GATEWAY / "extension-policy.yaml", "EnvoyExtensionPolicy")
    module = ModuleServer(wasm_path)
    try:
        wasm = eg_wasm_filter(policy, 0, module.uri, "0" * 64, "wasm_cluster")
        proxy = envoy_factory(make_config=bs.gateway(
            upstream.port, upstream.port, [wasm],
            routes=[dict(bs.route("/", "upstream"),
                         typed_per_filter_config=eg_route_enabling(policy, 0))],
            clusters={"wasm_cluster": module.port}), name="eg-bad-sha", timeout=60)
        assert "Plugin tenant-guard failed to load" in proxy.read_log()
        # Fail closed: nothing passes the route unchecked.
        resp = proxy.client.get("/v1/models")
        assert resp.status >= 500, resp
        assert not upstream.find(resp.request_id)
    finally:
        module.close()
