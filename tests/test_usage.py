"""Usage metering: what the upstream reports becomes the request's record (Envoy log line and
access-log filter state), its cost, and the tenant's counters; OpenAI streams are asked for
their usage; streams pass through untouched."""

import gzip
import json
from decimal import ROUND_CEILING, Decimal

import pytest

from harness import bootstrap as bs
from harness.answers import answer, delivered_tokens
from harness.envoy_process import Envoy
from harness.keys import claims, mint
from harness.plugin_config import gateway_config, tenant
from harness.records import filter_record
from harness.wait import wait_for

PRICES = {
    "gpt-4o": (Decimal("2.5"), Decimal("10")),
    "claude-sonnet-4": (Decimal("3"), Decimal("15")),
    "text-embedding-3-small": (Decimal("0.02"), Decimal("0")),
}
DEFAULT_PRICE = (Decimal("1"), Decimal("3"))
PRICING = {
    "models": {m: {"input_per_million": float(i), "output_per_million": float(o)}
               for m, (i, o) in PRICES.items()},
    "default": {"input_per_million": float(DEFAULT_PRICE[0]),
                "output_per_million": float(DEFAULT_PRICE[1])},
}
MILLION = Decimal(1_000_000)


def cost(model, input_tokens, output_tokens, prices=PRICES, default=DEFAULT_PRICE):
    price = prices.get(model, default)
    if price is None:
        return None
    return input_tokens * price[0] / MILLION + output_tokens * price[1] / MILLION


@pytest.fixture(scope="module")
def usage_envoy(tmp_path_factory, wasm_path, upstream, jwks_server, keys):
    """One Envoy for the metering tests: acme without limits, the pricing above. Prompt caches
    are left alone here, so the bodies the upstream receives differ from what the clients sent
    only by what metering asks for (test_provider_isolation.py covers the scoping)."""
    config = gateway_config(keys, {"acme": tenant(), "globex": tenant()}, pricing=PRICING,
                            isolation={"prompt_cache": "off"})
    with Envoy(tmp_path_factory.mktemp("usage-envoy"),
               bs.gateway(upstream.port, jwks_server.port,
                          [bs.wasm_filter(wasm_path, config)])) as proxy:
        yield proxy


@pytest.fixture
def acme(keys):
    return mint(keys.corp_rsa, claims("acme"))


def chat(model="gpt-4o", **extra):
    return dict({"model": model, "messages": [{"role": "user", "content": "hello there"}]},
                **extra)


def anthropic(model="claude-sonnet-4", **extra):
    return dict({"model": model, "max_tokens": 200,
                 "messages": [{"role": "user", "content": "hello there"}]}, **extra)


# === Asking OpenAI streams for their usage ===

def test_openai_stream_gets_include_usage_added_and_nothing_else(usage_envoy, upstream, acme):
    body = chat(stream=True, temperature=0.2, user="u-1")
    resp = usage_envoy.client.chat(token=acme, body=body, headers=answer("openai-sse"))
    assert resp.status == 200, resp
    seen = upstream.received(resp.request_id)
    sent = json.loads(seen.body)
    assert sent.pop("stream_options") == {"include_usage": True}
    assert sent == body
    # The body's length changed: the upstream learns it from the framing.
    length = seen.header("content-length")
    assert length is None or int(length) == len(seen.body)
    # ...so the upstream, like the real API, sent its usage chunk, and the record has it.
    assert upstream.answered(resp.request_id).reported == (12, 7)
    record = filter_record(usage_envoy, resp.request_id)
    assert (record["input_tokens"], record["output_tokens"], record["usage_source"]) == \
        (12, 7, "sse")


def _inserted(original: bytes, received: bytes) -> bytes:
    """``received`` must be ``original`` with one run of bytes inserted: returns that run."""
    prefix = 0
    while prefix < len(original) and original[prefix] == received[prefix]:
        prefix += 1
    suffix = 0
    while (suffix < len(original) - prefix
           and original[-1 - suffix] == received[-1 - suffix]):
        suffix += 1
    assert prefix + suffix == len(original), \
        f"more than an insertion changed the body:\n{original!r}\n{received!r}"
    return received[prefix:len(received) - suffix]


@pytest.mark.parametrize("raw,options", [
    (b'{\n  "model" : "gpt-4o",\n  "stream":true,\n  "temperature": 1.0e0,\n'
     b'  "messages": [{"role": "user", "content": "caf\\u00e9 \xe2\x98\x83"}]\n}',
     {"include_usage": True}),
    (b'{"stream": true, "model": "gpt-4o", "stream_options": {"include_obfuscation": false},'
     b' "messages": []}', {"include_obfuscation": False, "include_usage": True}),
    (b'{"model": "gpt-4o", "stream": true, "stream_options": null, "messages": []}',
     {"include_usage": True}),
], ids=["odd-formatting", "other-stream-option", "null-options"])
def test_include_usage_is_inserted_without_touching_other_bytes(usage_envoy, upstream, acme,
                                                                raw, options):
    resp = usage_envoy.client.chat(token=acme, body=raw,
                                   headers={"content-type": "application/json",
                                            **answer("openai-sse")})
    assert resp.status == 200, resp
    received = upstream.received(resp.request_id).body
    sent = json.loads(received)
    assert sent["stream_options"] == options
    original = json.loads(raw)
    assert {k: v for k, v in sent.items() if k != "stream_options"} == \
        {k: v for k, v in original.items() if k != "stream_options"}
    if "stream_options" not in original:
        inserted = _inserted(raw, received)
        assert json.loads(b"{" + inserted.strip().strip(b",") + b"}") == \
            {"stream_options": {"include_usage": True}}, inserted
    elif isinstance(original["stream_options"], dict):
        inserted = _inserted(raw, received)
        assert json.loads(b"{" + inserted.strip().strip(b",") + b"}") == \
            {"include_usage": True}, inserted


@pytest.mark.parametrize("path,body,kind", [
    ("/v1/chat/completions", chat(stream=True, stream_options={"include_usage": True}),
     "openai-sse"),
    ("/v1/chat/completions", chat(), "openai-json"),
    ("/v1/chat/completions", chat(stream=False), "openai-json"),
    ("/v1/messages", anthropic(stream=True), "anthropic-sse"),
    ("/v1/responses", {"model": "gpt-4o", "input": "hi", "stream": True}, "responses-sse"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"}, "embeddings-json"),
], ids=["already-asked", "not-streaming", "stream-false", "anthropic", "responses",
        "embeddings"])
def test_body_is_forwarded_byte_for_byte_when_there_is_nothing_to_ask(usage_envoy, upstream,
                                                                       acme, path, body, kind):
    raw = json.dumps(body, indent=1).encode()  # unusual spacing survives too
    resp = usage_envoy.client.post(path, token=acme, body=raw,
                                   headers=dict(answer(kind),
                                                **{"content-type": "application/json"}))
    assert resp.status == 200, resp
    assert upstream.received(resp.request_id).body == raw


def test_stream_usage_is_not_added_when_the_gateway_is_told_not_to(gateway_factory, upstream,
                                                                   keys):
    config = gateway_config(keys, {"acme": tenant()}, pricing=PRICING,
                            usage={"inject_stream_usage": False},
                            isolation={"prompt_cache": "off"})
    proxy = gateway_factory(config, name="no-inject")
    raw = json.dumps(chat(stream=True)).encode()
    resp = proxy.client.chat(token=mint(keys.corp_rsa, claims("acme")), body=raw,
                             headers={"content-type": "application/json",
                                      **answer("openai-sse")})
    assert resp.status == 200
    assert upstream.received(resp.request_id).body == raw
    # Like the real API, the upstream then reports no usage: nothing to meter.
    record = filter_record(proxy, resp.request_id)
    assert record["usage_source"] == "none", record
    assert (record["input_tokens"], record["output_tokens"]) == (0, 0)


# === Streams pass through ===

@pytest.mark.parametrize("kind,path,body", [
    ("openai-sse", "/v1/chat/completions", chat(stream=True)),
    ("anthropic-sse", "/v1/messages", anthropic(stream=True)),
    ("responses-sse", "/v1/responses", {"model": "gpt-4o", "input": "hi", "stream": True}),
])
def test_sse_reaches_the_client_byte_for_byte(usage_envoy, upstream, acme, kind, path, body):
    """Events written in 3 pieces each, with pauses, so that the filter sees events split
    across body chunks: the client gets exactly the bytes the upstream sent, and the usage
    is still read."""
    resp = usage_envoy.client.post(path, token=acme, body=body,
                                   headers=answer(kind, chunks=6, split=3, gap_ms=3,
                                                  in_=31, out=17))
    assert resp.status == 200
    answered = upstream.answered(resp.request_id)
    assert answered.completed
    assert resp.body == bytes(answered.body)
    assert resp.header("content-type").startswith("text/event-stream")
    record = filter_record(usage_envoy, resp.request_id)
    assert (record["input_tokens"], record["output_tokens"]) == (31, 17), record
    assert record["usage_source"] == "sse"


@pytest.mark.parametrize("kind,path,body,options", [
    ("big-json", "/v1/chat/completions", chat(), {"pad": 20000}),
    ("anthropic-json", "/v1/messages", anthropic(), {}),
    ("responses-json", "/v1/responses", {"model": "gpt-4o", "input": "hi"}, {}),
])
def test_whole_json_answer_is_read_across_body_chunks(usage_envoy, upstream, acme, kind, path,
                                                      body, options):
    """A JSON answer written in 9 pieces, with pauses, arrives at the filter in several body
    chunks (a usage object may be cut anywhere): the usage is still read, and the client gets
    the body unchanged."""
    resp = usage_envoy.client.post(path, token=acme, body=body,
                                   headers=answer(kind, split=9, gap_ms=3, in_=77, out=66,
                                                  **options))
    assert resp.status == 200, resp
    assert resp.body == bytes(upstream.answered(resp.request_id).body)
    record = filter_record(usage_envoy, resp.request_id)
    assert (record["input_tokens"], record["output_tokens"], record["usage_source"]) == \
        (77, 66, "json"), record


# === Records and billing truth ===

def _send_mix(proxy, upstream, token):
    """Sends one request of every kind; returns [(request id, model the record should name,
    expect the access log to carry usage)]."""
    sent = []

    def post(path, body, kind, record_model, **options):
        resp = proxy.client.post(path, token=token, body=body, headers=answer(kind, **options))
        sent.append((resp.request_id, record_model, True))
        return resp

    assert post("/v1/chat/completions", chat(), "openai-json", "gpt-4o",
                in_=120, out=30, cached=100).status == 200
    assert post("/v1/chat/completions", chat(stream=True), "openai-sse", "gpt-4o",
                in_=57, out=23).status == 200
    assert post("/v1/messages", anthropic(), "anthropic-json", "claude-sonnet-4",
                in_=25, out=15, cached=5).status == 200
    assert post("/v1/messages", anthropic(stream=True), "anthropic-sse", "claude-sonnet-4",
                in_=40, out=60).status == 200
    assert post("/v1/responses", {"model": "gpt-4o", "input": "hi"}, "responses-json",
                "gpt-4o", in_=33, out=11).status == 200
    assert post("/v1/responses", {"model": "gpt-4o", "input": "hi", "stream": True},
                "responses-sse", "gpt-4o", in_=44, out=12).status == 200
    assert post("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"},
                "embeddings-json", "text-embedding-3-small", in_=8).status == 200
    # Priced by the model the upstream names, whatever the client asked for.
    assert post("/v1/chat/completions", chat(), "openai-json", "gpt-4o-2024-08-06",
                model="gpt-4o-2024-08-06", in_=7, out=3).status == 200
    # No model in the request: the response's model is priced.
    assert post("/v1/chat/completions", {"messages": []}, "openai-json", "claude-sonnet-4",
                model="claude-sonnet-4", in_=9, out=4).status == 200
    # A model without its own price: the default price.
    assert post("/v1/chat/completions", chat("mystery-model"), "openai-json",
                "mystery-model", in_=10, out=10).status == 200
    # A failed request: no usage, no cost.
    assert post("/v1/chat/completions", chat(), "error", "gpt-4o").status == 500

    # The client gives up mid-stream, after message_start and one delta were delivered.
    stream = proxy.client.open_stream(path="/v1/messages", token=token,
                                      body=anthropic(stream=True),
                                      headers=answer("anthropic-sse", in_=70, out=90,
                                                     hold_after=4))
    answered = wait_for(lambda: (lambda a: a if a and a.holding else None)(
        upstream.find(stream.request_id)[0].answer if upstream.find(stream.request_id)
        else None), message="the stream to be held after 4 events")
    stream.read_until(lambda body: body == bytes(answered.body))
    stream.close()
    upstream.wait_finished(stream.request_id)
    sent.append((stream.request_id, "claude-sonnet-4", False))

    # The upstream cuts a stream after message_start and the block start.
    cut = proxy.client.open_stream(path="/v1/messages", token=token,
                                   body=anthropic(stream=True),
                                   headers=answer("anthropic-sse", in_=80, out=95,
                                                  cut_after=2))
    cut.read_until(lambda _: cut.ended)
    sent.append((cut.request_id, "claude-sonnet-4", False))
    return sent


def test_records_sum_to_what_the_upstream_reported(usage_envoy, upstream, acme):
    """For a mix of JSON, SSE (OpenAI and Anthropic), Responses, embeddings, a failed and two
    aborted requests, every record carries the usage the upstream reported in what it
    delivered (or, for a stream cut after it delivered more text than its partial usage says,
    that text's estimate, marked `estimate`), the sums match, and the sum of cost_usd is the
    exact expected cost."""
    before = usage_envoy.stats(r"^wasmcustom\.tenant_guard\.tenant\.acme\.")
    sent = _send_mix(usage_envoy, upstream, acme)
    expected_cost = Decimal(0)
    totals = {"in": 0, "out": 0, "record_in": 0, "record_out": 0}
    recorded_cost = Decimal(0)
    micro_usd = 0
    for request_id, model, _ in sent:
        answered = upstream.wait_finished(request_id)
        record = filter_record(usage_envoy, request_id)
        assert record["decision"] == "allow", record
        assert record["model"] == model, record
        reported = answered.reported or (0, 0)
        got = (record["input_tokens"], record["output_tokens"])
        if record["usage_source"] == "estimate":
            # Cut before the final usage: at least what the stream delivered, and marked so.
            delivered = delivered_tokens(bytes(answered.body))
            assert answered.stream and delivered > reported[1], (answered.kind, record)
            assert got == (reported[0], delivered), (answered.kind, record)
        elif answered.reported is None:
            assert got == (0, 0), record
            assert record["usage_source"] == "none", record
            assert "cost_usd" not in record, record
        else:
            assert got == reported, f"{answered.kind}: record {got}, upstream reported {reported}"
            assert record["usage_source"] == ("sse" if answered.stream else "json"), record
        totals["in"] += reported[0]
        totals["out"] += reported[1]
        if "cost_usd" in record:
            expected = cost(model, *got)
            assert Decimal(record["cost_usd"]) == expected, (answered.kind, record)
            assert record["cost_usd"] == format(expected.normalize(), "f"), record
            recorded_cost += Decimal(record["cost_usd"])
            expected_cost += expected
            micro_usd += int((expected * MILLION).to_integral_value(rounding=ROUND_CEILING))
        totals["record_in"] += got[0]
        totals["record_out"] += got[1]
    # What the upstream reported is in the records exactly; estimates only add output it did
    # not report.
    assert totals["record_in"] == totals["in"]
    assert totals["in"] == 120 + 57 + 30 + 40 + 33 + 44 + 8 + 7 + 9 + 10 + 70 + 80
    assert totals["record_out"] > totals["out"]
    assert recorded_cost == expected_cost

    # The tenant's counters moved by the same amounts (cost rounded up per request).
    def moved():
        now = usage_envoy.stats(r"^wasmcustom\.tenant_guard\.tenant\.acme\.")
        return {k: now.get(k, 0) - before.get(k, 0) for k in now}
    prefix = "wasmcustom.tenant_guard.tenant.acme."
    want = {prefix + "input_tokens": totals["record_in"],
            prefix + "output_tokens": totals["record_out"],
            prefix + "cost_micro_usd": micro_usd, prefix + "requests_allowed": len(sent)}
    delta = wait_for(lambda: (lambda d: d if all(d.get(k) == v for k, v in want.items())
                              else None)(moved()), timeout=10,
                     message=lambda: f"counters {want}, moved {moved()}")
    assert all(delta[k] == v for k, v in want.items())


def test_access_log_carries_usage_of_completed_requests(usage_envoy, upstream, acme):
    resp = usage_envoy.client.chat(token=acme, body=chat(),
                                   headers=answer("openai-json", in_=1000, out=200))
    sse = usage_envoy.client.post("/v1/messages", token=acme, body=anthropic(stream=True),
                                  headers=answer("anthropic-sse", in_=11, out=22))
    failed = usage_envoy.client.chat(token=acme, body=chat(), headers=answer("error"))
    usage_envoy.wait_access_log_flushed()
    line = usage_envoy.access_log_entry(resp.request_id)
    assert (line["model"], line["input_tokens"], line["output_tokens"]) == \
        ("gpt-4o", "1000", "200"), line
    assert line["cost_usd"] == "0.0045", line  # 1000 × 2.5 + 200 × 10 per million
    assert line["usage_source"] == "json"
    line = usage_envoy.access_log_entry(sse.request_id)
    assert (line["model"], line["input_tokens"], line["output_tokens"],
            line["usage_source"]) == ("claude-sonnet-4", "11", "22", "sse"), line
    assert Decimal(line["cost_usd"]) == cost("claude-sonnet-4", 11, 22)
    line = usage_envoy.access_log_entry(failed.request_id)
    assert (line["input_tokens"], line["output_tokens"], line["usage_source"]) == \
        ("0", "0", "none"), line
    assert line["cost_usd"] is None, line  # no filter state: null in the JSON log


def test_unpriced_model_has_no_cost(gateway_factory, upstream, keys):
    """Without a price for the model and without a default price, no cost is recorded (not
    a cost of 0), but tokens are."""
    pricing = {"models": {"gpt-4o": {"input_per_million": 2.5, "output_per_million": 10.0}}}
    proxy = gateway_factory(gateway_config(keys, {"acme": tenant()}, pricing=pricing),
                            name="unpriced")
    token = mint(keys.corp_rsa, claims("acme"))
    resp = proxy.client.chat(token=token, body=chat("llama-3"),
                             headers=answer("openai-json", in_=5, out=6))
    record = filter_record(proxy, resp.request_id)
    assert (record["model"], record["input_tokens"], record["output_tokens"]) == \
        ("llama-3", 5, 6)
    assert "cost_usd" not in record, record
    priced = proxy.client.chat(token=token, body=chat("gpt-4o"),
                               headers=answer("openai-json", in_=5, out=6))
    assert filter_record(proxy, priced.request_id)["cost_usd"] == "0.0000725"


@pytest.mark.parametrize("kind,path,body", [
    ("openai-json", "/v1/chat/completions", chat()),
    ("anthropic-json", "/v1/messages", anthropic()),
])
def test_usage_is_metered_for_clients_that_accept_gzip(usage_envoy, upstream, acme, kind,
                                                       path, body):
    """The OpenAI and Anthropic SDKs send accept-encoding: gzip, and the APIs then compress
    whole answers. The record must still carry the reported usage (whether the gateway reads
    the compressed answer or asks the upstream for an uncompressed one), and the client must
    get an answer it can decode."""
    resp = usage_envoy.client.post(path, token=acme, body=body,
                                   headers=dict(answer(kind, in_=321, out=45),
                                                **{"accept-encoding": "gzip, deflate"}))
    assert resp.status == 200, resp
    data = gzip.decompress(resp.body) if resp.header("content-encoding") == "gzip" \
        else resp.body
    assert json.loads(data)["usage"]["output_tokens" if kind.startswith("anthropic")
                                      else "completion_tokens"] == 45
    record = filter_record(usage_envoy, resp.request_id)
    assert (record["input_tokens"], record["output_tokens"], record["usage_source"]) == \
        (321, 45, "json"), record


def test_only_answers_the_gateway_reads_are_asked_for_uncompressed(usage_envoy, upstream,
                                                                    acme):
    """The gateway removes accept-encoding where it reads the answer (its usage; a listing it
    cuts to the tenant's own), so the upstream answers uncompressed. An answer it does not
    read (a bodyless GET of one object) keeps the client's accept-encoding."""
    gzip_ok = {"accept-encoding": "gzip, deflate"}
    created = usage_envoy.client.post("/v1/responses", token=acme,
                                      body={"model": "gpt-4o", "input": "hi"},
                                      headers=dict(answer("responses-json"), **gzip_ok))
    assert created.status == 200, created
    assert upstream.received(created.request_id).header("accept-encoding") is None
    response_id = json.loads(gzip.decompress(created.body) if
                             created.header("content-encoding") == "gzip" else created.body)["id"]
    fetched = usage_envoy.client.get(f"/v1/responses/{response_id}", token=acme,
                                     headers=dict(answer("responses-json"), **gzip_ok))
    assert fetched.status == 200, fetched
    assert upstream.received(fetched.request_id).header("accept-encoding") == "gzip, deflate"
    listed = usage_envoy.client.get("/v1/files", token=acme, headers=gzip_ok)
    assert listed.status == 200, listed
    assert upstream.received(listed.request_id).header("accept-encoding") is None


CACHE_PRICING = {"models": {
    "gpt-4o": {"input_per_million": 2.5, "output_per_million": 10.0,
               "cached_input_per_million": 1.25},
    "claude-sonnet-4": {"input_per_million": 3.0, "output_per_million": 15.0,
                        "cached_input_per_million": 0.3, "cache_write_per_million": 3.75}}}


def test_cache_reads_writes_and_reasoning_are_recorded_and_priced_at_their_own_rates(
        gateway_factory, upstream, keys):
    """OpenAI cached prompt tokens and reasoning tokens, Anthropic cache reads and writes:
    each record names the parts, and cost_usd prices cache reads and writes at their own rates
    (exactly, in Decimal)."""
    proxy = gateway_factory(gateway_config(keys, {"acme": tenant()}, pricing=CACHE_PRICING),
                            name="cache-pricing")
    token = mint(keys.corp_rsa, claims("acme"))
    openai = proxy.client.chat(token=token, body=chat(),
                               headers=answer("openai-json", in_=1000, out=300, cached=600,
                                              reasoning=120))
    claude = proxy.client.post("/v1/messages", token=token, body=anthropic(),
                               headers=answer("anthropic-json", in_=20, out=50, cached=3000,
                                              written=500))
    d = Decimal
    record = filter_record(proxy, openai.request_id)
    assert (record["input_tokens"], record["cached_input_tokens"], record["cache_write_tokens"],
            record["output_tokens"], record["reasoning_tokens"]) == (1000, 600, 0, 300, 120)
    assert d(record["cost_usd"]) == (400 * d("2.5") + 600 * d("1.25") + 300 * d(10)) / MILLION
    record = filter_record(proxy, claude.request_id)
    assert (record["input_tokens"], record["cached_input_tokens"], record["cache_write_tokens"],
            record["output_tokens"]) == (3520, 3000, 500, 50)
    assert d(record["cost_usd"]) == \
        (20 * d(3) + 3000 * d("0.3") + 500 * d("3.75") + 50 * d(15)) / MILLION
