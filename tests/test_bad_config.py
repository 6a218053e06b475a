"""A plugin configuration the filter does not fully understand is refused at load time: Envoy
does not come up, and its log names the offending field path."""

import copy
import json

import pytest

from harness import bootstrap as bs
from harness.keys import ec_key
from harness.plugin_config import main_plugin_config


def _unknown_top_level_field(cfg):
    cfg["tennants"] = {}


def _unknown_plan(cfg):
    cfg["tenants"]["acme"]["plan"] = "gold"


def _unknown_provider(cfg):
    cfg["tenants"]["acme"]["providers"] = ["corp-idp", "nope-idp"]


def _empty_providers(cfg):
    cfg["providers"] = {}
    cfg["tenants"] = {}
    cfg.pop("default_tenant")


def _bad_jwk(cfg):
    cfg["providers"]["corp-idp"]["jwks"]["keys"][0]["n"] = "!!! not base64url !!!"


def _duplicate_kid(cfg):
    keys = cfg["providers"]["corp-idp"]["jwks"]["keys"]
    keys.append(dict(ec_key("rsa-1", "P-256").jwk))


def _unknown_nested_field(cfg):
    cfg["identity"]["tenant_claims"] = "tenant_id"


def _bad_status(cfg):
    cfg["tenants"]["acme"]["status"] = "paused"


# name: (mutation, text the log must contain)
BAD_CONFIGS = {
    "unknown_top_level_field": (_unknown_top_level_field, "tennants"),
    "unknown_plan": (_unknown_plan, "tenants.acme.plan"),
    "unknown_provider": (_unknown_provider, "tenants.acme.providers"),
    "empty_providers": (_empty_providers, "providers"),
    "bad_jwk": (_bad_jwk, "providers.corp-idp.jwks.keys[0]"),
    "duplicate_kid": (_duplicate_kid, "providers.corp-idp.jwks"),
    "unknown_nested_field": (_unknown_nested_field, "tenant_claims"),
    "bad_status": (_bad_status, "tenants.acme.status"),
}


def _wasm_log_lines(log: str):
    return [line for line in log.splitlines() if "wasm" in line]


def assert_refused(proxy, needle):
    """Envoy exits non-zero (or never becomes ready) and a wasm log line contains
    ``needle``."""
    code = proxy.wait_exit(timeout=30)
    log = proxy.read_log()
    assert code != 0, f"Envoy exited 0 with a bad plugin config\n{proxy.log_tail()}"
    matching = [line for line in _wasm_log_lines(log) if needle in line]
    assert matching, f"no wasm log line names {needle!r}\n{proxy.log_tail()}"
    return matching


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_envoy_refuses_a_bad_plugin_config(envoy_factory, wasm_path, upstream, jwks_server,
                                           keys, case):
    mutate, needle = BAD_CONFIGS[case]
    cfg = copy.deepcopy(main_plugin_config(keys))
    mutate(cfg)
    proxy = envoy_factory(
        make_config=bs.gateway(upstream.port, jwks_server.port,
                               [bs.wasm_filter(wasm_path, cfg)]),
        start=False, name=case)
    assert_refused(proxy, needle)


@pytest.mark.parametrize("text", ["", "not json", "[]", json.dumps({"providers": 1})],
                         ids=["empty", "not_json", "array", "wrong_type"])
def test_envoy_refuses_a_plugin_config_that_is_not_a_config_object(envoy_factory, wasm_path,
                                                                   upstream, jwks_server,
                                                                   text):
    proxy = envoy_factory(
        make_config=bs.gateway(upstream.port, jwks_server.port,
                               [bs.wasm_filter(wasm_path, text)]),
        start=False, name="raw")
    code = proxy.wait_exit(timeout=30)
    assert code != 0, proxy.log_tail()
