"""When the rate-limit service cannot decide: killed (SIGKILL), frozen past ``timeout_ms``
(SIGSTOP), answering bytes that are not a RateLimitResponse, answering a non-OK gRPC status,
or answering ``UNKNOWN``. ``failure_mode: deny`` answers 503 rate_limit_service_unavailable
with Retry-After 1; ``allow`` lets the request on and its record says why. Either way every
request has its record, no Wasm VM fails, and once the service is back both workers admit
requests again. Local limits hold while the service is gone."""

import time

import pytest

from harness import rls
from harness.answers import answer
from harness.expect import assert_denied, assert_healthy_on_all_workers, wasm_vm_stats
from harness.keys import claims, mint
from harness.limits import assert_quota_denied, wait_clear_of_window_edge
from harness.plugin_config import tenant, windows
from harness.ratelimit import RateLimitService, ScriptedRateLimitService, limit
from harness.records import filter_record, filter_records
from harness.replicas import GENEROUS, HOUR, global_config, replica, start_all
from harness.wait import wait_for

TIMEOUT_MS = 200
GENEROUS_TOKENS = GENEROUS["tokens"][0]["limit"]
LIMITS = [limit("requests", usage="requests", plan="pro", max_value=1000000)]
TENANTS = {"acme": tenant("pro"),
           "tight-co": tenant("pro", limits={"requests": windows((3, HOUR))})}


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
        config = global_config(keys, TENANTS, plans={"pro": None}, failure_mode=mode,
                               timeout_ms=TIMEOUT_MS)
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


def send_on_both_workers(proxy, send, minimum=4, maximum=20):
    """Requests over new connections until both workers served at least one (and at least
    ``minimum`` were sent); returns [(response, seconds)]."""
    before = proxy.worker_connections()
    results = []
    while len(results) < maximum:
        started = time.monotonic()
        resp = send()
        results.append((resp, time.monotonic() - started))
        after = proxy.worker_connections()
        served = {w for w in range(proxy.concurrency) if after.get(w, 0) > before.get(w, 0)}
        if len(results) >= minimum and len(served) == proxy.concurrency:
            return results
    raise AssertionError(f"{maximum} requests did not reach both workers")


def admitted_normally(proxy, token):
    resp = proxy.client.chat(token=token)
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

    scenario.fail()
    results = send_on_both_workers(
        proxy, lambda: proxy.client.chat(token=token,
                                         headers=answer("openai-json", in_=20, out=10)))
    for resp, seconds in results:
        if mode == "deny":
            assert_denied(resp, 503, "rate_limit_service_unavailable", upstream=upstream)
            assert resp.header("retry-after") == "1", resp.headers
        else:
            assert resp.status == 200, resp
            assert len(upstream.find(resp.request_id)) == 1
        if failure == "frozen":
            # Held until the call timed out.
            assert seconds >= TIMEOUT_MS / 1000 * 0.9, f"answered after {seconds:.3f}s"
        assert seconds < 3.0, f"answered after {seconds:.3f}s"

    # Every request has its record, with the decision and the reason.
    for resp, _ in results:
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
    ids = [r.request_id for r, _ in results]
    records = [r for r in filter_records(proxy.read_log()) if r.get("client_request_id") in ids]
    assert len(records) == len(ids), "a request has no record, or more than one"


def test_local_limits_hold_while_the_service_is_gone(failing_gateway, upstream, keys):
    """failure_mode allow, service killed: the tenant's local plan of 3 requests per hour
    still refuses the 4th request with 429 request_quota_exceeded from the local window."""
    proxy, scenario = failing_gateway("killed", "allow")
    scenario.fail()
    wait_clear_of_window_edge(HOUR)
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
                            [("requests", 3, HOUR), ("tokens", GENEROUS_TOKENS, HOUR)],
                            refusing=HOUR, upstream=upstream)
        record = filter_record(proxy, refused.request_id)
        assert (record["decision"], record["reason"]) == ("deny", "request_quota_exceeded")
