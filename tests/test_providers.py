"""Gemini, AWS Bedrock and Azure OpenAI through the gateway, driven by the providers' official
clients where they exist (google-genai, boto3's bedrock-runtime): their usage reaches the
record with an exact cost (at the model the path names, or the answer's model version), counts
toward the tenant's token window, and their output limits are clamped. The recording upstream
answers in each API's own format (harness.answers: gemini-*, bedrock-*; Bedrock's event
streams built with their CRCs, which boto3 checks)."""

import http.client
import json
from decimal import Decimal

import boto3
import pytest
from botocore.config import Config as BotoConfig
from google import genai
from google.genai import types

from harness.answers import WORDS, answer, delivered_tokens
from harness.expect import assert_denied
from harness.h2client import H2Client
from harness.keys import claims, mint
from harness.limits import remaining
from harness.plugin_config import gateway_config, tenant, windows
from harness.client import new_request_id
from harness.records import filter_record
from harness.wait import wait_for

PRICES = {
    "gemini-2.0-flash": (Decimal("0.1"), Decimal("0.4")),
    "gemini-2.0-flash-001": (Decimal("0.15"), Decimal("0.6")),
    "us.anthropic.claude-3-5-haiku-20241022-v1:0": (Decimal("0.8"), Decimal("4")),
    "amazon.nova-lite-v1:0": (Decimal("0.06"), Decimal("0.24")),
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
    "us.anthropic.claude-3-5-haiku-20241022-v1:0": (Decimal("0.8"), Decimal("4")),
    "gpt-4o": (Decimal("2.5"), Decimal("10")),
}
PRICING = {"models": {m: {"input_per_million": float(i), "output_per_million": float(o)}
                      for m, (i, o) in PRICES.items()}}
MILLION = Decimal(1_000_000)
HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
PROFILE_ARN = ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
               "us.anthropic.claude-3-5-haiku-20241022-v1:0")


def cost(model, input_tokens, output_tokens) -> Decimal:
    price_in, price_out = PRICES[model]
    return input_tokens * price_in / MILLION + output_tokens * price_out / MILLION


@pytest.fixture(scope="module")
def providers_gateway(tmp_path_factory, wasm_path, upstream, jwks_server, keys):
    from harness import bootstrap as bs
    from harness.envoy_process import Envoy
    config = gateway_config(keys, {"acme": tenant()}, pricing=PRICING,
                            isolation={"prompt_cache": "off"})
    with Envoy(tmp_path_factory.mktemp("providers-envoy"),
               bs.gateway(upstream.port, jwks_server.port,
                          [bs.wasm_filter(wasm_path, config)])) as proxy:
        yield proxy


@pytest.fixture
def acme(keys):
    return mint(keys.corp_rsa, claims("acme"))


def gemini_client(port, token, spec):
    """google-genai pointed at the gateway (the API key is the provider's; the gateway reads
    the tenant's token from authorization)."""
    return genai.Client(api_key="test-gemini-key", http_options=types.HttpOptions(
        base_url=f"http://127.0.0.1:{port}", api_version="v1beta",
        headers={"authorization": f"Bearer {token}", **spec}))


def bedrock_client(port, token, spec):
    """boto3's bedrock-runtime pointed at the gateway with dummy credentials. SigV4 takes the
    authorization header: the tenant's token goes in x-api-key (a token source of the test
    configuration)."""
    client = boto3.client("bedrock-runtime", endpoint_url=f"http://127.0.0.1:{port}",
                          region_name="us-east-1", aws_access_key_id="AKIDTEST",
                          aws_secret_access_key="test-secret",
                          config=BotoConfig(retries={"max_attempts": 1}))

    def add_headers(request, **_):
        request.headers["x-api-key"] = token
        for name, value in spec.items():
            request.headers[name] = value
    client.meta.events.register("before-sign.bedrock-runtime.*", add_headers)
    return client


def with_id(spec):
    """The answer's headers and an ``x-request-id`` the client sends with them, so the
    request's record and what the upstream received can be found."""
    request_id = new_request_id()
    return request_id, dict(spec, **{"x-request-id": request_id})


# === Gemini ===

def test_gemini_generate_content_through_google_genai(providers_gateway, upstream, acme):
    rid, spec = with_id(answer("gemini-json", in_=2100, out=54, reasoning=845, cached=2048))
    client = gemini_client(providers_gateway.listener_port, acme, spec)
    reply = client.models.generate_content(model="gemini-2.0-flash", contents="hello there")
    assert reply.usage_metadata.prompt_token_count == 2100
    assert reply.text
    assert upstream.received(rid).path == "/v1beta/models/gemini-2.0-flash:generateContent"
    record = filter_record(providers_gateway, rid)
    assert record["decision"] == "allow", record
    assert (record["input_tokens"], record["output_tokens"], record["cached_input_tokens"],
            record["reasoning_tokens"], record["usage_source"]) == \
        (2100, 54 + 845, 2048, 845, "json"), record
    # Priced at the model version the answer names.
    assert record["model"] == "gemini-2.0-flash-001"
    assert Decimal(record["cost_usd"]) == cost("gemini-2.0-flash-001", 2100, 899)


def test_gemini_stream_through_google_genai_is_metered_as_sse(providers_gateway, upstream,
                                                              acme):
    rid, spec = with_id(answer("gemini-sse", in_=31, out=12, chunks=4,
                               model="gemini-2.0-flash"))
    client = gemini_client(providers_gateway.listener_port, acme, spec)
    text = "".join(chunk.text or "" for chunk in client.models.generate_content_stream(
        model="gemini-2.0-flash", contents="tell me"))
    assert text == "Hello from the recording"
    assert upstream.received(rid).path == \
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    record = filter_record(providers_gateway, rid)
    assert (record["input_tokens"], record["output_tokens"], record["usage_source"],
            record["model"]) == (31, 12, "sse", "gemini-2.0-flash"), record
    assert Decimal(record["cost_usd"]) == cost("gemini-2.0-flash", 31, 12)


def test_gemini_streamed_json_array_is_metered(providers_gateway, upstream, acme):
    """Without alt=sse, streamGenerateContent answers one JSON array, written answer by
    answer (the REST API's default)."""
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    resp = providers_gateway.client.request(
        "POST", "/v1beta/models/gemini-2.0-flash:streamGenerateContent", body=body,
        token=acme, headers=answer("gemini-array", in_=40, out=9, reasoning=3, chunks=3,
                                   gap_ms=20))
    assert resp.status == 200, resp
    assert len(json.loads(resp.body)) == 3
    record = filter_record(providers_gateway, resp.request_id)
    assert (record["input_tokens"], record["output_tokens"], record["reasoning_tokens"],
            record["usage_source"], record["model"]) == \
        (40, 12, 3, "json", "gemini-2.0-flash-001"), record


# === Bedrock ===

def test_bedrock_converse_through_boto3_is_priced_at_the_paths_model(providers_gateway,
                                                                     upstream, acme):
    rid, spec = with_id(answer("bedrock-json", in_=2054, out=223, cached=1741))
    client = bedrock_client(providers_gateway.listener_port, acme, spec)
    reply = client.converse(modelId=HAIKU,
                            messages=[{"role": "user", "content": [{"text": "hello"}]}],
                            inferenceConfig={"maxTokens": 300})
    assert reply["usage"]["inputTokens"] == 2054
    seen, record = upstream.received(rid), filter_record(providers_gateway, rid)
    assert seen.path == "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    assert (record["input_tokens"], record["output_tokens"], record["cached_input_tokens"],
            record["usage_source"], record["model"]) == \
        (2054 + 1741, 223, 1741, "json", HAIKU), record
    assert Decimal(record["cost_usd"]) == cost(HAIKU, 3795, 223)


@pytest.fixture(scope="module")
def routed_providers_gateway(tmp_path_factory, wasm_path, upstream, jwks_server, keys):
    """The same with routing and a vector store configured: paths are normalised."""
    from harness import bootstrap as bs
    from harness.envoy_process import Envoy
    config = gateway_config(keys, {"acme": tenant()}, pricing=PRICING,
                            isolation={"prompt_cache": "off"},
                            routing={"namespace_header": "x-tenant-namespace"},
                            vector_stores=[{"path_prefix": "/qdrant", "kind": "qdrant"}])
    with Envoy(tmp_path_factory.mktemp("providers-routed-envoy"),
               bs.gateway(upstream.port, jwks_server.port,
                          [bs.wasm_filter(wasm_path, config)])) as proxy:
        yield proxy


@pytest.mark.parametrize("stream", [False, True])
def test_bedrock_model_arn_through_boto3_with_paths_normalised(routed_providers_gateway,
                                                               upstream, acme, stream):
    """boto3 escapes an inference-profile ARN's ':' and '/' (%3A, %2F). With routing or
    vector stores, the filter normalises paths and refuses an encoded '/'; not this one: it is
    metered at the ARN's price."""
    kind = "bedrock-stream" if stream else "bedrock-json"
    rid, spec = with_id(answer(kind, in_=120, out=30))
    client = bedrock_client(routed_providers_gateway.listener_port, acme, spec)
    messages = [{"role": "user", "content": [{"text": "hello"}]}]
    if stream:
        events = list(client.converse_stream(modelId=PROFILE_ARN, messages=messages)["stream"])
        assert any("metadata" in e for e in events)
    else:
        assert client.converse(modelId=PROFILE_ARN, messages=messages)["usage"][
            "inputTokens"] == 120
    operation = "converse-stream" if stream else "converse"
    assert upstream.received(rid).path == (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2F"
        f"us.anthropic.claude-3-5-haiku-20241022-v1%3A0/{operation}")
    record = filter_record(routed_providers_gateway, rid)
    assert (record["decision"], record["input_tokens"], record["output_tokens"],
            record["model"]) == ("allow", 120, 30, PROFILE_ARN), record
    assert Decimal(record["cost_usd"]) == cost(PROFILE_ARN, 120, 30)


def test_bedrock_converse_stream_through_boto3(providers_gateway, upstream, acme):
    rid, spec = with_id(answer("bedrock-stream", in_=12, out=9, written=1500, chunks=5,
                               gap_ms=10))
    client = bedrock_client(providers_gateway.listener_port, acme, spec)
    reply = client.converse_stream(modelId="amazon.nova-lite-v1:0",
                                   messages=[{"role": "user", "content": [{"text": "hi"}]}])
    text, usage = "", None
    for event in reply["stream"]:  # botocore checks every message's CRCs
        if "contentBlockDelta" in event:
            text += event["contentBlockDelta"]["delta"]["text"]
        if "metadata" in event:
            usage = event["metadata"]["usage"]
    assert text == "Hello from the recording upstream"
    assert usage["inputTokens"] == 12
    record = filter_record(providers_gateway, rid)
    assert (record["input_tokens"], record["output_tokens"], record["usage_source"],
            record["model"]) == (1512, 9, "event_stream", "amazon.nova-lite-v1:0"), record
    assert Decimal(record["cost_usd"]) == cost("amazon.nova-lite-v1:0", 1512, 9)


def test_bedrock_invoke_with_response_stream_of_an_anthropic_model(providers_gateway,
                                                                    upstream, acme):
    rid, spec = with_id(answer("bedrock-invoke-stream", in_=25, out=15, cached=100, chunks=3))
    client = bedrock_client(providers_gateway.listener_port, acme, spec)
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 200,
            "messages": [{"role": "user", "content": "hi"}]}
    reply = client.invoke_model_with_response_stream(modelId=HAIKU, body=json.dumps(body))
    kinds = [json.loads(event["chunk"]["bytes"])["type"] for event in reply["body"]]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    record = filter_record(providers_gateway, rid)
    assert (record["input_tokens"], record["output_tokens"], record["cached_input_tokens"],
            record["usage_source"], record["model"]) == \
        (125, 15, 100, "event_stream", HAIKU), record


def test_a_bedrock_stream_cut_before_its_metadata_is_charged_what_it_delivered(
        providers_gateway, upstream, acme):
    rid = new_request_id()
    # The upstream cuts its connection after five events: the client sees the stream end short.
    with pytest.raises(http.client.IncompleteRead):
        providers_gateway.client.request(
            "POST", "/model/amazon.nova-lite-v1:0/converse-stream", request_id=rid,
            body={"messages": [{"role": "user", "content": [{"text": "hi"}]}]}, token=acme,
            headers=answer("bedrock-stream", in_=12, out=9, chunks=6, cut_after=5, gap_ms=10))
    record = filter_record(providers_gateway, rid)
    # messageStart then four deltas: at least a token each, and one per 4 bytes of text.
    delivered = WORDS[:4]
    expected = max(len(delivered), -(-sum(len(w) for w in delivered) // 4))
    assert (record["output_tokens"], record["usage_source"]) == (expected, "estimate"), record


def test_bedrock_stream_over_http2(providers_gateway, upstream, acme):
    h2 = H2Client(providers_gateway.listener_port)
    resp = h2.request("POST", "/model/amazon.nova-lite-v1:0/converse-stream",
                      body=json.dumps({"messages": []}).encode(),
                      headers={"x-api-key": acme, "content-type": "application/json",
                               **answer("bedrock-stream", in_=7, out=3, chunks=2)})
    assert resp.status == 200, resp
    record = filter_record(providers_gateway, resp.request_id)
    assert (record["input_tokens"], record["output_tokens"], record["usage_source"]) == \
        (7, 3, "event_stream"), record


# === Azure OpenAI ===

@pytest.mark.parametrize("path,model", [
    ("/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21", "gpt-4o"),
    ("/openai/v1/chat/completions?api-version=preview", "gpt-4o"),
])
def test_azure_openai_paths_are_metered(providers_gateway, upstream, acme, path, model):
    body = {"messages": [{"role": "user", "content": "hi"}]}
    if "/v1/" in path:
        body["model"] = model
    resp = providers_gateway.client.request("POST", path, body=body, token=acme,
                                            headers=answer("openai-json", in_=100, out=20,
                                                           model=model))
    assert resp.status == 200, resp
    record = filter_record(providers_gateway, resp.request_id)
    assert (record["input_tokens"], record["output_tokens"], record["model"]) == \
        (100, 20, model), record
    assert Decimal(record["cost_usd"]) == cost(model, 100, 20)


# === Quotas and output caps ===

def test_provider_usage_counts_toward_the_token_window_and_clamps_output(
        gateway_factory, upstream, keys):
    plans = {"capped": {"tokens": windows((3000, 86400)), "output_cap": "clamp",
                        "min_output_tokens": 16}}
    config = gateway_config(keys, {"acme": tenant("capped")}, plans=plans, pricing=PRICING,
                            isolation={"prompt_cache": "off"})
    proxy = gateway_factory(config)
    token = mint(keys.corp_rsa, claims("acme"))
    # Gemini: the limit set in generationConfig is the room left (3000 - the input estimate).
    gemini = gemini_client(proxy.listener_port, token,
                           answer("gemini-json", in_=100, out=900, honour=1))
    gemini.models.generate_content(
        model="gemini-2.0-flash", contents="hi",
        config=types.GenerateContentConfig(max_output_tokens=8000))
    seen = [r for r in upstream.requests if r.path.endswith(":generateContent")][-1]
    sent = json.loads(seen.body)["generationConfig"]["maxOutputTokens"]
    assert sent < 3000, sent
    # Bedrock Converse: inferenceConfig.maxTokens is lowered the same way.
    bedrock = bedrock_client(proxy.listener_port, token, answer("bedrock-json", in_=1000,
                                                                out=1100))
    bedrock.converse(modelId=HAIKU, messages=[{"role": "user", "content": [{"text": "x"}]}],
                     inferenceConfig={"maxTokens": 8000})
    seen = [r for r in upstream.requests if r.path.endswith("/converse")][-1]
    assert json.loads(seen.body)["inferenceConfig"]["maxTokens"] < 2000
    # 100 + 900 and 1000 + 1100 tokens used: the window is spent; the next one is refused.
    resp = proxy.client.request("POST", "/model/amazon.nova-lite-v1:0/converse",
                                body={"messages": []}, token=token,
                                headers=answer("bedrock-json"))
    assert_denied(resp, 429, "token_quota_exceeded")


# === Both header modes, both protocols, the stream-lifecycle rules ===

DECADE = 10 * 365 * 86400
MODES = [pytest.param(True, id="headers-held"), pytest.param(False, id="headers-forwarded")]
NOVA = "amazon.nova-lite-v1:0"
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
BEDROCK_BODY = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}


@pytest.fixture(scope="module", params=MODES)
def moded_gateway(request, tmp_path_factory, wasm_path, upstream, jwks_server, keys):
    """(proxy, hold_headers): acme on windows longer than any test, with prices, in one of
    Envoy's header modes (the mode learnt by every worker before the tests run)."""
    from harness import bootstrap as bs
    from harness.envoy_process import Envoy
    hold_headers = request.param
    config = gateway_config(keys, {"acme": tenant(limits={
        "requests": windows((1_000_000, DECADE)), "tokens": windows((10_000_000, DECADE))})},
        pricing=PRICING, isolation={"prompt_cache": "off"})
    mode = "held" if hold_headers else "forwarded"
    with Envoy(tmp_path_factory.mktemp(f"providers-{mode}-envoy"),
               bs.gateway(upstream.port, jwks_server.port,
                          [bs.wasm_filter(wasm_path, config,
                                          hold_headers=hold_headers)])) as proxy:
        proxy.learn_header_mode(mint(keys.corp_rsa, claims("acme")), mode)
        yield proxy, hold_headers


def tokens_left(proxy, token) -> int:
    """The tenant's tokens left, from a probe that is itself charged nothing."""
    resp = proxy.client.chat(token=token, body={"model": "gpt-4o", "max_tokens": 1,
                                                "messages": []},
                             headers=answer("openai-json", in_=0, out=0))
    assert resp.status == 200, resp
    return remaining(resp, "tokens")


def send(proxy, protocol, path, body, token, headers, request_id=None):
    """One request over HTTP/1.1 or HTTP/2 (h2c): (status, body, request id)."""
    if protocol == "h2":
        resp = H2Client(proxy.listener_port).request(
            "POST", path, body=body, token=token, request_id=request_id,
            headers={"content-type": "application/json", **headers})
        assert not resp.reset, resp
    else:
        resp = proxy.client.request("POST", path, body=body, token=token,
                                    headers={"content-type": "application/json", **headers},
                                    request_id=request_id)
    return resp.status, resp.body, resp.request_id


# (path, answer kind, body, expected (input, output, usage_source, model))
METERED = {
    "gemini-sse": ("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
                   answer("gemini-sse", in_=31, out=12, reasoning=5, chunks=4, gap_ms=5,
                          model="gemini-2.0-flash"),
                   GEMINI_BODY, (31, 17, "sse", "gemini-2.0-flash")),
    "gemini-array": ("/v1beta/models/gemini-2.0-flash:streamGenerateContent",
                     answer("gemini-array", in_=40, out=9, reasoning=3, chunks=3, gap_ms=5,
                            model="gemini-2.0-flash"),
                     GEMINI_BODY, (40, 12, "json", "gemini-2.0-flash")),
    "bedrock-converse": (f"/model/{NOVA}/converse",
                         answer("bedrock-json", in_=120, out=30, cached=50),
                         BEDROCK_BODY, (170, 30, "json", NOVA)),
    "bedrock-converse-stream": (f"/model/{NOVA}/converse-stream",
                                answer("bedrock-stream", in_=12, out=9, written=100,
                                       chunks=5, gap_ms=5),
                                BEDROCK_BODY, (112, 9, "event_stream", NOVA)),
}


@pytest.mark.parametrize("protocol", ["http1", "h2"])
@pytest.mark.parametrize("endpoint", list(METERED))
def test_provider_streams_are_metered_exactly_in_both_header_modes_and_protocols(
        moded_gateway, upstream, acme, endpoint, protocol):
    proxy, _ = moded_gateway
    path, spec, body, (inp, out, source, model) = METERED[endpoint]
    before = tokens_left(proxy, acme)
    status, data, rid = send(proxy, protocol, path, body, acme, spec)
    assert status == 200, data
    assert upstream.received(rid).path == path
    if endpoint == "gemini-array":
        assert len(json.loads(data)) == 3
    record = filter_record(proxy, rid)
    assert (record["decision"], record["input_tokens"], record["output_tokens"],
            record["usage_source"], record["model"]) == \
        ("allow", inp, out, source, model), record
    assert Decimal(record["cost_usd"]) == cost(model, inp, out)
    assert before - tokens_left(proxy, acme) == inp + out


# The errors each API answers a bad request with: Gemini's google.rpc.Status, Bedrock's
# ValidationException (its type in a header, the message in the body).
GEMINI_ERROR = {"error": {"code": 400, "message": "Invalid JSON payload received.",
                          "status": "INVALID_ARGUMENT"}}
BEDROCK_ERROR = {"message": "The model returned the following errors: Malformed input "
                            "request, please reformat your input and try again."}
BEDROCK_ERROR_TYPE = ("x-amzn-errortype",
                      "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/")
EARLY = {
    "gemini-generate": ("/v1beta/models/gemini-2.0-flash:generateContent", GEMINI_BODY,
                        GEMINI_ERROR, ()),
    "gemini-sse": ("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
                   GEMINI_BODY, GEMINI_ERROR, ()),
    "bedrock-converse": (f"/model/{NOVA}/converse", BEDROCK_BODY, BEDROCK_ERROR,
                         (BEDROCK_ERROR_TYPE,)),
    "bedrock-converse-stream": (f"/model/{NOVA}/converse-stream", BEDROCK_BODY,
                                BEDROCK_ERROR, (BEDROCK_ERROR_TYPE,)),
}


@pytest.mark.parametrize("protocol", ["http1", "h2"])
@pytest.mark.parametrize("endpoint", list(EARLY))
def test_an_early_provider_error_costs_no_tokens(moded_gateway, upstream, acme, endpoint,
                                                 protocol):
    """The upstream answers 400 in the provider's own shape before reading the body (over
    HTTP/1.1 with headers forwarded, the client holds its body back until that answer is in):
    no usage, so nothing is charged; the request is recorded with its status."""
    proxy, hold_headers = moded_gateway
    path, body, error, extra = EARLY[endpoint]
    before = tokens_left(proxy, acme)
    rid = new_request_id()
    upstream.reply_for(rid, error, status=400, headers=extra)
    early = answer("error", status=400, early=1)
    padded = dict(body, padding="x" * 2000)
    if protocol == "h2":
        resp = H2Client(proxy.listener_port).request("POST", path, body=padded, token=acme,
                                                     headers=early, request_id=rid)
    elif hold_headers:
        resp = proxy.client.request("POST", path, body=padded, token=acme, headers=early,
                                    request_id=rid)
    else:
        pending = proxy.client.begin(path=path, body=padded, token=acme, headers=early,
                                     request_id=rid)
        wait_for(pending.answered, timeout=10, message="the upstream's early answer")
        resp = pending.finish()
    assert resp.status == 400, resp
    assert json.loads(resp.body) == error
    assert before == tokens_left(proxy, acme), "an early error answer cost tokens"
    record = filter_record(proxy, rid)
    assert (record["status"], record["usage_source"], record["output_tokens"]) == \
        (400, "none", 0), record


def bedrock_delivered(body: bytes) -> int:
    """The filter's lower estimate of a Bedrock event stream's output: at least a token per
    contentBlockDelta with text, and one per 4 bytes of that text."""
    import botocore.eventstream
    buffer = botocore.eventstream.EventStreamBuffer()
    buffer.add_data(body)
    texts = []
    for message in buffer:
        if message.headers.get(":event-type") == "contentBlockDelta":
            text = json.loads(message.payload)["delta"].get("text", "")
            if text:
                texts.append(len(json.dumps(text)) - 2)
    return max(len(texts), -(-sum(texts) // 4))


ABORTED = {
    "gemini-sse": ("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
                   GEMINI_BODY, answer("gemini-sse", in_=31, out=40, chunks=10, hold_after=4,
                                       model="gemini-2.0-flash"), delivered_tokens,
                   lambda body: 31),
    "bedrock-converse-stream": (f"/model/{NOVA}/converse-stream", BEDROCK_BODY,
                                answer("bedrock-stream", in_=12, out=40, chunks=10,
                                       hold_after=4), bedrock_delivered,
                                lambda body: -(-len(json.dumps(body)) // 4)),
}


@pytest.mark.parametrize("protocol", ["http1", "h2"])
@pytest.mark.parametrize("endpoint", list(ABORTED))
def test_a_client_leaving_a_provider_stream_is_charged_what_was_delivered(
        moded_gateway, upstream, acme, endpoint, protocol):
    """The client leaves after four events, before the usage: the record has the output
    delivered so far, marked `estimate`, and the input Gemini's streamed answers each report
    (promptTokenCount) or, for Bedrock (whose usage comes only at the end), the body's input
    estimate (bytes / 4); the window is charged exactly that."""
    proxy, _ = moded_gateway
    path, body, spec, estimate, charged_input = ABORTED[endpoint]
    before = tokens_left(proxy, acme)
    rid = new_request_id()

    def held():
        found = upstream.find(rid)
        return found[0].answer if found and found[0].answer and found[0].answer.holding \
            else None
    try:
        if protocol == "h2":
            def arrived(data):
                answered = held()
                return answered is not None and data == bytes(answered.body)
            resp = H2Client(proxy.listener_port).request(
                "POST", path, body=body, token=acme, request_id=rid, reset_when=arrived,
                headers={"content-type": "application/json", **spec})
            assert resp.status == 200 and resp.reset, resp
        else:
            stream = proxy.client.open_stream(path=path, token=acme, body=body, headers=spec,
                                              request_id=rid)
            answered = wait_for(held, message="the stream held after 4 events")
            stream.read_until(lambda data: data == bytes(answered.body))
            stream.close()
        answered = upstream.wait_finished(rid)
    finally:
        upstream.release(rid)
    delivered = estimate(bytes(answered.body))
    assert delivered > 0
    record = filter_record(proxy, rid)
    assert (record["usage_source"], record["output_tokens"]) == ("estimate", delivered), \
        record
    assert record["input_tokens"] == charged_input(body), record
    assert before - tokens_left(proxy, acme) == charged_input(body) + delivered


CLAMPED = [
    ("/v1beta/models/gemini-2.0-flash:generateContent", answer("gemini-json", in_=10, out=10),
     dict(GEMINI_BODY, generationConfig={"maxOutputTokens": 8000}),
     lambda body: body["generationConfig"]["maxOutputTokens"]),
    ("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
     answer("gemini-sse", in_=10, out=10, chunks=2),
     dict(GEMINI_BODY, generationConfig={"maxOutputTokens": 8000}),
     lambda body: body["generationConfig"]["maxOutputTokens"]),
    (f"/model/{NOVA}/converse", answer("bedrock-json", in_=10, out=10),
     dict(BEDROCK_BODY, inferenceConfig={"maxTokens": 8000}),
     lambda body: body["inferenceConfig"]["maxTokens"]),
    (f"/model/{NOVA}/converse-stream", answer("bedrock-stream", in_=10, out=10, chunks=2),
     dict(BEDROCK_BODY, inferenceConfig={"maxTokens": 8000}),
     lambda body: body["inferenceConfig"]["maxTokens"]),
]


@pytest.mark.parametrize("protocol", ["http1", "h2"])
def test_provider_output_limits_are_clamped_with_headers_forwarded(gateway_factory, upstream,
                                                                   keys, protocol):
    """Without allow_on_headers_stop_iteration the filter still rewrites the body (it goes on
    without content-length, docs/operations.md): Gemini's maxOutputTokens and Bedrock's
    inferenceConfig.maxTokens become the room left in the window after the input estimate."""
    plans = {"capped": {"tokens": windows((3000, DECADE)), "output_cap": "clamp",
                        "min_output_tokens": 16}}
    config = gateway_config(keys, {"acme": tenant("capped")}, plans=plans, pricing=PRICING,
                            isolation={"prompt_cache": "off"})
    proxy = gateway_factory(config, hold_headers=False, name=f"clamp-fwd-{protocol}")
    token = mint(keys.corp_rsa, claims("acme"))
    proxy.learn_header_mode(token, "forwarded")
    for path, spec, body, limit in CLAMPED:
        left = tokens_left(proxy, token)
        data = json.dumps(body).encode()
        status, reply, rid = send(proxy, protocol, path, data, token, spec)
        assert status == 200, reply
        seen = upstream.received(rid)
        sent = limit(json.loads(seen.body))
        assert sent == left - -(-len(data) // 4), (path, sent, left)
        assert seen.header("content-length") in (None, str(len(seen.body))), seen.headers
        record = filter_record(proxy, rid)
        assert record["output_cap"] == sent, record
        assert (record["input_tokens"], record["output_tokens"]) == (10, 10), record
