"""Quota and records hold whatever order a stream's body, response and disconnect come in
(issue: no request can leak quota or lose its record). Every request is settled once by the
charging rule (docs/quotas.md): answered with usage → the usage, even before the request
body ended; answered >= 400 without usage → nothing; answered 2xx without usage → the
reservation; never answered → nothing. After each, `x-ratelimit-remaining-tokens` of the
tenant's next request shows exactly that, and the access log has one line per request.

Both of Envoy's header modes run: with `allow_on_headers_stop_iteration` (headers held while
the body is read, the default of every config in envoy/) and without it (older Envoys)."""

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.answers import answer, delivered_tokens
from harness.h2client import H2Client
from harness.keys import claims, mint
from harness.limits import remaining
from harness.plugin_config import gateway_config, tenant, windows
from harness.records import filter_record, filter_records
from harness.wait import wait_for

# Windows far longer than any test: nothing resets mid-test.
DECADE = 10 * 365 * 86400
TOKENS = 10_000_000
REQUESTS = 1_000_000
MODES = [pytest.param(True, id="headers-held"), pytest.param(False, id="headers-forwarded")]


def chat(content="x" * 2000, **extra):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}
    body.update(extra)
    return body


def encoded(body) -> bytes:
    return json.dumps(body).encode()


@pytest.fixture
def gateway(gateway_factory, keys):
    """``gateway(hold_headers, **options)`` → (proxy, token) with one tenant on long windows."""
    def make(hold_headers=True, concurrency=2, **options):
        config = gateway_config(keys, {"acme": tenant(limits={
            "requests": windows((REQUESTS, DECADE)),
            "tokens": windows((TOKENS, DECADE))})})
        proxy = gateway_factory(config, hold_headers=hold_headers, concurrency=concurrency,
                                name=f"lifecycle-{'held' if hold_headers else 'fwd'}",
                                **options)
        token = mint(keys.corp_rsa, claims("acme", sub="alice"))
        proxy.learn_header_mode(token, "held" if hold_headers else "forwarded")
        return proxy, token
    return make


def counters(proxy, token) -> tuple:
    """(tokens left, requests left) before a probe that is itself charged nothing."""
    resp = proxy.client.chat(token=token, body={"model": "gpt-4o", "max_tokens": 1,
                                                "messages": []},
                             headers=answer("openai-json", in_=0, out=0))
    assert resp.status == 200, resp
    return remaining(resp, "tokens"), remaining(resp, "requests") + 1


def assert_one_record_each(proxy, request_ids):
    """One access-log line and one Envoy-log record per request, each with a decision."""
    for request_id in request_ids:
        line = proxy.access_log_entry(request_id, timeout=20)
        assert line["decision"] == "allow", line
        filter_record(proxy, request_id)
    lines = proxy.access_log_lines()
    for request_id in request_ids:
        mine = [line for line in lines if line.get("x_request_id") == request_id]
        assert len(mine) == 1, f"{len(mine)} access-log lines for {request_id}"


# === An upstream that answers before it has read the request body ===

def answered_early(proxy, token, hold_headers, body, spec):
    """A request the upstream answers without reading its body. With headers forwarded, the
    client holds its body back until that answer is in, so the answer really comes before the
    filter saw the body end; with headers held, the upstream can only answer once the filter
    let the request go (the body was complete then)."""
    if hold_headers:
        return proxy.client.chat(token=token, body=body, headers=answer(*spec[0], **spec[1]))
    pending = proxy.client.begin(body=body, token=token, headers=answer(*spec[0], **spec[1]))
    wait_for(pending.answered, timeout=10, message="the upstream's early answer")
    return pending.finish()


@pytest.mark.parametrize("hold_headers", MODES)
def test_early_error_answers_cost_no_tokens(gateway, upstream, hold_headers):
    """Four 400s sent before the upstream read 2 KB bodies: no tokens, four requests."""
    proxy, token = gateway(hold_headers)
    tokens_before, requests_before = counters(proxy, token)
    ids = []
    for _ in range(4):
        resp = answered_early(proxy, token, hold_headers, chat(),
                              (("error",), {"status": 400, "early": 1}))
        assert resp.status == 400, resp
        ids.append(resp.request_id)
    tokens_after, requests_after = counters(proxy, token)
    assert tokens_after == tokens_before, "an early error answer cost tokens"
    assert requests_before - requests_after == 4 + 1
    assert_one_record_each(proxy, ids)
    for request_id in ids:
        record = filter_record(proxy, request_id)
        assert (record["status"], record["usage_source"]) == (400, "none"), record


@pytest.mark.parametrize("hold_headers", MODES)
def test_early_answer_with_usage_is_charged_exactly_that_usage(gateway, upstream,
                                                               hold_headers):
    proxy, token = gateway(hold_headers)
    tokens_before, _ = counters(proxy, token)
    resp = answered_early(proxy, token, hold_headers, chat(),
                          (("openai-json",), {"in_": 50, "out": 20, "early": 1}))
    assert resp.status == 200, resp
    tokens_after, _ = counters(proxy, token)
    assert tokens_before - tokens_after == 70
    record = filter_record(proxy, resp.request_id)
    assert (record["input_tokens"], record["output_tokens"], record["usage_source"]) == \
        (50, 20, "json"), record
    assert record["cost_usd"] is not None if "cost_usd" in record else True


# === A client that leaves ===

@pytest.mark.parametrize("hold_headers", MODES)
def test_clients_leaving_mid_upload_cost_nothing(gateway, upstream, hold_headers):
    """Six clients send their headers and half their body, then reset the connection: no
    tokens are charged, every one leaves one record, and with headers held the upstream never
    heard of them."""
    proxy, token = gateway(hold_headers)
    tokens_before, _ = counters(proxy, token)
    body = chat()
    ids = []
    received = "http.ingress.downstream_cx_rx_bytes_total"
    for _ in range(6):
        before = proxy.stat(received)
        pending = proxy.client.begin(body=body, token=token, headers=answer("openai-json"))
        pending.send_part(len(encoded(body)) // 2)
        # The reset comes after Envoy has read the headers and the half body.
        wait_for(lambda: proxy.stat(received) >= before + pending.bytes_sent, timeout=10,
                 message=lambda: f"Envoy to read {pending.bytes_sent} bytes "
                                 f"({proxy.stat(received) - before} read)")
        pending.abort()
        ids.append(pending.request_id)
    assert_one_record_each(proxy, ids)
    tokens_after, _ = counters(proxy, token)
    assert tokens_after == tokens_before, "an aborted upload cost tokens"
    for request_id in ids:
        assert upstream.find(request_id) == [], "a cut body reached the upstream whole"
        if hold_headers:
            assert upstream.started(request_id) == [], "the upstream saw a held request"


def test_clients_leaving_mid_upload_over_http2_cost_nothing(gateway, upstream):
    proxy, token = gateway(True)
    tokens_before, _ = counters(proxy, token)
    client = H2Client(proxy.listener_port)
    ids = []
    for _ in range(3):
        resp = client.request(body=chat(), token=token, pieces=4, abort_after=2,
                              headers=[("x-test-answer", "openai-json")])
        ids.append(resp.request_id)
    assert_one_record_each(proxy, ids)
    tokens_after, _ = counters(proxy, token)
    assert tokens_after == tokens_before
    for request_id in ids:
        assert upstream.started(request_id) == []


def input_estimate(body) -> int:
    """The filter's input estimate: one token per 4 bytes of the body the client sent."""
    return -(-len(encoded(body)) // 4)


STREAMING = chat(content="hi", stream=True)


@pytest.mark.parametrize("hold_headers", MODES)
def test_a_client_leaving_mid_response_is_charged_what_was_delivered(gateway, upstream,
                                                                     hold_headers):
    """An OpenAI stream whose client leaves after 4 events (before the usage chunk): the
    input estimate plus the text delivered, marked `estimate`."""
    proxy, token = gateway(hold_headers)
    tokens_before, _ = counters(proxy, token)
    stream = proxy.client.open_stream(token=token, body=STREAMING,
                                      headers=answer("openai-sse", in_=40, out=30, chunks=12,
                                                     hold_after=5))
    answered = upstream.leave_when_held(stream)
    record = filter_record(proxy, stream.request_id)
    delivered = delivered_tokens(bytes(answered.body))
    expected = input_estimate(STREAMING) + delivered
    assert record["usage_source"] == "estimate", record
    assert record["output_tokens"] == delivered, record
    tokens_after, _ = counters(proxy, token)
    assert tokens_before - tokens_after == expected


@pytest.mark.parametrize("hold_headers", MODES)
def test_an_upstream_cutting_a_stream_charges_what_was_delivered(gateway, upstream,
                                                                 hold_headers):
    proxy, token = gateway(hold_headers)
    tokens_before, _ = counters(proxy, token)
    stream = proxy.client.open_stream(token=token, body=STREAMING,
                                      headers=answer("openai-sse", in_=40, out=30, chunks=12,
                                                     cut_after=6))
    stream.read_all()
    answered = upstream.wait_finished(stream.request_id)
    assert answered.cut
    record = filter_record(proxy, stream.request_id)
    delivered = delivered_tokens(bytes(answered.body))
    assert (record["usage_source"], record["output_tokens"]) == ("estimate", delivered), record
    tokens_after, _ = counters(proxy, token)
    assert tokens_before - tokens_after == input_estimate(STREAMING) + \
        delivered


# === Envoy's own timeouts ===

IDLE = {"stream_idle_timeout": "1s"}


@pytest.mark.parametrize("hold_headers", MODES)
def test_a_stream_idle_timeout_before_the_answer_costs_nothing(gateway, upstream,
                                                               hold_headers):
    """The upstream never answers; Envoy's stream idle timeout ends the request with its own
    error reply: no tokens, one record."""
    proxy, token = gateway(hold_headers, hcm_options=IDLE)
    tokens_before, _ = counters(proxy, token)
    try:
        resp = proxy.client.chat(token=token, body=chat(), headers=answer("openai-json",
                                                                          hold=1))
        assert resp.status in (408, 504), resp
    finally:
        upstream.release()
        upstream.rearm()
    tokens_after, _ = counters(proxy, token)
    assert tokens_after == tokens_before
    assert_one_record_each(proxy, [resp.request_id])


@pytest.mark.parametrize("hold_headers", MODES)
def test_a_stream_idle_timeout_mid_answer_charges_what_was_delivered(gateway, upstream,
                                                                     hold_headers):
    proxy, token = gateway(hold_headers, hcm_options=IDLE)
    tokens_before, _ = counters(proxy, token)
    try:
        stream = proxy.client.open_stream(token=token, body=STREAMING,
                                          headers=answer("openai-sse", in_=40, out=30,
                                                         chunks=12, hold_after=5))
        stream.read_all()
    finally:
        upstream.release()
        upstream.rearm()
    answered = upstream.wait_finished(stream.request_id)
    record = filter_record(proxy, stream.request_id)
    delivered = delivered_tokens(bytes(answered.body[:len(stream.body)]))
    assert (record["usage_source"], record["output_tokens"]) == ("estimate", delivered), record
    tokens_after, _ = counters(proxy, token)
    assert tokens_before - tokens_after == input_estimate(STREAMING) + \
        delivered


# === Many of them at once ===

def test_a_mixed_run_ends_at_exactly_the_usage_the_upstream_reported(gateway, upstream):
    """A few hundred requests over four workers, both protocols: answers with usage (JSON and
    SSE), early answers (errors and with usage), server errors, uploads cut short. The window
    ends exactly at the sum of the usage the upstream reported, and every request has one
    record."""
    proxy, token = gateway(True, concurrency=4)
    tokens_before, _ = counters(proxy, token)
    rng = random.Random(8)
    h2 = H2Client(proxy.listener_port)
    lock = threading.Lock()
    reported = []
    ids = []

    def one(i):
        kind = rng.choice(["json", "sse", "early-error", "early-usage", "error", "abort",
                           "h2-trailers"])
        inp, out = rng.randrange(1, 500), rng.randrange(0, 300)
        usage = 0
        if kind == "json":
            resp = proxy.client.chat(token=token, body=chat(content="m" * rng.randrange(900)),
                                     headers=answer("openai-json", in_=inp, out=out))
            assert resp.status == 200, resp
            usage, request_id = inp + out, resp.request_id
        elif kind == "sse":
            resp = proxy.client.chat(token=token, body=chat(content="s", stream=True),
                                     headers=answer("openai-sse", in_=inp, out=out))
            assert resp.status == 200, resp
            usage, request_id = inp + out, resp.request_id
        elif kind == "early-error":
            resp = proxy.client.chat(token=token, body=chat(),
                                     headers=answer("error", status=400, early=1))
            assert resp.status == 400, resp
            request_id = resp.request_id
        elif kind == "early-usage":
            resp = proxy.client.chat(token=token, body=chat(),
                                     headers=answer("openai-json", in_=inp, out=out, early=1))
            assert resp.status == 200, resp
            usage, request_id = inp + out, resp.request_id
        elif kind == "error":
            resp = proxy.client.chat(token=token, body=chat(), headers=answer("error"))
            assert resp.status == 500, resp
            request_id = resp.request_id
        elif kind == "abort":
            body = chat()
            pending = proxy.client.begin(body=body, token=token, headers=answer("openai-json"))
            pending.send_part(len(encoded(body)) // 3)
            pending.abort()
            request_id = pending.request_id
        else:
            resp = h2.request(body=chat(content="t"), token=token, trailers=[("x-end", "1")],
                              pieces=2, headers=[("x-test-answer",
                                                  f"openai-json;in={inp};out={out}")])
            assert resp.status == 200, resp
            usage, request_id = inp + out, resp.request_id
        with lock:
            reported.append(usage)
            ids.append(request_id)

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(one, range(300)))
    assert_one_record_each(proxy, ids)
    tokens_after, _ = counters(proxy, token)
    assert tokens_before - tokens_after == sum(reported)
    assert len(set(proxy.worker_connections())) == 4, "the traffic did not reach every worker"


# === Default tenants, from their first request ===

def test_default_tenants_are_counted_exactly_from_their_first_request(gateway_factory, keys):
    """Forty first requests of a tenant admitted through default_tenant arrive on four workers
    at once: exactly its limit of 10 is admitted (its counters live in a slot claimed by
    compare-and-swap, not in a key two workers could both create)."""
    config = gateway_config(keys, {}, default_tenant={"providers": ["corp-idp"],
                                                      "plan": "small"},
                            plans={"small": {"requests": windows((10, DECADE))}})
    proxy = gateway_factory(config, concurrency=4, name="default-first")
    tokens = {name: mint(keys.corp_rsa, claims(name)) for name in ("newco", "otherco")}
    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(lambda _: proxy.client.chat(token=tokens["newco"]).status,
                                 range(40)))
    assert statuses.count(200) == 10, sorted(statuses)
    assert statuses.count(429) == 30
    # Another default tenant has its own counters.
    assert proxy.client.chat(token=tokens["otherco"]).status == 200
    assert len([w for w, n in proxy.worker_connections().items() if n > 0]) >= 2
