"""A bad configuration pushed to a running Envoy (LDS from a watched file) is refused and the
old policy keeps serving; a good one is taken without a restart."""

import copy
import json
import os

import pytest

from harness import bootstrap as bs
from harness.expect import assert_allowed, assert_denied
from harness.keys import claims, mint
from harness.plugin_config import main_plugin_config
from harness.wait import wait_for


def write_lds(directory, version, listener_doc):
    """Replace lds.json atomically (write a temporary file, rename over) so the directory
    watch sees one complete document."""
    tmp = directory / f".lds.json.{version}.tmp"
    tmp.write_text(json.dumps(bs.lds_response(version, listener_doc)))
    os.rename(tmp, directory / "lds.json")


@pytest.fixture
def lds_envoy(envoy_factory, tmp_path, wasm_path, upstream, jwks_server, keys):
    lds_dir = tmp_path / "lds"
    lds_dir.mkdir()
    state = {}

    def listener_for(envoy, cfg):
        return bs.listener(envoy.listener_port, envoy.access_log_path,
                           [bs.wasm_filter(wasm_path, cfg)])

    def make(envoy):
        write_lds(lds_dir, "1", listener_for(envoy, main_plugin_config(keys)))
        return bs.bootstrap(admin_port=envoy.admin_port, upstream_port=upstream.port,
                            jwks_port=jwks_server.port, lds_dir=str(lds_dir))

    proxy = envoy_factory(make_config=make, name="lds")

    def push(version, cfg):
        write_lds(lds_dir, version, listener_for(proxy, cfg))

    state.update(proxy=proxy, push=push)
    return state


def _wait_stat_above(proxy, name, value, timeout=15):
    return wait_for(lambda: proxy.stat(name) > value, timeout=timeout,
                    message=lambda: f"{name} > {value} (is {proxy.stat(name)})\n"
                                    f"{proxy.log_tail(20)}")


def test_bad_config_update_is_refused_and_a_good_one_is_taken(lds_envoy, upstream, keys):
    proxy, push = lds_envoy["proxy"], lds_envoy["push"]
    client = proxy.client
    token = mint(keys.corp_rsa, claims("acme"))
    assert_allowed(client.chat(token=token), upstream)
    assert_denied(client.get("/status"), 401, "missing_token", upstream)

    rejected = proxy.stat("listener_manager.lds.update_rejected")
    success = proxy.stat("listener_manager.lds.update_success")

    bad = copy.deepcopy(main_plugin_config(keys))
    bad["tenants"]["acme"]["plan"] = "gold"
    push("2", bad)
    _wait_stat_above(proxy, "listener_manager.lds.update_rejected", rejected)
    assert proxy.stat("listener_manager.lds.update_success") == success
    proxy.wait_for_log('tenant-guard: invalid configuration: tenants.acme.plan: unknown plan '
                       '"gold"')
    for _ in range(6):  # old policy still in force on new connections
        assert_allowed(client.chat(token=token), upstream)
        assert_denied(client.chat(), 401, "missing_token", upstream)

    good = copy.deepcopy(main_plugin_config(keys))
    good["bypass_paths"] = ["/healthz", "/status"]
    push("3", good)
    _wait_stat_above(proxy, "listener_manager.lds.update_success", success)
    wait_for(lambda: all(client.get("/status").status == 200 for _ in range(6)), timeout=15,
             message="the new bypass path to be served without a token")
    assert_allowed(client.chat(token=token), upstream)
    assert_denied(client.chat(), 401, "missing_token", upstream)
