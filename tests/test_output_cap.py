"""Zero-overshoot admission (``plans.<p>.output_cap: "clamp"``): the output limit of every
admitted request is held to what the tenant's token windows and budget still cover, so
parallel requests to an upstream that writes up to its limit never charge more than the
window or the budget, and come as close to it as ``min_output_tokens`` allows. Plans without
``output_cap`` keep the client's limit."""

import json
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from harness.answers import answer
from harness.h2client import H2Client
from harness.keys import claims, mint
from harness.limits import LONG, assert_quota_denied, wait_clear_of_month_edge
from harness.plugin_config import gateway_config, tenant, windows, without_isolation_tags
from harness.records import filter_record
from harness.workers import until_every_worker

MIN_OUTPUT = 16
PRICEY = {"models": {"gpt-pricey": {"input_per_million": 10.0, "output_per_million": 30.0}}}


def capped_plan(**limits) -> dict:
    return {"capped": {"output_cap": "clamp", "min_output_tokens": MIN_OUTPUT, **limits}}


def chat_body(max_tokens=1000, model="gpt-4o", **extra):
    body = {"model": model, "messages": [{"role": "user", "content": "write a long story"}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    body.update(extra)
    return body


def input_estimate(body) -> int:
    """The filter's input estimate for a JSON body the client sends: ⌈bytes / 4⌉."""
    return -(-len(json.dumps(body).encode()) // 4)


def honest_answer(kind, body):
    """An upstream that reports the filter's own input estimate and writes up to the limit it
    received: what it charges is then exactly what the filter reserved."""
    return answer(kind, in_=input_estimate(body), honour=1)


def in_parallel(proxy, token, body, count):
    """``count`` streaming chat requests at once, each to an honest upstream."""
    def one(_):
        return proxy.client.chat(token=token, body=body,
                                 headers=honest_answer("openai-sse", body))

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


@pytest.fixture
def token(keys):
    return mint(keys.corp_rsa, claims("acme", sub="acme-user"))


def sent_limit(upstream, request_id, member="max_tokens"):
    return json.loads(upstream.received(request_id).body).get(member)


def test_parallel_streams_never_charge_more_than_the_token_window(gateway_factory, upstream,
                                                                  keys, token):
    """50 parallel streaming requests asking for 1,000 output tokens each against a window of
    10,000: the upstream writes up to each limit it receives, and the tenant is charged at most
    10,000, missing it by less than one request's input estimate plus the minimum."""
    plans = capped_plan(tokens=windows((10_000, LONG)))
    config = gateway_config(keys, {"acme": tenant("capped")}, plans=plans)
    proxy = gateway_factory(config, concurrency=2, name="cap-tokens")
    body = chat_body(max_tokens=1000, stream=True)
    responses = in_parallel(proxy, token, body, 50)
    admitted = [r for r in responses if r.status == 200]
    refused = [r for r in responses if r.status != 200]
    assert len(admitted) >= 10 and refused, [r.status for r in responses]
    charged = 0
    for resp in admitted:
        record = filter_record(proxy, resp.request_id)
        charged += record["input_tokens"] + record["output_tokens"]
        limit = sent_limit(upstream, resp.request_id)
        assert limit <= 1000 and limit >= MIN_OUTPUT, limit
        if limit < 1000:
            assert resp.header("x-tenant-guard-output-cap") == str(limit)
            assert record["output_cap"] == limit
        else:
            assert resp.header("x-tenant-guard-output-cap") is None
            assert "output_cap" not in record
        assert record["output_tokens"] == limit  # the upstream wrote up to its limit
    for resp in refused:
        assert_quota_denied(resp, "token_quota_exceeded", [("tokens", 10_000, LONG)],
                            refusing=LONG, upstream=upstream, exhausted=False)
    assert charged <= 10_000
    assert charged > 10_000 - (input_estimate(body) + MIN_OUTPUT), charged
    # Nothing is left to one more request that needs more than what was not charged, on
    # either worker (the window is one, shared by both).
    until_every_worker(
        proxy,
        lambda: proxy.client.chat(token=token, body=body,
                                  headers=honest_answer("openai-sse", body)),
        lambda more: assert_quota_denied(more, "token_quota_exceeded",
                                         [("tokens", 10_000, LONG)], refusing=LONG,
                                         upstream=upstream, exhausted=False))


def test_parallel_requests_never_spend_more_than_the_budget(gateway_factory, upstream, keys,
                                                            token):
    """The same against a monthly budget of $0.40 at $10 / $30 per million tokens: 1,000
    output tokens cost $0.03, so about 13 fit. The records' costs sum to at most the budget,
    and miss it by less than one request's input plus the minimum at the output price."""
    plans = capped_plan(monthly_budget_usd=0.40)
    config = gateway_config(keys, {"acme": tenant("capped")}, plans=plans, pricing=PRICEY)
    proxy = gateway_factory(config, concurrency=2, name="cap-budget")
    wait_clear_of_month_edge()
    body = chat_body(max_tokens=1000, model="gpt-pricey", stream=True)
    responses = in_parallel(proxy, token, body, 50)
    admitted = [r for r in responses if r.status == 200]
    refused = [r for r in responses if r.status != 200]
    assert len(admitted) >= 12 and refused, [r.status for r in responses]
    spent = sum(Decimal(filter_record(proxy, r.request_id)["cost_usd"]) for r in admitted)
    for resp in refused:
        assert_quota_denied(resp, "budget_exceeded", [], refusing=None, upstream=upstream)
    assert spent <= Decimal("0.40"), spent
    smallest = (input_estimate(body) * 10 + MIN_OUTPUT * 30) / Decimal(1_000_000)
    assert spent > Decimal("0.40") - smallest - Decimal("0.000002"), spent
    # The budget is one, shared by both workers: each refuses the next request.
    until_every_worker(
        proxy,
        lambda: proxy.client.chat(token=token, body=body,
                                  headers=honest_answer("openai-sse", body)),
        lambda more: assert_quota_denied(more, "budget_exceeded", [], refusing=None,
                                         upstream=upstream))


@pytest.mark.parametrize("path,kind,member,body", [
    ("/v1/chat/completions", "openai-json", "max_completion_tokens",
     {"model": "gpt-4o", "max_completion_tokens": 5000, "messages": []}),
    ("/v1/completions", "openai-json", "max_tokens",
     {"model": "gpt-4o", "max_tokens": 5000, "prompt": "once upon a time"}),
    ("/v1/responses", "responses-json", "max_output_tokens",
     {"model": "gpt-4o", "max_output_tokens": 5000, "input": "once upon a time"}),
    ("/v1/messages", "anthropic-sse", "max_tokens",
     {"model": "claude-sonnet-4", "max_tokens": 5000, "stream": True,
      "messages": [{"role": "user", "content": "once upon a time"}]}),
], ids=["chat", "completions", "responses", "messages"])
def test_each_api_gets_its_own_limit_member_lowered(gateway_factory, upstream, keys, token,
                                                    path, kind, member, body):
    plans = capped_plan(tokens=windows((1000, LONG)))
    config = gateway_config(keys, {"acme": tenant("capped")}, plans=plans)
    proxy = gateway_factory(config, name=f"cap-{kind}")
    resp = proxy.client.post(path, token=token, body=body, headers=honest_answer(kind, body))
    assert resp.status == 200, resp
    cap = 1000 - input_estimate(body)
    assert resp.header("x-tenant-guard-output-cap") == str(cap)
    received = json.loads(upstream.received(resp.request_id).body)
    assert received[member] == cap
    # Everything else the client sent is what the upstream got (beside the prompt-cache
    # scoping of the default isolation).
    received.pop(member)
    if kind.startswith("anthropic"):
        assert received.pop("metadata")["user_id"].startswith("tg-")
    elif path != "/v1/completions":
        received = without_isolation_tags(received)
    assert received == {k: v for k, v in body.items() if k != member}
    record = filter_record(proxy, resp.request_id)
    assert record["output_cap"] == cap
    assert record["input_tokens"] + record["output_tokens"] == 1000


def test_a_body_without_a_limit_gets_the_default_reservation_as_its_limit(
        gateway_factory, upstream, keys, token):
    plans = capped_plan(tokens=windows((100_000, LONG)))
    config = gateway_config(keys, {"acme": tenant("capped")}, plans=plans,
                            usage={"default_reservation_tokens": 300})
    proxy = gateway_factory(config, name="cap-default")
    body = chat_body(max_tokens=None)
    resp = proxy.client.chat(token=token, body=body, headers=honest_answer("openai-json", body))
    assert resp.status == 200, resp
    assert sent_limit(upstream, resp.request_id, "max_completion_tokens") == 300
    assert resp.header("x-tenant-guard-output-cap") == "300"


def test_choices_share_the_room(gateway_factory, upstream, keys, token):
    plans = capped_plan(tokens=windows((1000, LONG)))
    config = gateway_config(keys, {"acme": tenant("capped")}, plans=plans)
    proxy = gateway_factory(config, name="cap-choices")
    body = chat_body(max_tokens=1000, n=2)
    resp = proxy.client.chat(token=token, body=body, headers=honest_answer("openai-json", body))
    assert resp.status == 200, resp
    per_choice = (1000 - input_estimate(body)) // 2
    assert sent_limit(upstream, resp.request_id) == per_choice
    record = filter_record(proxy, resp.request_id)
    assert record["output_tokens"] == 2 * per_choice
    assert record["input_tokens"] + record["output_tokens"] <= 1000


def test_under_the_minimum_the_request_is_refused_before_the_upstream(gateway_factory,
                                                                      upstream, keys, token):
    body = chat_body(max_tokens=1000)
    room = input_estimate(body) + MIN_OUTPUT - 1
    plans = capped_plan(tokens=windows((room, LONG)))
    config = gateway_config(keys, {"acme": tenant("capped")}, plans=plans)
    proxy = gateway_factory(config, name="cap-refused")
    resp = proxy.client.chat(token=token, body=body, headers=honest_answer("openai-json", body))
    answer_ = assert_quota_denied(resp, "token_quota_exceeded", [("tokens", room, LONG)],
                                  refusing=LONG, upstream=upstream, exhausted=False)
    # What is left is told as it is: less than the request needs, not nothing.
    assert answer_["ratelimit"][f"tokens-{LONG}s"]["r"] == room
    record = filter_record(proxy, resp.request_id)
    assert (record["decision"], record["reason"]) == ("deny", "token_quota_exceeded")
    # Nothing was kept: a request that fits is admitted at once.
    small = chat_body(max_tokens=MIN_OUTPUT - 1)
    resp = proxy.client.chat(token=token, body=small, headers=honest_answer("openai-json", small))
    assert resp.status == 200, resp
    assert resp.header("x-tenant-guard-output-cap") is None


def test_a_limit_named_twice_is_refused(gateway_factory, upstream, keys, token):
    plans = capped_plan(tokens=windows((100_000, LONG)))
    config = gateway_config(keys, {"acme": tenant("capped")}, plans=plans)
    proxy = gateway_factory(config, name="cap-twice")
    raw = b'{"model":"gpt-4o","max_tokens":100000,"max_tokens":10,"messages":[]}'
    resp = proxy.client.post("/v1/chat/completions", token=token, body=raw,
                             headers={"content-type": "application/json"})
    assert resp.status == 400, resp
    assert resp.json()["error"]["code"] == "invalid_body"
    assert upstream.find(resp.request_id) == []


def test_plans_without_output_cap_keep_the_clients_limit(gateway_factory, upstream, keys,
                                                         token):
    config = gateway_config(keys, {"acme": tenant(limits={"tokens": windows((1000, LONG))})})
    proxy = gateway_factory(config, name="cap-off")
    body = chat_body(max_tokens=5000)
    resp = proxy.client.chat(token=token, body=body, headers=answer("openai-json"))
    assert resp.status == 200, resp
    assert resp.header("x-tenant-guard-output-cap") is None
    received = json.loads(upstream.received(resp.request_id).body)
    assert without_isolation_tags(received) == body
    assert "output_cap" not in filter_record(proxy, resp.request_id)


@pytest.mark.parametrize("hold_headers", [True, False], ids=["headers-held", "headers-forwarded"])
def test_a_capped_body_over_http2_with_trailers_arrives_whole(gateway_factory, upstream, keys,
                                                              token, hold_headers):
    """Over HTTP/2, in pieces and ended by trailers, in both header modes: the upstream gets
    the lowered limit in a body whose length is its own."""
    plans = capped_plan(tokens=windows((1000, LONG)))
    config = gateway_config(keys, {"acme": tenant("capped")}, plans=plans)
    proxy = gateway_factory(config, name=f"cap-h2-{hold_headers}", hold_headers=hold_headers)
    proxy.learn_header_mode(token, "held" if hold_headers else "forwarded")
    body = chat_body(max_tokens=5000)
    resp = H2Client(proxy.listener_port).request(
        body=body, token=token, headers=list(honest_answer("openai-json", body).items()),
        trailers=[("x-trailer", "1")], pieces=3)
    assert resp.status == 200, resp
    # Learning the header mode took a few tokens of the window.
    cap = int(resp.header("x-tenant-guard-output-cap"))
    assert 900 < cap < 1000 - input_estimate(body)
    received = upstream.received(resp.request_id)
    assert json.loads(received.body)["max_tokens"] == cap
    length = received.header_values("content-length")
    assert length in ([], [str(len(received.body))]), length
