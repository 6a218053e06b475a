"""A plugin configuration the filter does not fully understand is refused at load time: Envoy
does not come up, and its log names the offending field path. `tenant-guard check`, given the
bootstrap Envoy was given, prints the very same line."""

import copy
import re

import pytest

from harness import bootstrap as bs
from harness import cli
from harness.bad_configs import BAD_CONFIGS, RAW_CONFIGS
from harness.plugin_config import main_plugin_config


# What Envoy 1.40 prints before a plugin's log message (logger wasm, level error from
# proxy_log at LogLevel::Error), then the filter's own prefix.
LOG_LINE = re.compile(r"\[error\]\[wasm\] \[[^]]+\] wasm log tenant_guard tenant_guard: "
                      r"tenant-guard: invalid configuration: (?P<message>.*)$")


def assert_refused(proxy, expected, check=True):
    """Envoy exits with status 1 without serving, and its log has exactly one line of the
    filter's saying the configuration is invalid, whose message begins with ``expected``
    (the field path and the problem): not just any start-up failure. ``check=False`` for a
    refusal that depends on values in Envoy's environment, which `tenant-guard check` cannot
    see (it still sees which variables the VM is handed)."""
    code = proxy.wait_exit(timeout=30)
    assert code == 1, f"Envoy exited {code} with a bad plugin config\n{proxy.log_tail()}"
    messages = [m.group("message") for m in map(LOG_LINE.search, proxy.read_log().splitlines())
                if m]
    assert len(messages) == 1, f"{messages}\n{proxy.log_tail()}"
    assert messages[0].startswith(expected), f"{messages[0]!r} does not begin {expected!r}"
    assert "Plugin configured to fail closed failed to load" in proxy.read_log()
    if check:
        assert_check_agrees(proxy, messages[0])
    return messages[0]


def assert_check_agrees(proxy, message):
    """`tenant-guard check` on the bootstrap Envoy refused exits 1 and prints exactly the line
    the filter logged there."""
    result = cli.run("check", proxy.config_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert cli.log_lines(result) == [f"tenant-guard: invalid configuration: {message}"], \
        result.stderr


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


@pytest.mark.parametrize("case", list(RAW_CONFIGS))
def test_envoy_refuses_a_plugin_config_that_is_not_a_config_object(envoy_factory, wasm_path,
                                                                   upstream, jwks_server,
                                                                   case):
    text, expected = RAW_CONFIGS[case]
    proxy = envoy_factory(
        make_config=bs.gateway(upstream.port, jwks_server.port,
                               [bs.wasm_filter(wasm_path, text)]),
        start=False, name="raw")
    assert_refused(proxy, expected)
