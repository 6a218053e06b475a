"""envoy/dynamic: the gateway whose listener (and policy) comes from a watched file. Run as it is
shipped (on free ports, with this checkout's module and a recording upstream): Envoy accepts it;
a policy change is a file write that takes effect without a restart; tenants' counters survive
it; a bad policy is refused while the running one keeps serving."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.envoy_process import Envoy
from harness.expect import assert_allowed, assert_denied
from harness.limits import LONG, remaining
from harness.wait import wait_for

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "envoy" / "dynamic"


def mint_demo(tenant: str) -> str:
    out = subprocess.run([sys.executable, str(REPO / "tools" / "mint_token.py"),
                          "--tenant", tenant], capture_output=True, text=True, timeout=30,
                         check=True)
    return out.stdout.strip()


def wasm_filter(listener: dict) -> dict:
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    [wasm] = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.wasm"]
    return wasm["typed_config"]["config"]


class DynamicGateway:
    """The example's two files, copied to ``workdir`` with this run's ports and paths."""

    def __init__(self, workdir: Path, wasm_path: Path, upstream_port: int):
        self.dir = workdir / "dynamic"
        self.dir.mkdir(parents=True)
        self.wasm_path = wasm_path
        self.upstream_port = upstream_port
        self.listeners = yaml.safe_load((EXAMPLE / "listeners.yaml").read_text())
        self.version = int(self.listeners["version_info"])
        self.proxy = None

    @property
    def policy(self) -> dict:
        """The policy as the shipped file writes it (edit a copy, then ``write``)."""
        return wasm_filter(self.listeners["resources"][0])["configuration"]["value"]

    def bootstrap(self, envoy) -> dict:
        doc = yaml.safe_load((EXAMPLE / "bootstrap.yaml").read_text())
        doc["admin"]["address"]["socket_address"]["port_value"] = envoy.admin_port
        [cluster] = doc["static_resources"]["clusters"]
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        endpoint["address"]["socket_address"]["port_value"] = self.upstream_port
        source = doc["dynamic_resources"]["lds_config"]["path_config_source"]
        assert source["path"] == "envoy/dynamic/listeners.yaml"
        assert source["watched_directory"]["path"] == "envoy/dynamic"
        source["path"] = str(self.dir / "listeners.yaml")
        source["watched_directory"]["path"] = str(self.dir)
        listener = self.listeners["resources"][0]
        listener["address"]["socket_address"]["port_value"] = envoy.listener_port
        code = wasm_filter(listener)["vm_config"]["code"]["local"]
        assert code["filename"] == "target/tenant_guard.wasm"
        code["filename"] = str(self.wasm_path)
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        [audit] = [log for log in hcm["access_log"]
                   if log["typed_config"].get("path") == ".run/audit.log"]
        audit["typed_config"]["path"] = str(envoy.audit_log_path)
        self.write(self.policy, bump=False)
        return doc

    def write(self, policy: dict, bump=True):
        """Replace the listener file as an operator would: write beside it, rename over it."""
        if bump:
            self.version += 1
        doc = copy.deepcopy(self.listeners)
        doc["version_info"] = str(self.version)
        wasm_filter(doc["resources"][0])["configuration"]["value"] = policy
        tmp = self.dir / f".next-{self.version}.yaml"
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
        os.rename(tmp, self.dir / "listeners.yaml")


def serve(example: DynamicGateway, workdir: Path):
    """The example's Envoy, started on leased ports; stopped when the generator ends."""
    with Envoy(workdir, example.bootstrap, config_format="yaml") as proxy:
        example.proxy = proxy
        yield example


@pytest.fixture
def gateway(tmp_path, wasm_path, upstream):
    yield from serve(DynamicGateway(tmp_path, wasm_path, upstream.port), tmp_path / "envoy")


@pytest.fixture
def long_window_gateway(tmp_path, wasm_path, upstream):
    """The example with its free plan's 5 requests a minute made 5 requests per ten years: a
    policy update on a busy machine may take longer than what is left of a minute, and the
    test is about counters surviving the update, not about the window."""
    example = DynamicGateway(tmp_path, wasm_path, upstream.port)
    plan = example.policy["plans"]["free"]
    assert plan["requests"] == [{"limit": 5, "window_s": 60}]
    plan["requests"] = [{"limit": 5, "window_s": LONG}]
    yield from serve(example, tmp_path / "envoy")


def stat(proxy, name):
    return proxy.stat(f"listener_manager.lds.{name}")


def wait_update(proxy, name, before):
    wait_for(lambda: stat(proxy, name) > before, timeout=20,
             message=lambda: f"lds.{name} > {before}\n{proxy.log_tail(20)}")


def test_the_example_serves_its_policy(gateway, upstream):
    client = gateway.proxy.client
    seen = assert_allowed(client.chat(token=mint_demo("acme")), upstream)
    assert seen.header("x-tenant-id") == "acme"
    assert seen.header("x-tenant-namespace") == "acme"
    assert_denied(client.chat(), 401, "missing_token", upstream)
    assert_denied(client.chat(token=mint_demo("initech")), 403, "tenant_suspended", upstream)
    # The decimals of the YAML policy (budgets, prices) arrived as strings and still load.
    assert "monthly_budget_usd: 1.0" in (gateway.dir / "listeners.yaml").read_text()


def test_a_policy_change_is_a_file_write_and_counters_survive_it(long_window_gateway,
                                                               upstream):
    gateway = long_window_gateway
    proxy, client = gateway.proxy, gateway.proxy.client
    policy = copy.deepcopy(gateway.policy)
    # Free plan: 5 requests (per ten years). Three of them before the update...
    assert policy["plans"]["free"]["requests"] == [{"limit": 5, "window_s": LONG}]
    globex = mint_demo("globex")
    lefts = [remaining(client.chat(token=globex), "requests") for _ in range(3)]
    assert lefts == [4, 3, 2]
    assert client.get("/status").status == 401

    # ...then a new policy: /status bypasses identity, initech is active again.
    policy["bypass_paths"].append("/status")
    policy["tenants"]["initech"]["status"] = "active"
    before = stat(proxy, "update_success")
    gateway.write(policy)
    wait_update(proxy, "update_success", before)
    wait_for(lambda: client.get("/status").status == 200, timeout=15,
             message="the new policy to serve /status without a token")
    assert_allowed(client.chat(token=mint_demo("initech")), upstream)

    # The tenants' counters lived on in shared data: globex has 1 request left, then none.
    assert remaining(client.chat(token=globex), "requests") == 1
    assert remaining(client.chat(token=globex), "requests") == 0
    assert_denied(client.chat(token=globex), 429, "request_quota_exceeded", upstream)


def test_a_bad_policy_is_refused_and_the_old_one_keeps_serving(gateway, upstream):
    proxy, client = gateway.proxy, gateway.proxy.client
    acme = mint_demo("acme")
    assert_allowed(client.chat(token=acme), upstream)
    bad = copy.deepcopy(gateway.policy)
    bad["tenants"]["acme"]["plan"] = "gold"
    bad["bypass_paths"].append("/status")
    rejected, success = stat(proxy, "update_rejected"), stat(proxy, "update_success")
    gateway.write(bad)
    wait_update(proxy, "update_rejected", rejected)
    proxy.wait_for_log('tenants.acme.plan: unknown plan "gold"')
    assert stat(proxy, "update_success") == success
    for _ in range(4):  # on new connections, still the old policy
        assert_allowed(client.chat(token=acme), upstream)
        assert client.get("/status").status == 401
    # A good policy after the bad one is taken.
    good = copy.deepcopy(gateway.policy)
    good["bypass_paths"].append("/status")
    gateway.write(good)
    wait_update(proxy, "update_success", success)
    wait_for(lambda: client.get("/status").status == 200, timeout=15,
             message="the good policy to be served")
