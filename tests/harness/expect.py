"""Assertions the behaviour tests share: what an admitted request and a denial look like, and
"the gateway is still healthy on every worker"."""

import json

from .wait import wait_for

DENIAL_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "invalid_request_error",
                413: "invalid_request_error",
                429: "rate_limit_error", 503: "api_error"}


def assert_allowed(resp, upstream=None):
    """200 from the upstream; returns what the upstream received when ``upstream`` given."""
    assert resp.status == 200, f"expected the request to be admitted, got {resp}"
    assert resp.json().get("object") == "chat.completion", resp
    if upstream is not None:
        return upstream.received(resp.request_id)
    return None


def assert_denied(resp, status, reason, upstream=None):
    """A denial with the OpenAI error shape: ``{"error": {"type", "code", "message"}}``,
    ``application/json``, and for 401 the RFC 6750 challenge. When ``upstream`` is given the
    request must not have reached it (nor any of them, for a list)."""
    assert resp.status == status, f"expected {status} {reason}, got {resp}"
    content_type = resp.header("content-type") or ""
    assert content_type.split(";")[0].strip() == "application/json", \
        f"denial content-type is {content_type!r}"
    try:
        body = json.loads(resp.body)
    except ValueError as exc:
        raise AssertionError(f"denial body is not JSON: {resp.body[:300]!r}") from exc
    error = body.get("error")
    assert isinstance(error, dict), f"denial body has no error object: {body}"
    assert error.get("code") == reason, f"expected code {reason!r}, got {error}"
    assert error.get("type") == DENIAL_TYPES[status], f"wrong error type: {error}"
    assert isinstance(error.get("message"), str) and error["message"], \
        f"denial message missing: {error}"
    if status == 401:
        challenge = resp.header("www-authenticate")
        assert challenge is not None, "401 without WWW-Authenticate"
        assert challenge.startswith("Bearer"), challenge
        if reason == "missing_token":
            assert 'realm="tenant-guard"' in challenge, challenge
            assert "error=" not in challenge, challenge
        else:
            assert 'error="invalid_token"' in challenge, challenge
    if upstream is not None:
        for one in upstream if isinstance(upstream, (list, tuple)) else [upstream]:
            assert one.find(resp.request_id) == [], "a denied request reached the upstream"
    return error


VM_FAILURE_MARKERS = ("panicked at", "Function: proxy_on", "wasm_fail",
                      "Plugin configured to fail closed failed to load")


def wasm_vm_stats(envoy) -> dict:
    """The Wasm VM counters Envoy 1.40 has (seen in admin /stats): VMs created and active
    for the V8 runtime, and the per-vm_id reload counters (FAIL_RELOAD)."""
    stats = envoy.stats(r"^wasm\.")
    return {name: value for name, value in stats.items()
            if name.startswith("wasm.envoy.wasm.runtime.v8.") or ".vm_reload" in name
            or name == "wasm.wasm_vm_count"}


def vm_failures_in_log(envoy) -> list:
    return [line for line in envoy.read_log().splitlines()
            if any(marker in line for marker in VM_FAILURE_MARKERS)]


def assert_healthy_on_all_workers(envoy, make_request, batch=12, max_batches=5):
    """Valid requests over new connections all get 200, until every worker has served at least
    one of them (bounded), and nothing in stats or logs says a Wasm VM failed."""
    rq_5xx_before = envoy.stat("http.ingress.downstream_rq_5xx")
    vms_before = wasm_vm_stats(envoy)
    before = envoy.worker_connections()
    workers = set(range(envoy.concurrency))
    served = set()
    for _ in range(max_batches):
        for _ in range(batch):
            resp = make_request()
            assert resp.status == 200, f"a valid request failed after the bad one: {resp}"
        after = envoy.worker_connections()
        served = {w for w in workers if after.get(w, 0) > before.get(w, 0)}
        if served == workers:
            break
    assert served == workers, f"only workers {served} served requests"
    assert envoy.stat("http.ingress.downstream_rq_5xx") == rq_5xx_before
    assert wasm_vm_stats(envoy) == vms_before, "a Wasm VM was created, lost or reloaded"
    assert vm_failures_in_log(envoy) == []
    assert envoy.running


def assert_eventually_accepted_on_all_workers(envoy, make_request, timeout=10.0, batch=8):
    """Poll until a whole batch of requests over new connections gets 200 and every worker
    served part of that batch (e.g. after a JWKS change that each worker may pick up on its
    own timer)."""
    last = {}
    workers = set(range(envoy.concurrency))

    def all_ok():
        before = envoy.worker_connections()
        last["statuses"] = [make_request().status for _ in range(batch)]
        after = envoy.worker_connections()
        last["served"] = {w for w in workers if after.get(w, 0) > before.get(w, 0)}
        return all(s == 200 for s in last["statuses"]) and last["served"] == workers
    wait_for(all_ok, timeout=timeout, interval=0.2,
             message=lambda: f"every request to be accepted on every worker "
                             f"(last batch: {last})")
