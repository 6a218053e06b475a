"""Quotas: request and token windows, the monthly budget, their 429 answers, and the remaining
headers of admitted requests. Every test runs its own Envoy with small plans (the counters are
process-wide shared data, so a fresh Envoy starts from zero); tenants of one Envoy never share
counters.

Windows are fixed and aligned to the Unix epoch: tests use windows of ten years (``LONG``), so
no window can roll over mid-test, except the test about resets, which waits for the edge.
Budget tests keep clear of the month's end. Tests with several workers show that a window is
shared by all of them: once it is full, every worker refuses (``until_every_worker``)."""

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import bootstrap as bs
from harness.answers import answer
from harness.client import new_request_id
from harness.expect import assert_denied
from harness.h2client import H2Client
from harness.keys import claims, mint
from harness.limits import (LONG, LONGER, assert_quota_denied, decision_seconds, remaining,
                            wait_clear_of_month_edge)
from harness.plugin_config import gateway_config, tenant, windows
from harness.records import filter_record
from harness.wait import wait_for
from harness.workers import until_every_worker


def chat_body(max_tokens=None, content="hello", model="gpt-4o", **extra):
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    body.update(extra)
    return body


def encoded(body) -> bytes:
    """The bytes the client sends for a JSON body (harness.client encodes with json.dumps)."""
    return json.dumps(body).encode()


def reservation(body, default=1024) -> int:
    """What the filter reserves for a chat body: one token per 4 bytes, plus max_tokens (or
    the default) times max(n, best_of, 1)."""
    size = len(encoded(body))
    output = body.get("max_tokens", default) * max(body.get("n", 1), body.get("best_of", 1), 1)
    return -(-size // 4) + output


PROBE = {"model": "gpt-4o", "max_tokens": 1, "messages": []}


def probe(proxy, token):
    """An admitted request whose answer reports 0 tokens: its remaining headers show the
    tenant's counters, whatever the gateway's view of the probe's own estimate, so the
    difference between two probes is exactly what happened in between."""
    resp = proxy.client.chat(token=token, body=PROBE, headers=answer("openai-json", in_=0,
                                                                     out=0))
    assert resp.status == 200, resp
    return resp


@pytest.fixture
def tokens_for(keys):
    cache = {}

    def token(tenant_id):
        if tenant_id not in cache:
            cache[tenant_id] = mint(keys.corp_rsa, claims(tenant_id, sub=f"{tenant_id}-user"))
        return cache[tenant_id]
    return token


@pytest.fixture
def lds_gateway(envoy_factory, tmp_path, wasm_path, upstream, jwks_server):
    """An Envoy whose listener comes from a watched LDS file: ``proxy, push = lds_gateway(cfg)``
    and ``push(version, new_cfg)`` replaces the plugin configuration."""
    lds_dir = tmp_path / "lds"
    lds_dir.mkdir()

    def write(version, listener_doc):
        tmp = lds_dir / f".lds.{version}.tmp"
        tmp.write_text(json.dumps(bs.lds_response(version, listener_doc)))
        os.rename(tmp, lds_dir / "lds.json")

    def start(config):
        def listener_for(envoy, cfg):
            return bs.listener(envoy.listener_port, envoy.access_log_path,
                               [bs.wasm_filter(wasm_path, cfg)])

        def make(envoy):
            write("1", listener_for(envoy, config))
            return bs.bootstrap(admin_port=envoy.admin_port, upstream_port=upstream.port,
                                jwks_port=jwks_server.port, lds_dir=str(lds_dir))

        proxy = envoy_factory(make_config=make, name="lds-quota")
        return proxy, lambda version, cfg: write(version, listener_for(proxy, cfg))
    return start


def every_worker_refuses(proxy, send, reason, windows_, refusing, upstream=None) -> dict:
    """Requests one at a time until every worker has refused one with ``reason``: a full
    window is one count shared by all workers, whichever worker filled it."""
    return until_every_worker(proxy, send, lambda resp: assert_quota_denied(
        resp, reason, windows_, refusing=refusing, upstream=upstream))


# === Request windows ===

def parallel_burst(proxy, token, clients=40, requests=120):
    """``requests`` requests from ``clients`` parallel clients, each on a new connection."""
    def one(_):
        return proxy.client.chat(token=token, body=chat_body())

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(one, range(requests)))


def outcomes(responses) -> dict:
    """{(status, start of the body): count}, to say what went wrong."""
    counts = {}
    for resp in responses:
        key = (resp.status, resp.body[:100])
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_request_limit_is_exact_across_four_workers(gateway_factory, upstream, keys,
                                                    tokens_for):
    """40 clients × 3 requests on new connections against 25 requests: exactly 25 are
    admitted, whichever of the 4 workers served them (one shared counter, updated by CAS),
    and then every worker refuses."""
    config = gateway_config(keys, {
        "acme": tenant(limits={"requests": windows((25, LONG))}),
        "globex": tenant(limits={"requests": windows((25, LONG))}),
    })
    proxy = gateway_factory(config, concurrency=4, name="exact")
    before = proxy.worker_connections()
    token = tokens_for("acme")
    responses = parallel_burst(proxy, token)
    statuses = sorted(r.status for r in responses)
    assert statuses.count(200) == 25, \
        f"admitted {statuses.count(200)} of 120, limit 25: {outcomes(responses)}"
    assert statuses.count(429) == 95, statuses
    admitted = [r for r in responses if r.status == 200]
    assert sum(len(upstream.find(r.request_id)) for r in responses) == 25
    assert sorted(remaining(r, "requests") for r in admitted) == list(range(25))
    for resp in responses:
        if resp.status == 429:
            assert_quota_denied(resp, "request_quota_exceeded", [("requests", 25, LONG)],
                                refusing=LONG, upstream=upstream)
    after = proxy.worker_connections()
    served = [w for w in range(4) if after.get(w, 0) > before.get(w, 0)]
    assert len(served) >= 2, f"only workers {served} served the 120 requests"
    every_worker_refuses(proxy, lambda: proxy.client.chat(token=token, body=chat_body()),
                         "request_quota_exceeded", [("requests", 25, LONG)], LONG, upstream)

    # Another tenant's counter is untouched.
    other = proxy.client.chat(token=tokens_for("globex"), body=chat_body())
    assert other.status == 200, other
    assert remaining(other, "requests") == 24


def test_request_quota_denial_has_retry_after_and_ratelimit_fields(gateway_factory, upstream,
                                                                    keys, tokens_for):
    """Two request windows and a token window: admissions tell the least left over both
    request windows; the refusal names every window with its exact reset, and Retry-After
    is the refusing window's. Every worker refuses."""
    limits = {"requests": windows((3, LONG), (100, LONGER)),
              "tokens": windows((100000, LONG))}
    config = gateway_config(keys, {"acme": tenant(limits=limits)})
    proxy = gateway_factory(config, name="shape")
    token = tokens_for("acme")
    for expected_left in (2, 1, 0):
        resp = proxy.client.chat(token=token, body=chat_body())
        assert resp.status == 200, resp
        assert remaining(resp, "requests") == expected_left  # least over both windows
        assert remaining(resp, "tokens") is not None
    all_windows = [("requests", 3, LONG), ("requests", 100, LONGER),
                   ("tokens", 100000, LONG)]
    denied = proxy.client.chat(token=token, body=chat_body())
    answer_ = assert_quota_denied(denied, "request_quota_exceeded", all_windows,
                                  refusing=LONG, upstream=upstream)
    assert answer_["ratelimit"][f"requests-{LONG}s"]["r"] == 0
    assert answer_["ratelimit"][f"requests-{LONGER}s"]["r"] == 97
    record = filter_record(proxy, denied.request_id)
    assert (record["decision"], record["reason"], record["tenant"]) == \
        ("deny", "request_quota_exceeded", "acme")
    assert "cost_usd" not in record and "usage_source" not in record, record
    every_worker_refuses(proxy, lambda: proxy.client.chat(token=token, body=chat_body()),
                         "request_quota_exceeded", all_windows, LONG, upstream)


def test_request_window_is_aligned_to_the_epoch_and_resets(gateway_factory, keys, tokens_for):
    """A 3 s window: the second request in a window is refused with Retry-After counting to
    the next multiple of 3 s since the epoch, and the first request after it is admitted.
    Both requests must be decided in one window: an attempt the window's edge cut through
    (a slow machine) is repeated in a later window."""
    config = gateway_config(keys, {"acme": tenant(limits={"requests": windows((1, 3))})})
    proxy = gateway_factory(config, name="epoch")
    token = tokens_for("acme")
    tried = []
    for _ in range(5):
        # A window no earlier attempt has used.
        fresh = max([int(time.time()) // 3] + [r.received_at // 3 + 1 for r in tried])
        wait_for(lambda: time.time() // 3 >= fresh, timeout=10, interval=0.02,
                 message="a fresh 3 s window")
        first = proxy.client.chat(token=token)
        denied = proxy.client.chat(token=token)
        tried += [first, denied]
        slots = {at // 3 for r in (first, denied) for at in decision_seconds(r)}
        if len(slots) == 1:
            break
    else:
        raise AssertionError("five attempts in a row crossed the edge of their 3 s window")
    assert first.status == 200 and remaining(first, "requests") == 0, first
    assert_quota_denied(denied, "request_quota_exceeded", [("requests", 1, 3)], refusing=3)
    slot = slots.pop()
    wait_for(lambda: time.time() // 3 > slot, timeout=5, interval=0.02,
             message="the next 3 s window")
    again = proxy.client.chat(token=token)
    assert again.status == 200, again
    assert remaining(again, "requests") == 0


def test_default_tenant_admissions_have_counters_of_their_own(gateway_factory, upstream, keys,
                                                              tokens_for):
    """Tenants admitted by default_tenant get the plan, each with counters of its own, shared
    by the workers: once a tenant's window is full, every worker refuses it."""
    plans = {"free": {"requests": windows((2, LONG))}}
    config = gateway_config(keys, {"acme": tenant()}, plans=plans,
                            default_tenant={"providers": ["corp-idp"], "plan": "free"})
    proxy = gateway_factory(config, name="default-tenant")
    for tenant_id in ("hooli", "pied-piper"):
        token = tokens_for(tenant_id)
        assert [remaining(proxy.client.chat(token=token), "requests")
                for _ in range(2)] == [1, 0]
        every_worker_refuses(proxy, lambda: proxy.client.chat(token=token),
                             "request_quota_exceeded", [("requests", 2, LONG)], LONG,
                             upstream)


def test_default_tenant_counter_is_exact_across_four_workers(gateway_factory, upstream, keys,
                                                             tokens_for):
    """A default tenant's counter is as exact across workers as a configured tenant's once it
    exists: its first request creates it (shared data has no atomic create, so two first
    requests at once could lose a count, as src/host/shared.rs says), then 40 clients × 3
    requests on 4 workers get exactly the 24 admissions left of 25, and every worker
    refuses."""
    plans = {"free": {"requests": windows((25, LONG))}}
    config = gateway_config(keys, {"acme": tenant()}, plans=plans,
                            default_tenant={"providers": ["corp-idp"], "plan": "free"})
    proxy = gateway_factory(config, concurrency=4, name="default-tenant-exact")
    token = tokens_for("hooli")
    first = proxy.client.chat(token=token, body=chat_body())
    assert first.status == 200 and remaining(first, "requests") == 24, first
    before = proxy.worker_connections()
    responses = parallel_burst(proxy, token)
    statuses = [r.status for r in responses]
    assert statuses.count(200) == 24, \
        f"admitted {statuses.count(200)} of 120, 24 left: {outcomes(responses)}"
    assert sorted(remaining(r, "requests") for r in responses if r.status == 200) == \
        list(range(24))
    for resp in responses:
        if resp.status != 200:
            assert_quota_denied(resp, "request_quota_exceeded", [("requests", 25, LONG)],
                                refusing=LONG, upstream=upstream)
    after = proxy.worker_connections()
    served = [w for w in range(4) if after.get(w, 0) > before.get(w, 0)]
    assert len(served) >= 2, f"only workers {served} served the 120 requests"
    every_worker_refuses(proxy, lambda: proxy.client.chat(token=token, body=chat_body()),
                         "request_quota_exceeded", [("requests", 25, LONG)], LONG, upstream)


def test_tenant_limits_override_the_plan_field_by_field(gateway_factory, keys, tokens_for):
    plans = {"small": {"requests": windows((100, LONG)), "tokens": windows((50000, LONG))}}
    config = gateway_config(keys, {
        "acme": tenant("small", limits={"requests": windows((2, LONG))}),
        "globex": tenant("small"),
    }, plans=plans)
    proxy = gateway_factory(config, name="override")
    acme = tokens_for("acme")
    assert [remaining(proxy.client.chat(token=acme), "requests") for _ in range(2)] == [1, 0]
    denied = proxy.client.chat(token=acme)
    # The tenant's requests replace the plan's; the plan's tokens still hold.
    assert_quota_denied(denied, "request_quota_exceeded",
                        [("requests", 2, LONG), ("tokens", 50000, LONG)], refusing=LONG)
    plain = proxy.client.chat(token=tokens_for("globex"))
    assert plain.status == 200 and remaining(plain, "requests") == 99


def test_denied_requests_consume_nothing(gateway_factory, keys, tokens_for):
    """Requests refused for identity reasons, or by an exhausted window, do not move any of
    the tenant's counters (seen in the remaining headers of the next admitted request)."""
    config = gateway_config(keys, {
        "acme": tenant(limits={"requests": windows((5, LONG)),
                               "tokens": windows((10000, LONG))}),
    })
    proxy = gateway_factory(config, name="denied-free")
    acme = tokens_for("acme")
    first = probe(proxy, acme)
    assert remaining(first, "requests") == 4
    for _ in range(3):
        assert_denied(proxy.client.chat(token=acme, headers={"x-tenant-id": "globex"}),
                      403, "tenant_header_mismatch")
    expired = mint(keys.corp_rsa, claims("acme", ttl=-3600))
    assert_denied(proxy.client.chat(token=expired), 401, "token_expired")
    second = probe(proxy, acme)
    assert remaining(second, "requests") == 3
    assert remaining(second, "tokens") == remaining(first, "tokens")


def test_suspended_and_unknown_tenants_consume_nothing(lds_gateway, keys, tokens_for):
    """Denials of a suspended tenant and of a tenant nobody configured leave their counters
    alone: once a configuration update admits them, their first request has the whole
    window (shared data outlives the listener update)."""
    limited = {"requests": windows((5, LONG))}
    first = gateway_config(keys, {"acme": tenant(),
                                  "initech": tenant(status="suspended", limits=limited)})
    proxy, push = lds_gateway(first)
    for _ in range(4):
        assert_denied(proxy.client.chat(token=tokens_for("initech")), 403, "tenant_suspended")
        assert_denied(proxy.client.chat(token=tokens_for("hooli")), 403, "unknown_tenant")

    push("2", gateway_config(keys, {"acme": tenant(), "initech": tenant(limits=limited),
                                    "hooli": tenant(limits=limited)}))
    resp = wait_for(lambda: (lambda r: r if r.status == 200 else None)(
        proxy.client.chat(token=tokens_for("initech"))), timeout=15,
        message="the updated configuration to admit initech")
    assert remaining(resp, "requests") == 4
    hooli = proxy.client.chat(token=tokens_for("hooli"))
    assert hooli.status == 200, hooli
    assert remaining(hooli, "requests") == 4


# === Token windows ===

def test_sequential_requests_use_a_token_window_exactly(gateway_factory, upstream, keys,
                                                         tokens_for):
    """Limit 1000 tokens, each request really uses 300: requests 1-4 are admitted (the 4th
    crosses the limit), the 5th is refused, and each admission saw the settled usage. Then
    every worker refuses."""
    config = gateway_config(keys, {"acme": tenant(limits={"tokens": windows((1000, LONG))})})
    proxy = gateway_factory(config, name="tokens-seq")
    token = tokens_for("acme")
    lefts = []
    for _ in range(4):
        resp = proxy.client.chat(token=token, body=chat_body(max_tokens=50),
                                 headers=answer("openai-json", in_=200, out=100))
        assert resp.status == 200, resp
        assert remaining(resp, "requests") is None  # no request window configured
        lefts.append(remaining(resp, "tokens"))
    # Each admission saw the usage settled so far (the same own estimate every time).
    assert [a - b for a, b in zip(lefts, lefts[1:])] == [300, 300, 300]
    assert lefts[0] <= 1000
    denied = proxy.client.chat(token=token, body=chat_body(max_tokens=50),
                               headers=answer("openai-json", in_=200, out=100))
    result = assert_quota_denied(denied, "token_quota_exceeded", [("tokens", 1000, LONG)],
                                 refusing=LONG, upstream=upstream)
    assert result["ratelimit"][f"tokens-{LONG}s"]["r"] == 0
    every_worker_refuses(proxy, lambda: proxy.client.chat(
        token=token, body=chat_body(max_tokens=50), headers=answer("openai-json", in_=200,
                                                                   out=100)),
        "token_quota_exceeded", [("tokens", 1000, LONG)], LONG, upstream)


def test_token_window_with_default_reservation_and_choices(gateway_factory, upstream, keys,
                                                          tokens_for):
    """Without max_tokens the default reservation applies (usage.default_reservation_tokens),
    times n: a request reserving more than the limit is admitted while the window is empty,
    and while it is in flight every worker refuses the next one; once it settles, requests
    are admitted again."""
    config = gateway_config(keys, {"acme": tenant(limits={"tokens": windows((2000, LONG))})},
                            usage={"default_reservation_tokens": 700})
    proxy = gateway_factory(config, name="tokens-default")
    token = tokens_for("acme")
    held = proxy.client.open_stream(body=chat_body(n=3, stream=True), token=token,
                                    headers=answer("openai-sse", in_=4, out=2, hold_after=1))
    try:
        assert held.status == 200
        held.read_until(lambda body: b"data: " in body)
        # 2100 + body/4 reserved: nothing else fits while it is in flight, on any worker.
        every_worker_refuses(proxy, lambda: proxy.client.chat(token=token,
                                                              body=chat_body(max_tokens=1)),
                             "token_quota_exceeded", [("tokens", 2000, LONG)], LONG, upstream)
    finally:
        upstream.release(held.request_id)
    held.read_all()
    after = proxy.client.chat(token=token, body=chat_body(max_tokens=1))
    assert after.status == 200, after


def test_concurrent_requests_cannot_all_pile_into_a_token_window(gateway_factory, upstream,
                                                                  keys, tokens_for):
    """Limit 1000, 8 parallel requests that each reserve 400 + body/4 tokens and whose
    answers are held: at most 3 get through (admitted at 0, ~425 and ~850 reserved), the
    others are refused while those are in flight. Once they settle with their small real
    usage, new requests are admitted again.

    How many of the 3 get through depends on timing, and every count from 1 to 3 is right:
    a request's provisional reservation (content-length / 4 + 1024) fills the window alone
    until its body replaces it with the body's estimate, so a request whose headers arrive in
    that moment is refused."""
    config = gateway_config(keys, {"acme": tenant(limits={"tokens": windows((1000, LONG))})})
    proxy = gateway_factory(config, concurrency=4, name="tokens-parallel")
    token = tokens_for("acme")
    body = chat_body(max_tokens=400)
    assert 400 < reservation(body) < 500
    results = {}
    ids = [new_request_id() for _ in range(8)]

    def one(index):
        results[index] = proxy.client.chat(token=token, body=body, request_id=ids[index],
                                           headers=answer("openai-json", in_=10, out=5,
                                                          hold=1))

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(8)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(results) + len(upstream.holding(ids)) >= 8, timeout=15,
                 message=lambda: f"8 requests to be refused or held "
                                 f"({len(results)} answered, "
                                 f"{len(upstream.holding(ids))} held)")
        held = upstream.holding(ids)
        refused = list(results.values())
        assert 1 <= len(held) <= 3, \
            f"{len(held)} requests in flight at once (limit 1000, ~425 each)"
        for resp in refused:
            assert_quota_denied(resp, "token_quota_exceeded", [("tokens", 1000, LONG)],
                                refusing=LONG)
    finally:
        for request_id in ids:
            upstream.release(request_id)
        for thread in threads:
            thread.join(timeout=15)
    settled = [r for r in results.values() if r.status == 200]
    assert sorted(r.request_id for r in settled) == sorted(held)
    again = proxy.client.chat(token=token, body=body, headers=answer("openai-json"))
    assert again.status == 200, again


@pytest.mark.parametrize("hold_headers", [True, False], ids=["headers-held", "headers-forwarded"])
def test_requests_whose_bodies_come_late_cannot_all_pile_in(gateway_factory, upstream, keys,
                                                             tokens_for, hold_headers):
    """The same window, but the 8 clients send their headers first and their bodies only once
    the gateway has refused every request it will refuse from the headers (as a slow client or
    HTTP/2 does). The estimates are not known at that point, so the gateway must not admit
    them all: at most 3 requests of ~425 tokens may be in flight against a limit of 1000."""
    config = gateway_config(keys, {"acme": tenant(limits={"tokens": windows((1000, LONG))})})
    proxy = gateway_factory(config, name="tokens-late-bodies", hold_headers=hold_headers)
    token = tokens_for("acme")
    body = chat_body(max_tokens=400)
    pending = [proxy.client.begin(body=body, token=token,
                                  headers=answer("openai-json", in_=10, out=5, hold=1))
               for _ in range(8)]
    ids = [p.request_id for p in pending]
    try:
        # The provisional reservations (content-length / 4 + 1024 each) leave room for at
        # most 3 of the 8: the others are refused from their headers alone.
        wait_for(lambda: sum(p.answered() for p in pending) >= 5, timeout=10,
                 message="the gateway to refuse what it refuses from the headers")
        for p in pending:
            if not p.answered():
                p.send_body()
        # Each one now held by the upstream, or refused (at its headers or its body).
        wait_for(lambda: all(p.answered() or p.request_id in upstream.holding(ids)
                             for p in pending), timeout=10,
                 message=lambda: f"every request to be refused or held upstream "
                                 f"({len(upstream.holding(ids))} held)")
        held = upstream.holding(ids)
        assert 1 <= len(held) <= 3, \
            f"{len(held)} requests of ~425 tokens admitted at once against a limit of 1000"
    finally:
        for request_id in ids:
            upstream.release(request_id)
    responses = [p.finish() for p in pending]
    for resp in responses:
        if resp.status != 200:
            assert_quota_denied(resp, "token_quota_exceeded", [("tokens", 1000, LONG)],
                                refusing=LONG)


def test_answer_without_readable_usage_is_charged_its_reservation(gateway_factory, upstream,
                                                                 keys, tokens_for):
    """A 200 that is not JSON or SSE reports no usage the filter can read: the record says
    usage_source none with 0 tokens and no cost, and the quota keeps the reservation (an
    unreadable answer is never free)."""
    config = gateway_config(keys, {"acme": tenant(limits={"tokens": windows((100000, LONG))})},
                            pricing={"default": {"input_per_million": 1.0,
                                                 "output_per_million": 3.0}})
    proxy = gateway_factory(config, name="no-usage-text")
    token = tokens_for("acme")
    before = probe(proxy, token)
    body = chat_body(max_tokens=300, content="x" * 200)
    resp = proxy.client.chat(token=token, body=body, headers=answer("text"))
    assert resp.status == 200, resp
    assert upstream.answered(resp.request_id).completed
    record = filter_record(proxy, resp.request_id)
    assert record["decision"] == "allow"
    assert record["usage_source"] == "none", record
    assert (record["input_tokens"], record["output_tokens"]) == (0, 0), record
    assert "cost_usd" not in record, record
    assert record["model"] == "gpt-4o"
    after = probe(proxy, token)
    assert remaining(before, "tokens") - remaining(after, "tokens") == reservation(body)


def test_error_answer_without_usage_is_charged_nothing(gateway_factory, upstream, keys,
                                                       tokens_for):
    """A 500 without usage: the providers bill nothing for it, so neither does the quota; the
    request still counts against the request window."""
    config = gateway_config(keys, {"acme": tenant(limits={
        "tokens": windows((100000, LONG)), "requests": windows((1000, LONG))})})
    proxy = gateway_factory(config, name="no-usage-error")
    token = tokens_for("acme")
    before = probe(proxy, token)
    resp = proxy.client.chat(token=token, body=chat_body(max_tokens=300), headers=answer("error"))
    assert resp.status == 500, resp
    record = filter_record(proxy, resp.request_id)
    assert (record["decision"], record["usage_source"]) == ("allow", "none"), record
    after = probe(proxy, token)
    assert remaining(before, "tokens") == remaining(after, "tokens")
    assert remaining(before, "requests") - remaining(after, "requests") == 2


def test_a_stored_answer_fetched_again_is_not_charged(gateway_factory, upstream, keys,
                                                      tokens_for):
    """`GET /v1/responses/{id}` answers the usage of work charged when it was done: a bodyless
    GET or DELETE is not metered. Its record and access log carry no usage, and the tenant's
    tokens stay where they were (its request window still counts it), over HTTP/1.1 and
    HTTP/2. What has a body is metered whatever its method: a GET with a body, a GET whose
    HTTP/2 stream ends with an empty DATA frame, and a bodyless POST are charged what their
    answers report."""
    config = gateway_config(keys, {"acme": tenant(limits={
        "tokens": windows((100000, LONG)), "requests": windows((1000, LONG))})},
        pricing={"default": {"input_per_million": 1.0, "output_per_million": 3.0}})
    proxy = gateway_factory(config, name="stored-answers")
    token = tokens_for("acme")
    reported = answer("responses-json", in_=1000, out=50)
    created = proxy.client.post("/v1/responses", token=token, headers=reported,
                                body={"model": "gpt-4o", "input": "hi"})
    assert created.status == 200, created
    stored = f"/v1/responses/{created.json()['id']}"
    h2 = H2Client(proxy.listener_port)
    unmetered = [
        lambda: proxy.client.get(stored, token=token, headers=reported),
        lambda: h2.request("GET", stored, token=token, headers=reported),
        lambda: proxy.client.request("DELETE", stored, token=token, headers=reported),
    ]
    for send in unmetered:
        before = probe(proxy, token)
        resp = send()
        assert resp.status == 200, resp
        assert upstream.received(resp.request_id).method in ("GET", "DELETE")
        record = filter_record(proxy, resp.request_id)
        assert record["decision"] == "allow", record
        assert not {"input_tokens", "output_tokens", "usage_source", "cost_usd",
                    "model"} & record.keys(), record
        after = probe(proxy, token)
        assert remaining(before, "tokens") == remaining(after, "tokens")
        assert remaining(before, "requests") - remaining(after, "requests") == 2
    access = proxy.access_log_entry(resp.request_id)
    assert access["input_tokens"] in (None, "-"), access
    metered = [
        lambda: proxy.client.get(stored, token=token, headers=reported, body={"include": []}),
        lambda: h2.request("GET", stored, token=token, headers=reported, body=b""),
        lambda: proxy.client.post(f"{stored}/cancel", token=token, headers=reported),
    ]
    for send in metered:
        before = probe(proxy, token)
        resp = send()
        assert resp.status == 200, resp
        record = filter_record(proxy, resp.request_id)
        assert (record["usage_source"], record["input_tokens"], record["output_tokens"]) == \
            ("json", 1000, 50), record
        after = probe(proxy, token)
        assert remaining(before, "tokens") - remaining(after, "tokens") == 1050


def test_json_answer_larger_than_max_body_bytes_is_still_metered(gateway_factory, upstream,
                                                                keys, tokens_for):
    """usage.max_body_bytes bounds what the filter buffers of requests; answers are read as
    they pass in bounded memory, so a JSON answer of any size is metered by its usage."""
    config = gateway_config(keys, {"acme": tenant(limits={"tokens": windows((100000, LONG))})},
                            usage={"max_body_bytes": 1024})
    proxy = gateway_factory(config, name="big-json")
    token = tokens_for("acme")
    before = probe(proxy, token)
    resp = proxy.client.chat(token=token, body=chat_body(max_tokens=300),
                             headers=answer("big-json", pad=40000, in_=50, out=60))
    assert resp.status == 200 and len(resp.body) > 40000, resp
    record = filter_record(proxy, resp.request_id)
    assert record["usage_source"] == "json", record
    assert (record["input_tokens"], record["output_tokens"]) == (50, 60), record
    after = probe(proxy, token)
    assert remaining(before, "tokens") - remaining(after, "tokens") == 110


RESERVATION_CASES = [
    # (path, body, output tokens reserved besides one token per 4 body bytes)
    ("/v1/chat/completions", chat_body(max_tokens=300), 300),
    ("/v1/chat/completions", chat_body(max_completion_tokens=250), 250),
    ("/v1/chat/completions", chat_body(), 1024),  # usage.default_reservation_tokens
    ("/v1/chat/completions", chat_body(max_tokens=100, n=3), 300),
    ("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "hi", "max_tokens": 50,
                         "n": 2, "best_of": 4}, 200),
    ("/v1/responses", {"model": "gpt-4o", "input": "hi", "max_output_tokens": 120}, 120),
    ("/v1/messages", {"model": "claude-sonnet-4", "max_tokens": 64,
                      "messages": [{"role": "user", "content": "hi"}]}, 64),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "x" * 400}, 1024),
]


def test_reservation_is_body_bytes_over_4_plus_output_tokens_times_choices(
        gateway_factory, keys, tokens_for):
    """Each request is answered 200 without usage, so its tenant is charged exactly its
    reservation: the difference of x-ratelimit-remaining-tokens between a probe before and
    one after it."""
    tenants = {f"r{i}": tenant(limits={"tokens": windows((100000, LONG))})
               for i in range(len(RESERVATION_CASES))}
    proxy = gateway_factory(gateway_config(keys, tenants), name="reservations")
    for i, (path, body, output) in enumerate(RESERVATION_CASES):
        token = tokens_for(f"r{i}")
        before = probe(proxy, token)
        resp = proxy.client.post(path, token=token, body=body, headers=answer("text"))
        assert resp.status == 200, resp
        expected = -(-len(encoded(body)) // 4) + output
        after = probe(proxy, token)
        assert remaining(before, "tokens") - remaining(after, "tokens") == expected, \
            (path, body)


# === Monthly budget ===

PRICEY = {"models": {"gpt-pricey": {"input_per_million": 10.0, "output_per_million": 30.0}}}


def test_budget_admits_until_spent_and_then_refuses_until_the_month_ends(
        gateway_factory, upstream, keys, tokens_for):
    """Budget 0.001 USD; each request costs 20 × 10 + 10 × 30 = 500 micro-USD: two are
    admitted, the third is refused with budget_exceeded until the next calendar month (its
    Retry-After), on every worker."""
    config = gateway_config(keys, {
        "acme": tenant(limits={"monthly_budget_usd": 0.001,
                               "requests": windows((1000, LONG))}),
    }, pricing=PRICEY)
    proxy = gateway_factory(config, name="budget")
    token = tokens_for("acme")
    wait_clear_of_month_edge()
    for _ in range(2):
        resp = proxy.client.chat(token=token, body=chat_body(model="gpt-pricey", max_tokens=10),
                                 headers=answer("openai-json", in_=20, out=10))
        assert resp.status == 200, resp
        record = filter_record(proxy, resp.request_id)
        assert record["cost_usd"] == "0.0005", record
    denied = proxy.client.chat(token=token, body=chat_body(model="gpt-pricey", max_tokens=10))
    assert_quota_denied(denied, "budget_exceeded", [("requests", 1000, LONG)], refusing=None,
                        upstream=upstream)
    assert filter_record(proxy, denied.request_id)["reason"] == "budget_exceeded"
    every_worker_refuses(proxy, lambda: proxy.client.chat(
        token=token, body=chat_body(model="gpt-pricey", max_tokens=10)),
        "budget_exceeded", [("requests", 1000, LONG)], None, upstream)


def test_budget_counts_reservations_of_requests_in_flight(gateway_factory, upstream, keys,
                                                          tokens_for):
    """While a request whose priced estimate exceeds the budget is in flight, the next one is
    refused on every worker (spent + reserved >= budget); once it settles at its small real
    cost, requests are admitted again. A tenant with only a budget gets no RateLimit
    fields."""
    config = gateway_config(keys, {"acme": tenant(limits={"monthly_budget_usd": 0.001})},
                            pricing=PRICEY)
    proxy = gateway_factory(config, name="budget-reserved")
    token = tokens_for("acme")
    wait_clear_of_month_edge()
    # Estimate: (body/4) × 10 + 1000 × 30 micro-USD per million → over 0.03 USD.
    held = proxy.client.open_stream(
        token=token, body=chat_body(model="gpt-pricey", max_tokens=1000, stream=True),
        headers=answer("openai-sse", in_=1, out=1, hold_after=1))
    try:
        assert held.status == 200
        held.read_until(lambda body: b"data: " in body)
        every_worker_refuses(proxy, lambda: proxy.client.chat(
            token=token, body=chat_body(model="gpt-pricey", max_tokens=1)),
            "budget_exceeded", [], None, upstream)
    finally:
        upstream.release(held.request_id)
    held.read_all()
    record = filter_record(proxy, held.request_id)
    assert record["cost_usd"] == "0.00004", record  # 1 × 10 + 1 × 30 per million
    resp = proxy.client.chat(token=token, body=chat_body(model="gpt-pricey", max_tokens=1),
                             headers=answer("openai-json", in_=1, out=1))
    assert resp.status == 200, resp
    assert resp.header("x-ratelimit-remaining-requests") is None
    assert resp.header("x-ratelimit-remaining-tokens") is None
