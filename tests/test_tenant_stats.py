"""Per-tenant Envoy counters: requests allowed and denied (by reason), tokens and cost, with a
bounded number of tenant series, and as labelled Prometheus metrics through the bootstrap's
``stats_config.stats_tags`` (harness.bootstrap.TENANT_STATS_TAGS)."""

import re

import pytest

from harness import bootstrap as bs
from harness.answers import answer
from harness.keys import GLOBEX_ISSUER, claims, mint
from harness.limits import LONG
from harness.plugin_config import gateway_config, tenant, windows
from harness.wait import wait_for

PREFIX = "wasmcustom.tenant_guard.tenant."
PRICING = {"models": {"gpt-4o": {"input_per_million": 2.5, "output_per_million": 10.0}}}


@pytest.fixture
def stats_gateway(gateway_factory, keys):
    """acme (2 requests in a window far longer than the test) has series of its own; globex (configured, but beyond
    stats.max_tenant_series = 1 in sorted order) and hooli (a default-tenant admission) count
    as _other; requests without a verified tenant as _none."""
    config = gateway_config(
        keys,
        # Listed out of order: the series go to the first tenants by sorted id.
        {"globex": tenant(providers=["globex-idp"]),
         "initech": tenant(status="suspended"),
         "acme": tenant(limits={"requests": windows((2, LONG))})},
        default_tenant={"providers": ["corp-idp"]},
        pricing=PRICING, stats={"max_tenant_series": 1})
    return gateway_factory(config, name="stats", stats_tags=bs.TENANT_STATS_TAGS)


def _traffic(proxy, keys):
    acme = mint(keys.corp_rsa, claims("acme"))
    globex = mint(keys.globex_rsa, claims("globex", iss=GLOBEX_ISSUER))
    hooli = mint(keys.corp_rsa, claims("hooli"))
    statuses = []
    for _ in range(3):  # 2 allowed, 1 request_quota_exceeded
        statuses.append(proxy.client.chat(token=acme, headers=answer(
            "openai-json", in_=100, out=10)).status)
    statuses.append(proxy.client.chat(token=globex, headers=answer(
        "openai-json", in_=1000, out=1)).status)
    statuses.append(proxy.client.chat(token=hooli, headers=answer(
        "openai-json", in_=3, out=3)).status)
    statuses.append(proxy.client.chat(token=mint(keys.corp_rsa, claims("initech"))).status)
    statuses.append(proxy.client.chat().status)  # missing token
    statuses.append(proxy.client.chat(token="not.a.token").status)
    assert statuses == [200, 200, 429, 200, 200, 403, 401, 401], statuses


# Costs are counted per request in whole micro-USD, rounded up: acme 2 × (100 × 2.5 + 10 × 10)
# = 700; _other: globex 1000 × 2.5 + 1 × 10 = 2510, hooli 3 × 2.5 + 3 × 10 = 37.5 → 38.
EXPECTED = {
    "acme.requests_allowed": 2,
    "acme.requests_denied.reason.request_quota_exceeded": 1,
    "acme.input_tokens": 200,
    "acme.output_tokens": 20,
    "acme.cost_micro_usd": 700,
    "_other.requests_allowed": 2,
    "_other.input_tokens": 1003,
    "_other.output_tokens": 4,
    "_other.cost_micro_usd": 2548,
    "_other.requests_denied.reason.tenant_suspended": 1,
    "_none.requests_denied.reason.missing_token": 1,
    "_none.requests_denied.reason.invalid_token": 1,
}


def test_tenant_counters_in_admin_stats(stats_gateway, keys):
    _traffic(stats_gateway, keys)
    want = {PREFIX + k: v for k, v in EXPECTED.items()}

    def current():
        return stats_gateway.stats(r"^wasmcustom\.tenant_guard\.tenant\.")
    stats = wait_for(lambda: (lambda s: s if all(s.get(k) == v for k, v in want.items())
                              else None)(current()), timeout=10,
                     message=lambda: f"counters {want}\nhave {current()}")
    # Nothing for globex, hooli or initech by name: they share _other.
    names = {name[len(PREFIX):].split(".")[0] for name in stats}
    assert names == {"acme", "_other", "_none"}, names


def _prometheus(proxy) -> str:
    status, body = proxy.admin_get("/stats/prometheus")
    assert status == 200
    return body


def _sample(text, metric, **labels):
    """The value of the one sample of ``metric`` with exactly these labels, or None."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != metric:
            continue
        found = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return None


def test_prometheus_metrics_carry_tenant_and_reason_labels(stats_gateway, keys):
    _traffic(stats_gateway, keys)
    denied = "tenant_guard_tenant_requests_denied"
    text = wait_for(lambda: (lambda t: t if _sample(
        t, denied, tenant="_none", reason="invalid_token") == 1 else None)(
        _prometheus(stats_gateway)), timeout=10,
        message=lambda: "labelled tenant_guard metrics in /stats/prometheus:\n" + "\n".join(
            line for line in _prometheus(stats_gateway).splitlines() if "tenant_guard" in line))
    assert _sample(text, denied, tenant="acme", reason="request_quota_exceeded") == 1
    assert _sample(text, denied, tenant="_other", reason="tenant_suspended") == 1
    assert _sample(text, denied, tenant="_none", reason="missing_token") == 1
    assert _sample(text, "tenant_guard_tenant_requests_allowed", tenant="acme") == 2
    assert _sample(text, "tenant_guard_tenant_requests_allowed", tenant="_other") == 2
    assert _sample(text, "tenant_guard_tenant_input_tokens", tenant="acme") == 200
    assert _sample(text, "tenant_guard_tenant_output_tokens", tenant="_other") == 4
    assert _sample(text, "tenant_guard_tenant_cost_micro_usd", tenant="acme") == 700
    # The tenant and reason are labels only, never parts of a metric name.
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
             if line.startswith("tenant_guard_tenant")}
    assert names == {denied, "tenant_guard_tenant_requests_allowed",
                     "tenant_guard_tenant_input_tokens", "tenant_guard_tenant_output_tokens",
                     "tenant_guard_tenant_cost_micro_usd"}, names
    assert "# TYPE tenant_guard_tenant_requests_denied counter" in text
