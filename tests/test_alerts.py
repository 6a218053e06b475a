"""Alerts before the limit (plans.<name>.alerts, alerts.webhook): a tenant whose real usage
crosses a threshold of a token window or of its monthly budget gets exactly one audit event
``budget_threshold`` per threshold and period, whichever worker settles the crossing request;
tenants with stats of their own have a gauge of the fraction used in /stats/prometheus; and an
optional webhook gets the event as JSON, best effort: a dead or slow webhook costs requests
nothing."""

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest

from harness import bootstrap as bs
from harness import cli
from harness.answers import answer
from harness.h2client import H2Client
from harness.audit import audit_lines, verify
from harness.keys import claims, mint
from harness.limits import LONG, wait_clear_of_month_edge
from harness.plugin_config import gateway_config, tenant, windows
from harness.servers import _Handler, _Server
from harness.wait import wait_for

REPO = Path(__file__).resolve().parent.parent

THRESHOLDS = [0.5, 0.8, 1.0]
PRICING = {"models": {"gpt-4o": {"input_per_million": 2.5, "output_per_million": 10.0}}}
WINDOW = f"tokens_{LONG}s"
# Requests name no max_tokens: a small reservation keeps admissions from the budget's edge.
USAGE = {"default_reservation_tokens": 16}


def crossings(proxy, tenant_id="acme"):
    """The budget_threshold audit lines of ``tenant_id`` in the Envoy log."""
    return [line for _, line in audit_lines(proxy.read_log())
            if line.get("event") == "budget_threshold" and line.get("tenant") == tenant_id]


def announced(proxy, window):
    return sorted(line["threshold"] for line in crossings(proxy) if line["window"] == window)


def settled(proxy, count):
    """Waits until ``count`` requests completed (their settlement ran before the log)."""
    wait_for(lambda: proxy.requests_completed() >= count, timeout=20,
             message=lambda: f"{count} requests completed, have {proxy.requests_completed()}")


def chat(proxy, token, in_, out):
    return proxy.client.chat(token=token, headers=answer("openai-json", in_=in_, out=out))


# === One event per threshold, whatever the concurrency ===

def h2_chat(proxy, token, in_, out):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
    return H2Client(proxy.listener_port).request(
        body=body, token=token, headers=answer("openai-json", in_=in_, out=out))


@pytest.mark.parametrize("protocol,hold_headers", [("h1", True), ("h2", False)])
def test_parallel_crossing_on_two_workers_writes_one_event_per_threshold(gateway_factory, keys,
                                                                         protocol,
                                                                         hold_headers):
    """40 requests of 2,250 tokens each, 8 at a time on new connections over both workers,
    fill 90 % of a 100,000-token window: 0.5 and 0.8 are announced once each, 1.0 never.
    Over HTTP/1.1 with held headers, and over HTTP/2 with headers forwarded before the body."""
    config = gateway_config(keys, {"acme": tenant("team")}, plans={
        "team": {"tokens": windows((100_000, LONG)), "alerts": THRESHOLDS}}, usage=USAGE)
    proxy = gateway_factory(config, name=f"alerts-parallel-{protocol}", concurrency=2,
                            hold_headers=hold_headers)
    token = mint(keys.corp_rsa, claims("acme"))
    send = chat if protocol == "h1" else h2_chat
    before = proxy.worker_connections()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: send(proxy, token, 2000, 250).status, range(40)))
    assert statuses == [200] * 40, statuses
    after = proxy.worker_connections()
    served = {w for w in after if after[w] > before.get(w, 0)}
    assert served == {0, 1}, f"both workers must serve: {before} → {after}"
    settled(proxy, 40)
    lines = wait_for(lambda: (lambda c: c if len(c) >= 2 else None)(crossings(proxy)),
                     timeout=10, message=lambda: f"two crossings, have {crossings(proxy)}")
    assert announced(proxy, WINDOW) == [0.5, 0.8], lines
    for line in crossings(proxy):
        assert line["limit"] == 100_000 and line["unit"] == "tokens"
        assert line["used"] >= line["threshold"] * 100_000, line
        # Windows are aligned to the epoch: this one began at the last multiple of LONG.
        start = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() // LONG * LONG))
        assert line["period_start"] == start, line
        assert len(line["request_id"]) == 32
    # Every worker's chain still verifies with the new lines in it, and the lines are as the
    # audit line's schema says.
    verify(audit_lines(proxy.read_log()))
    schema = json.loads((REPO / "schema" / "audit-line.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    for line in crossings(proxy):
        validator.validate(line)
    wrong = dict(crossings(proxy)[0], decision="deny")
    assert not validator.is_valid(wrong), "a threshold line has no request members"
    # The auditors' command verifies the chains and finds the lines by their event.
    verified = cli.run("audit", "verify", proxy.log_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    found = cli.run("audit", "query", "--event", "budget_threshold", proxy.log_path)
    assert found.returncode == 0, found.stderr
    queried = [json.loads(text) for text in found.stdout.splitlines() if text.startswith("{")]
    assert sorted(q["threshold"] for q in queried) == [0.5, 0.8]
    # Two more rounds of the same, from both workers again: nothing new below 1.0.
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(lambda _: send(proxy, token, 100, 0).status, range(16))) == {200}
    settled(proxy, 56)
    assert announced(proxy, WINDOW) == [0.5, 0.8]
    assert proxy.stat("wasmcustom.tenant_guard.alerts.budget_threshold") == 2


# === Token windows and the monthly budget, each on its own ===

def test_thresholds_of_each_window_and_of_the_budget_are_announced_separately(gateway_factory,
                                                                              keys):
    """A plan with a 10,000-token window and a $0.02 budget; each request uses 1,000 input and
    100 output tokens (1,100 tokens, $0.0035). Thresholds cross at different requests."""
    wait_clear_of_month_edge()
    config = gateway_config(keys, {"acme": tenant("team"), "globex": tenant("quiet")},
                            plans={"team": {"tokens": windows((10_000, LONG)),
                                            "monthly_budget_usd": 0.02,
                                            "alerts": THRESHOLDS},
                                   "quiet": {"tokens": windows((10_000, LONG))}},
                            pricing=PRICING, usage=USAGE)
    proxy = gateway_factory(config, name="alerts-kinds", concurrency=2)
    token = mint(keys.corp_rsa, claims("acme"))
    expected = {
        # after request n: (window thresholds, budget thresholds) announced so far
        1: ([], []),           # 1,100 tokens (0.11); $0.0035 (0.175)
        3: ([], [0.5]),        # 3,300 (0.33); $0.0105 (0.525)
        5: ([0.5], [0.5, 0.8]),  # 5,500 (0.55); $0.0175 (0.875)
    }
    sent = 0
    for n in sorted(expected):
        while sent < n:
            assert chat(proxy, token, 1000, 100).status == 200
            sent += 1
        settled(proxy, sent)
        want_window, want_budget = expected[n]
        wait_for(lambda: announced(proxy, WINDOW) == want_window
                 and announced(proxy, "budget") == want_budget, timeout=10,
                 message=lambda: f"after {n}: {crossings(proxy)}")
    budget = [line for line in crossings(proxy) if line["window"] == "budget"]
    assert {line["unit"] for line in budget} == {"micro_usd"}
    assert {line["limit"] for line in budget} == {20_000}
    assert [line["used"] for line in budget] == [10_500, 17_500]
    month_start = time.strftime("%Y-%m-01T00:00:00.000Z", time.gmtime())
    assert {line["period_start"] for line in budget} == {month_start}
    # The next request still fits ($0.0175 and its small reservation) and crosses 1.0.
    resp = chat(proxy, token, 1000, 100)
    assert resp.status == 200, resp
    settled(proxy, sent + 1)
    wait_for(lambda: announced(proxy, "budget") == [0.5, 0.8, 1.0], timeout=10,
             message=lambda: f"1.0 of the budget: {crossings(proxy)}")
    # A tenant without alerts in its plan has none.
    globex = mint(keys.corp_rsa, claims("globex"))
    assert chat(proxy, globex, 9000, 500).status == 200
    settled(proxy, sent + 2)
    assert crossings(proxy, "globex") == []
    # The lines also reach the audit stream's own file (filter state wasm.audit).
    wait_for(lambda: len([line for _, line in audit_lines(proxy.audit_log_path.read_text())
                          if line.get("event") == "budget_threshold"]) == 4
             if proxy.audit_log_path.exists() else False,
             timeout=10, message="the crossings in the audit access log")
    verify(audit_lines(proxy.audit_log_path.read_text()))


# === The gauge ===

def prometheus(proxy) -> str:
    status, body = proxy.admin_get("/stats/prometheus")
    assert status == 200, body[:200]
    return body


def test_used_fraction_is_a_labelled_gauge_in_prometheus(gateway_factory, keys):
    """acme has series of its own (stats.max_tenant_series = 1); globex does not, and gets
    no gauge (a shared one would mean nothing)."""
    config = gateway_config(keys, {"acme": tenant("team"), "globex": tenant("team")},
                            plans={"team": {"tokens": windows((10_000, LONG)),
                                            "alerts": THRESHOLDS}},
                            stats={"max_tenant_series": 1}, usage=USAGE)
    proxy = gateway_factory(config, name="alerts-gauge", stats_tags=bs.TENANT_STATS_TAGS)
    acme = mint(keys.corp_rsa, claims("acme"))
    for _ in range(3):
        assert chat(proxy, acme, 2000, 500).status == 200
    assert chat(proxy, mint(keys.corp_rsa, claims("globex")), 1000, 0).status == 200
    settled(proxy, 4)
    line = (f'tenant_guard_tenant_used_permille{{tenant="acme",window="{WINDOW}"}} 750')
    body = wait_for(lambda: (lambda b: b if line in b else None)(prometheus(proxy)),
                    timeout=10, message=lambda: "the gauge in:\n" + "\n".join(
                        x for x in prometheus(proxy).splitlines() if "permille" in x))
    assert "# TYPE tenant_guard_tenant_used_permille gauge" in body
    assert 'tenant="globex"' not in body and 'tenant="_other",window' not in body
    # The alert rule docs/alerts.md shows fires on exactly this series.
    assert proxy.stat(f"wasmcustom.tenant_guard.tenant.acme.used_permille.{WINDOW}") == 750


# === The webhook ===

class WebhookServer(_Server):
    """Records the POSTs it gets; ``fail_first``: answers 503 to that many first."""

    def __init__(self, fail_first=0, delay_s=0.0):
        self.lock = threading.Lock()
        self.bodies = []
        self.attempts = 0
        self.fail_first = fail_first
        self.delay_s = delay_s
        super().__init__(_WebhookHandler)


class _WebhookHandler(_Handler):
    def _handle(self):
        body = self._read_body()
        owner = self.owner
        if owner.delay_s:
            time.sleep(owner.delay_s)
        with owner.lock:
            owner.attempts += 1
            failing = owner.attempts <= owner.fail_first
            if not failing:
                owner.bodies.append((self.command, self.path, self.headers.get("content-type"),
                                     json.loads(body)))
        try:
            self._send(503 if failing else 204, b"")
        except OSError:
            pass  # the gateway gave up waiting (timeout): nothing to answer


def webhook_gateway(gateway_factory, keys, name, port, **webhook):
    config = gateway_config(keys, {"acme": tenant("team")}, plans={
        "team": {"tokens": windows((10_000, LONG)), "alerts": THRESHOLDS}}, usage=USAGE)
    config["alerts"] = {"webhook": {"cluster": "hooks", "path": "/hooks/budget", **webhook}}
    return gateway_factory(config, name=name, clusters={"hooks": port})


def test_webhook_gets_each_crossing_as_json_and_a_failure_is_retried(gateway_factory, keys):
    with WebhookServer(fail_first=1) as hook:
        proxy = webhook_gateway(gateway_factory, keys, "alerts-hook", hook.port,
                                timeout_ms=2000, retries=2)
        token = mint(keys.corp_rsa, claims("acme"))
        assert chat(proxy, token, 4000, 1000).status == 200  # 0.5
        assert chat(proxy, token, 3000, 0).status == 200     # 0.8
        settled(proxy, 2)
        wait_for(lambda: len(hook.bodies) == 2, timeout=15,
                 message=lambda: f"two webhook bodies, have {hook.bodies}")
        # The first answer was a 503: that delivery was retried, once.
        assert hook.attempts == 3
        by_threshold = {b[3]["threshold"]: b for b in hook.bodies}
        assert sorted(by_threshold) == [0.5, 0.8]
        method, path, content_type, event = by_threshold[0.8]
        assert (method, path, content_type) == ("POST", "/hooks/budget", "application/json")
        audit = [line for line in crossings(proxy) if line["threshold"] == 0.8]
        assert len(audit) == 1
        # The body is the audit line without its chain.
        for member in ("type", "chain", "seq", "prev", "hash"):
            audit[0].pop(member)
        assert event == audit[0]
        assert event["event"] == "budget_threshold" and event["tenant"] == "acme"
        assert event["used"] == 8000 and event["limit"] == 10_000
        wait_for(lambda: proxy.stat("wasmcustom.tenant_guard.alerts.webhook_delivered") == 2,
                 timeout=10, message="two deliveries counted")
        assert proxy.stat("wasmcustom.tenant_guard.alerts.webhook_failed") == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["dead", "slow"])
def test_a_dead_or_slow_webhook_costs_requests_nothing(gateway_factory, keys, kind):
    """Every request that crosses a threshold, and every one after, completes with its own
    status while the webhook refuses connections (a closed port) or answers after its
    timeout; the audit lines are written all the same, and the failures are counted."""
    hook = WebhookServer(delay_s=5.0) if kind == "slow" else None
    port = hook.port if hook else closed_port()
    try:
        proxy = webhook_gateway(gateway_factory, keys, f"alerts-{kind}", port,
                                timeout_ms=200, retries=1)
        token = mint(keys.corp_rsa, claims("acme"))
        # 1,200 tokens each: 0.5 at the 5th, 0.8 at the 7th, 1.0 at the 9th; then the window
        # refuses (429) once full: every request still gets its answer.
        with ThreadPoolExecutor(max_workers=4) as pool:
            statuses = list(pool.map(lambda _: chat(proxy, token, 1000, 200).status,
                                     range(16)))
        assert len(statuses) == 16
        assert set(statuses) <= {200, 429}, statuses
        assert statuses.count(200) >= 9, statuses
        settled(proxy, 16)
        wait_for(lambda: announced(proxy, WINDOW) == [0.5, 0.8, 1.0], timeout=10,
                 message=lambda: f"the crossings: {crossings(proxy)}")
        # Each of the three deliveries is tried twice (retries: 1), then dropped.
        failed = "wasmcustom.tenant_guard.alerts.webhook_failed"
        dropped = "wasmcustom.tenant_guard.alerts.webhook_dropped"
        wait_for(lambda: proxy.stat(failed) == 6 and proxy.stat(dropped) == 3, timeout=30,
                 message=lambda: f"failed {proxy.stat(failed)}, dropped {proxy.stat(dropped)}")
        assert proxy.stat("wasmcustom.tenant_guard.alerts.webhook_delivered") == 0
        # Requests after the failures are answered as before.
        assert chat(proxy, token, 1, 1).status == 429
        assert proxy.running
    finally:
        if hook:
            hook.close()
