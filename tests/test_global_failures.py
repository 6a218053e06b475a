"""When the rate-limit service cannot decide: killed (SIGKILL), frozen past ``timeout_ms``
(SIGSTOP), answering bytes that are not a RateLimitResponse, answering a non-OK gRPC status,
or answering ``UNKNOWN``. ``failure_mode: deny`` answers 503 rate_limit_service_unavailable
with Retry-After 1; ``allow`` lets the request on and its record says why. Either way every
request has its record, no Wasm VM fails, and once the service is back both workers admit
requests again. Local limits hold while the service is gone."""

import pytest

from harness import rls
from harness.answers import answer
from harness.expect import assert_denied, assert_healthy_on_all_workers, wasm_vm_stats
from harness.keys import claims, mint
from harness.limits import LONG, assert_quota_denied
from harness.plugin_config import tenant, windows
from harness.ratelimit import RateLimitService, ScriptedRateLimitService, limit
from harness.records import filter_record, filter_records
from harness.replicas import GENEROUS, PATIENT_TIMEOUT_MS, global_config, replica, start_all
from harness.wait import wait_for
from harness.workers import until_every_worker

# The frozen service is only noticed when a call times out: a short timeout keeps that test
# quick, yet long enough that the service answering while healthy (before and after) never
# takes as long on a busy machine. Every other scenario fails fast by itself and waits
# patiently for healthy answers.
FROZEN_TIMEOUT_MS = 2000
GENEROUS_TOKENS = GENEROUS["tokens"][0]["limit"]
LIMITS = [limit("requests", usage="requests", plan="pro", max_value=1000000)]
TENANTS = {"acme": tenant("pro"),
           "tight-co": tenant("pro", limits={"requests": windows((3, LONG))})}


def call_stats(proxy):
    """(calls made, calls timed out, calls in flight) to the ``ratelimit`` cluster, read at
    once."""
    stats = proxy.stats(r"^cluster\.ratelimit\.upstream_rq_(total|timeout|active)$")
    return tuple(stats.get(f"cluster.ratelimit.upstream_rq_{name}", 0)
                 for name in ("total", "timeout", "active"))


class Killed:
    """The real service, killed with SIGKILL and started again on the same port."""

    def __init__(self, workdir):
        self.service = RateLimitService(workdir / "service", LIMITS).start()
        self.port = self.service.port

    def fail(self):
        self.service.kill()

    def recover(self):
        self.service.start()

    def close(self):
        self.service.stop()


class Frozen(Killed):
    """The real service, stopped with SIGSTOP (connections stay open, nothing answers) and
    continued with SIGCONT."""

    def fail(self):
        self.service.pause()

    def recover(self):
        self.service.resume()


class Scripted:
    """The scripted service: ``failing(service)`` makes it fail; it answers OK again at
    ``recover``."""

    def __init__(self, workdir, failing):
        self.service = ScriptedRateLimitService()
        self.port = self.service.port
        self._failing = failing

    def fail(self):
        self._failing(self.service)

    def recover(self):
        self.service.answer_code(rls.OK)

    def close(self):
        self.service.close()


def scripted(failing):
    return lambda workdir: Scripted(workdir, failing)


FAILURES = {
    "killed": Killed,
    "frozen": Frozen,
    # Bytes that do not parse as protobuf.
    "garbage": scripted(lambda s: s.answer_bytes(b"\xff\xff\xff")),
    # A length-delimited field 1 that claims 5 bytes and has 3.
    "wrong_message": scripted(lambda s: s.answer_bytes(b"\x0a\x05abc")),
    "grpc_internal": scripted(lambda s: s.answer_status("INTERNAL")),
    "grpc_resource_exhausted": scripted(lambda s: s.answer_status("RESOURCE_EXHAUSTED")),
    # An empty message: a valid RateLimitResponse whose overall_code is UNKNOWN.
    "code_unknown": scripted(lambda s: s.answer_bytes(b"")),
}


@pytest.fixture
def failing_gateway(tmp_path, wasm_path, upstream, jwks_server, keys):
    """``failing_gateway(failure, mode)`` → (Envoy, failure scenario): one Envoy with 2
    workers in front of the service of that scenario, both stopped at teardown."""
    opened = []

    def make(failure, mode):
        scenario = FAILURES[failure](tmp_path)
        opened.append(scenario)
        timeout_ms = FROZEN_TIMEOUT_MS if failure == "frozen" else PATIENT_TIMEOUT_MS
        config = global_config(keys, TENANTS, plans={"pro": None}, failure_mode=mode,
                               timeout_ms=timeout_ms)
        proxy = replica(tmp_path / "envoy", wasm_path, upstream.port, jwks_server.port,
                        config, scenario.port)
        opened.append(proxy)
        start_all([proxy])
        return proxy, scenario

    yield make
    for thing in reversed(opened):
        (thing.stop if hasattr(thing, "stop") else thing.close)()


def token_for(keys, tenant_id):
    return mint(keys.corp_rsa, claims(tenant_id))


def admitted_normally(proxy, token):
    # No usage, so no debit follows: only the two calls at admission, over by the answer.
    resp = proxy.client.chat(token=token, headers=answer("openai-json", in_=0, out=0))
    if resp.status != 200:
        return None
    record = filter_record(proxy, resp.request_id)
    return resp if record["reason"] == "ok" else None


@pytest.mark.parametrize("mode", ["deny", "allow"])
@pytest.mark.parametrize("failure", list(FAILURES))
def test_service_failure(failing_gateway, upstream, keys, failure, mode):
    proxy, scenario = failing_gateway(failure, mode)
    token = token_for(keys, "acme")
    # Healthy first (the first call also opens Envoy's connection to the service).
    wait_for(lambda: admitted_normally(proxy, token), timeout=10,
             message="a request admitted with the service answering OK")
    vms = wasm_vm_stats(proxy)
    reloads = {k: v for k, v in vms.items() if ".vm_reload" in k}
    assert reloads and not any(reloads.values()), vms

    calls_before, timeouts_before, _ = call_stats(proxy)
    scenario.fail()

    def check(resp):
        if mode == "deny":
            assert_denied(resp, 503, "rate_limit_service_unavailable", upstream=upstream)
            assert resp.header("retry-after") == "1", resp.headers
        else:
            assert resp.status == 200, resp
            assert len(upstream.find(resp.request_id)) == 1
    served = until_every_worker(
        proxy, lambda: proxy.client.chat(token=token,
                                         headers=answer("openai-json", in_=20, out=10)),
        check)
    results = [resp for responses in served.values() for resp in responses]
    # How the failure was noticed: a frozen service only by timeouts, every other one without
    # any call timing out. Read once no call is in flight: then every call to the frozen
    # service has ended, each in a timeout; there were at least the two of each request
    # (requests and tokens; in allow mode the debits of the admitted usage come on top).
    total, timeouts, _ = wait_for(
        lambda: (lambda now: now if now[2] == 0 else None)(call_stats(proxy)), timeout=60,
        message="the calls to the rate-limit service to end")
    calls, timeouts = total - calls_before, timeouts - timeouts_before
    if failure == "frozen":
        assert timeouts == calls >= 2 * len(results), \
            f"{timeouts} of {calls} calls timed out for {len(results)} requests"
    else:
        assert timeouts == 0, f"{timeouts} of {calls} calls timed out"

    # Every request has its record, with the decision and the reason.
    for resp in results:
        record = filter_record(proxy, resp.request_id)
        assert (record["decision"], record["reason"], record["tenant"]) == \
            (mode, "rate_limit_service_unavailable", "acme"), record
        if mode == "allow":
            assert (record["input_tokens"], record["output_tokens"]) == (20, 10), record
        line = proxy.access_log_entry(resp.request_id)
        assert (line["decision"], line["reason"]) == (mode, "rate_limit_service_unavailable")

    # Back to normal: admitted on both workers, no Wasm VM lost, created or reloaded.
    scenario.recover()
    wait_for(lambda: admitted_normally(proxy, token), timeout=10,
             message="a request admitted once the service answers again")
    assert_healthy_on_all_workers(proxy, lambda: proxy.client.chat(token=token))
    assert wasm_vm_stats(proxy) == vms
    ids = [r.request_id for r in results]
    records = [r for r in filter_records(proxy.read_log()) if r.get("client_request_id") in ids]
    assert len(records) == len(ids), "a request has no record, or more than one"


def test_local_limits_hold_while_the_service_is_gone(failing_gateway, upstream, keys):
    """failure_mode allow, service killed: the tenant's local plan of 3 requests still
    refuses the 4th request with 429 request_quota_exceeded from the local window."""
    proxy, scenario = failing_gateway("killed", "allow")
    scenario.fail()
    token = token_for(keys, "tight-co")
    for _ in range(3):
        resp = proxy.client.chat(token=token)
        assert resp.status == 200, resp
        record = filter_record(proxy, resp.request_id)
        assert record["reason"] == "rate_limit_service_unavailable", record
    for _ in range(2):
        refused = proxy.client.chat(token=token)
        # The tenant's requests window replaces the plan's; the plan's tokens window stays.
        assert_quota_denied(refused, "request_quota_exceeded",
                            [("requests", 3, LONG), ("tokens", GENEROUS_TOKENS, LONG)],
                            refusing=LONG, upstream=upstream)
        record = filter_record(proxy, refused.request_id)
        assert (record["decision"], record["reason"]) == ("deny", "request_quota_exceeded")
