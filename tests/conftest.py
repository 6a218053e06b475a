"""Fixtures: one session-wide Envoy running tenant-guard with the main test configuration,
plus factories for Envoys with other configurations. A missing Envoy binary or wasm module is
an error, never a skip."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from harness import bootstrap as bs
from harness.envoy_process import Envoy, envoy_binary
from harness.keys import KeyRing, jwk_set
from harness.plugin_config import main_plugin_config
from harness.servers import JwksServer, RecordingUpstream

REPO = Path(__file__).resolve().parent.parent
DEFAULT_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "tenant_guard.wasm"


def wasm_file() -> Path:
    return Path(os.environ.get("TENANT_GUARD_WASM", DEFAULT_WASM))


def pytest_report_header(config):
    wasm = wasm_file()
    if wasm.exists():
        built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wasm.stat().st_mtime))
        state = f"{wasm.stat().st_size} bytes, built {built}"
    else:
        state = "MISSING (cargo build --release --target wasm32-wasip1)"
    try:
        version = subprocess.run([envoy_binary(), "--version"], capture_output=True,
                                 text=True, timeout=20).stdout.strip().split()[-1]
    except Exception as exc:  # noqa: BLE001 - only a header line
        version = f"unavailable ({exc})"
    return [f"tenant-guard wasm: {wasm} ({state})", f"envoy: {version}"]


@pytest.fixture(scope="session")
def wasm_path() -> Path:
    wasm = wasm_file()
    if not wasm.is_file():
        raise FileNotFoundError(
            f"tenant-guard wasm module not found at {wasm}: build it with "
            "`cargo build --release --target wasm32-wasip1` (or set TENANT_GUARD_WASM)")
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
    proxy = Envoy(tmp_path_factory.mktemp("envoy-main"),
                  bs.gateway(upstream.port, jwks_server.port,
                                    [bs.wasm_filter(wasm_path, plugin_config)]))
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def client(envoy):
    return envoy.client


@pytest.fixture
def envoy_factory(tmp_path, upstream, jwks_server):
    """Start extra Envoys for one test: ``envoy_factory(http_filters=[...])`` or
    ``envoy_factory(make_config=fn)``; ``start=False`` only launches (for configs expected to
    fail). All are stopped at teardown."""
    started = []

    def make(http_filters=None, make_config=None, start=True, name=None, timeout=30.0):
        if make_config is None:
            make_config = bs.gateway(upstream.port, jwks_server.port,
                                            http_filters or [])
        proxy = Envoy(tmp_path / (name or f"envoy-{len(started)}"), make_config)
        started.append(proxy)
        if start:
            proxy.start(timeout=timeout)
        else:
            proxy.launch()
        return proxy

    yield make
    for proxy in started:
        proxy.stop()
