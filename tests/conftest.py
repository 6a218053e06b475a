"""Fixtures: one session-wide Envoy running tenant-guard with the main test configuration,
plus factories for Envoys with other configurations. A missing Envoy binary or wasm module is
an error, never a skip."""

import contextlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from harness import bootstrap as bs
from harness.envoy_process import Envoy, envoy_binary
from harness.keys import GLOBEX_ISSUER, KeyRing, claims, jwk_set, mint
from harness.plugin_config import gateway_config, main_plugin_config, tenant
from harness.servers import JwksServer, RecordingUpstream

REPO = Path(__file__).resolve().parent.parent
# What `make wasm` ships: cargo's module after wasm-opt.
DEFAULT_WASM = REPO / "target" / "tenant_guard.wasm"


def wasm_file() -> Path:
    return Path(os.environ.get("TENANT_GUARD_WASM", DEFAULT_WASM))


def envoy_version() -> str:
    """The version of the Envoy binary the tests run (``1.36.2``), from ``envoy --version``
    (``envoy  version: <sha>/1.36.2/Clean/RELEASE/BoringSSL``)."""
    out = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True,
                         timeout=20).stdout.strip().split()[-1]
    parts = out.split("/")
    return parts[1] if len(parts) > 1 else out


def pytest_configure(config):
    """``TENANT_GUARD_ENVOY_VERSION`` (make sets it from ENVOY_VERSION): the run stops at once
    when the Envoy found is another version."""
    wanted = os.environ.get("TENANT_GUARD_ENVOY_VERSION")
    if wanted:
        found = envoy_version()
        if found != wanted:
            raise pytest.UsageError(f"expected Envoy {wanted}, but {envoy_binary()} is "
                                    f"Envoy {found}")


def pytest_report_header(config):
    wasm = wasm_file()
    if wasm.exists():
        built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wasm.stat().st_mtime))
        state = f"{wasm.stat().st_size} bytes, built {built}"
    else:
        state = "MISSING (make wasm)"
    try:
        version = envoy_version()
    except Exception as exc:  # noqa: BLE001 - only a header line
        version = f"unavailable ({exc})"
    return [f"tenant-guard wasm: {wasm} ({state})", f"envoy: {version} ({envoy_binary()})"]


def pytest_terminal_summary(terminalreporter):
    try:
        version = envoy_version()
    except Exception as exc:  # noqa: BLE001 - only a summary line
        version = f"unavailable ({exc})"
    terminalreporter.write_line(f"tenant-guard integration tests ran against Envoy {version}")


@pytest.fixture(scope="session")
def wasm_path() -> Path:
    wasm = wasm_file()
    if not wasm.is_file():
        raise FileNotFoundError(
            f"tenant-guard wasm module not found at {wasm}: build it with "
            "`make wasm` (or set TENANT_GUARD_WASM)")
    return wasm


@pytest.fixture(scope="session")
def keys() -> KeyRing:
    return KeyRing()


@pytest.fixture(scope="session")
def upstream():
    with RecordingUpstream() as server:
        yield server


@pytest.fixture(scope="session")
def jwks_server(keys):
    with JwksServer(jwk_set(keys.remote_rsa)) as server:
        yield server


@pytest.fixture(scope="session")
def plugin_config(keys) -> dict:
    return main_plugin_config(keys)


@pytest.fixture(scope="session")
def envoy(tmp_path_factory, wasm_path, upstream, jwks_server, plugin_config):
    """The shared Envoy running tenant-guard with the main test configuration."""
    with Envoy(tmp_path_factory.mktemp("envoy-main"),
               bs.gateway(upstream.port, jwks_server.port,
                          [bs.wasm_filter(wasm_path, plugin_config)])) as proxy:
        yield proxy


@pytest.fixture
def client(envoy):
    return envoy.client


@pytest.fixture
def envoy_factory(tmp_path, upstream, jwks_server):
    """Start extra Envoys for one test: ``envoy_factory(http_filters=[...])`` or
    ``envoy_factory(make_config=fn)``; ``start=False`` only launches (for configs expected to
    fail); ``concurrency``: worker threads; ``config_format``: ``json`` or ``yaml`` bootstrap;
    ``env``: variables added to Envoy's environment. All are stopped at teardown."""
    started = []

    def make(http_filters=None, make_config=None, start=True, name=None, timeout=30.0,
             concurrency=2, config_format="json", env=None):
        if make_config is None:
            make_config = bs.gateway(upstream.port, jwks_server.port,
                                            http_filters or [])
        proxy = Envoy(tmp_path / (name or f"envoy-{len(started)}"), make_config,
                      concurrency=concurrency, config_format=config_format, env=env)
        started.append(proxy)
        if start:
            proxy.start(timeout=timeout)
        else:
            proxy.launch()
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture
def gateway_factory(envoy_factory, wasm_path, upstream, jwks_server):
    """Start an Envoy running tenant-guard with ``config`` (a plugin configuration dict):
    ``gateway_factory(config, concurrency=4, stats_tags=..., routes=..., clusters=...)``.
    Requests go to the session's recording upstream unless ``routes`` say otherwise.
    ``hold_headers=False``: without ``allow_on_headers_stop_iteration`` (older Envoys).
    ``env``: variables set in Envoy's environment and handed to the Wasm VM (``host_env_keys``);
    ``env_keys``: the names handed over [those of ``env``]; ``start=False`` only launches."""
    def make(config, *, name=None, concurrency=2, routes=None, clusters=None,
             stats_tags=None, upstream_port=None, hold_headers=True, hcm_options=None,
             env=None, env_keys=None, start=True):
        keys = list(env or {}) if env_keys is None else env_keys
        return envoy_factory(
            make_config=bs.gateway(upstream_port or upstream.port, jwks_server.port,
                                   [bs.wasm_filter(wasm_path, config, hold_headers=hold_headers,
                                                   env_keys=keys)],
                                   routes=routes, clusters=clusters, stats_tags=stats_tags,
                                   hcm_options=hcm_options),
            name=name, concurrency=concurrency, env=env, start=start)
    return make


# === The namespace and vector-store gateway ===

NAMESPACE_ROUTING = {"path_prefix": "/tenants/{namespace}",
                     "authority": "{namespace}.models.internal",
                     "namespace_header": "x-tenant-namespace"}

VECTOR_STORES = [
    {"path_prefix": "/qdrant", "kind": "qdrant"},
    {"path_prefix": "/pinecone", "kind": "pinecone", "max_body_bytes": 4096},
    {"path_prefix": "/search", "kind": "metadata_filter", "dialect": "qdrant",
     "collections": ["shared"]},
    {"path_prefix": "/pcsearch", "kind": "metadata_filter", "dialect": "pinecone",
     "field": "tenant", "value": "{namespace}", "namespaces": [""]},
    {"path_prefix": "/weaviate", "kind": "weaviate", "tenant": "{namespace}",
     "collections": ["Docs", "Authors"], "allow": ["own_tenant"]},
    {"path_prefix": "/chroma", "kind": "chroma", "tenant": "{namespace}",
     "database": "default_database", "allow": ["create_database"]},
]


class NamespaceGateway:
    """An Envoy routing ``/tenants/acme-ns/`` to upstream ``a``, ``/tenants/globex/`` to
    ``b``, the vector-store prefixes to ``vec`` and everything else to ``c``; tenant acme has
    namespace ``acme-ns``, globex the default (its id)."""

    def __init__(self, proxy, upstreams, keys):
        self.proxy = proxy
        self.client = proxy.client
        self.a, self.b, self.c, self.vec = upstreams
        self._keys = keys

    # A token minted when read: the gateway serves the whole session, which on a busy machine
    # lasts longer than a token's ten minutes.
    @property
    def acme(self) -> str:
        from harness.keys import claims, mint

        return mint(self._keys.corp_rsa, claims("acme"))

    @property
    def globex(self) -> str:
        from harness.keys import GLOBEX_ISSUER, claims, mint

        return mint(self._keys.globex_rsa, claims("globex", iss=GLOBEX_ISSUER))

    @property
    def upstreams(self):
        return [self.a, self.b, self.c, self.vec]

    def reached(self, request_id) -> list:
        """Names of the upstreams that received the whole request, or its headers."""
        return [name for name, up in zip("abcv", self.upstreams)
                if up.find(request_id) or up.started(request_id)]


@contextlib.contextmanager
def _namespace_gateway(workdir, wasm_path, jwks_server, keys, hold_headers=True):
    config = gateway_config(keys, {
        "acme": tenant(namespace="acme-ns"),
        "globex": tenant(providers=["globex-idp"]),
    }, routing=NAMESPACE_ROUTING, vector_stores=VECTOR_STORES)
    upstreams = [RecordingUpstream() for _ in range(4)]
    routes = [bs.route(prefix, "vec") for prefix in
              ("/qdrant/", "/pinecone/", "/search/", "/pcsearch/", "/weaviate/", "/chroma/")]
    routes += [bs.route("/tenants/acme-ns/", "ns_a"), bs.route("/tenants/globex/", "ns_b"),
               bs.route("/", "ns_c")]
    clusters = {"ns_a": upstreams[0].port, "ns_b": upstreams[1].port,
                "ns_c": upstreams[2].port, "vec": upstreams[3].port}
    try:
        with Envoy(workdir, bs.gateway(upstreams[2].port, jwks_server.port,
                                       [bs.wasm_filter(wasm_path, config,
                                                       hold_headers=hold_headers)],
                                       routes=routes, clusters=clusters)) as proxy:
            gateway = NamespaceGateway(proxy, upstreams, keys)
            proxy.learn_header_mode(gateway.acme, "held" if hold_headers else "forwarded")
            yield gateway
    finally:
        for up in upstreams:
            up.close()


@pytest.fixture(scope="session")
def namespace_gateway(tmp_path_factory, wasm_path, jwks_server, keys):
    """Runs with Envoy holding request headers while the filter reads the body."""
    with _namespace_gateway(tmp_path_factory.mktemp("envoy-namespaces"), wasm_path,
                            jwks_server, keys) as gateway:
        yield gateway


@pytest.fixture(scope="session")
def namespace_gateway_forwarded(tmp_path_factory, wasm_path, jwks_server, keys):
    """The same without allow_on_headers_stop_iteration: headers go on before the body."""
    with _namespace_gateway(tmp_path_factory.mktemp("envoy-namespaces-fwd"), wasm_path,
                            jwks_server, keys, hold_headers=False) as gateway:
        yield gateway
