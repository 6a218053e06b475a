"""A plugin configuration the filter does not fully understand is refused at load time: Envoy
does not come up, and its log names the offending field path."""

import copy
import json
import re

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


# name: (mutation, how the filter's log line begins after "invalid configuration: ": the
# field path, then the problem; serde's trailing "at line L column C" is left out)
BAD_CONFIGS = {
    "unknown_top_level_field": (_unknown_top_level_field, "tennants: unknown field `tennants`"),
    "unknown_plan": (_unknown_plan, 'tenants.acme.plan: unknown plan "gold"'),
    "unknown_provider": (_unknown_provider,
                         'tenants.acme.providers[1]: unknown provider "nope-idp"'),
    "empty_providers": (_empty_providers, "providers: at least one provider is required"),
    "bad_jwk": (_bad_jwk, "providers.corp-idp.jwks.keys[0].n: not valid base64url"),
    "duplicate_kid": (_duplicate_kid,
                      'providers.corp-idp.jwks.keys[5].kid: duplicate kid "rsa-1" (also keys[0])'),
    "unknown_nested_field": (_unknown_nested_field,
                             "identity.tenant_claims: unknown field `tenant_claims`"),
    "bad_status": (_bad_status, "tenants.acme.status: unknown variant `paused`, expected "
                                "`active` or `suspended`"),
}

# What Envoy 1.40 prints before a plugin's log message (logger wasm, level error from
# proxy_log at LogLevel::Error), then the filter's own prefix.
LOG_LINE = re.compile(r"\[error\]\[wasm\] \[[^]]+\] wasm log tenant_guard tenant_guard: "
                      r"tenant-guard: invalid configuration: (?P<message>.*)$")


def assert_refused(proxy, expected):
    """Envoy exits with status 1 without serving, and its log has exactly one line of the
    filter's saying the configuration is invalid, whose message begins with ``expected``
    (the field path and the problem): not just any start-up failure."""
    code = proxy.wait_exit(timeout=30)
    assert code == 1, f"Envoy exited {code} with a bad plugin config\n{proxy.log_tail()}"
    messages = [m.group("message") for m in map(LOG_LINE.search, proxy.read_log().splitlines())
                if m]
    assert len(messages) == 1, f"{messages}\n{proxy.log_tail()}"
    assert messages[0].startswith(expected), f"{messages[0]!r} does not begin {expected!r}"
    assert "Plugin configured to fail closed failed to load" in proxy.read_log()
    return messages[0]


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_envoy_refuses_a_bad_plugin_config(envoy_factory, wasm_path, upstream, jwks_server,
                                           keys, case):
    mutate, expected = BAD_CONFIGS[case]
    cfg = copy.deepcopy(main_plugin_config(keys))
    mutate(cfg)
    proxy = envoy_factory(
        make_config=bs.gateway(upstream.port, jwks_server.port,
                               [bs.wasm_filter(wasm_path, cfg)]),
        start=False, name=case)
    assert_refused(proxy, expected)


@pytest.mark.parametrize("text,expected", [
    # No bytes are also an empty serialized google.protobuf.Struct: an empty document.
    ("", "configuration: missing field `providers`"),
    ("not json", "configuration: neither JSON (expected ident at line 1 column 2) nor a "
                 "serialized google.protobuf.Struct"),
    ("[]", "configuration: invalid length 0, expected struct"),
    (json.dumps({"providers": 1}), "providers: invalid type: integer `1`, expected a map"),
], ids=["empty", "not_json", "array", "wrong_type"])
def test_envoy_refuses_a_plugin_config_that_is_not_a_config_object(envoy_factory, wasm_path,
                                                                   upstream, jwks_server,
                                                                   text, expected):
    proxy = envoy_factory(
        make_config=bs.gateway(upstream.port, jwks_server.port,
                               [bs.wasm_filter(wasm_path, text)]),
        start=False, name="raw")
    assert_refused(proxy, expected)
