"""Models per plan (``plans.<p>.models``, ``tenants.<id>.models``) in real Envoy: a model
outside the tenant's list, in the JSON body or in the path (Azure OpenAI deployments, Gemini,
Bedrock), is refused with 403 ``model_not_allowed`` naming the model and the plan, audited,
and never reaches the upstream: with held headers (``allow_on_headers_stop_iteration``) the
upstream sees nothing of it, without them never its body. HTTP/1.1 and HTTP/2 (h2c), the
official ``openai`` SDK, a tenant's own list, and no list at all."""

import json
import uuid
from pathlib import Path

import httpx2
import jsonschema
import openai
import pytest

from harness import bootstrap as bs
from harness.audit import audit_event
from harness.envoy_process import Envoy
from harness.expect import assert_denied
from harness.h2client import H2Client
from harness.keys import claims, mint
from harness.plugin_config import gateway_config, tenant, windows
from harness.records import filter_record
from harness.workers import until_every_worker

AUDIT_SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "schema" / "audit-line.schema.json").read_text())

FREE_MODELS = ["gpt-4o-mini", "claude-3-5-haiku-*", "text-embedding-3-small",
               "gemini-1.5-flash*", "anthropic.claude-3-5-haiku-*"]


def models_policy(keys):
    return gateway_config(keys, {
        "acme": tenant("free"),
        # Its own list replaces the plan's.
        "globex": dict(tenant("free"), models=["gpt-4o"]),
        # A plan without a list: every model.
        "initech": tenant("pro"),
    }, plans={"free": {"requests": windows((100000, 3600)), "models": FREE_MODELS},
              "pro": {"requests": windows((100000, 3600))}})


def start(tmp_path_factory, wasm_path, upstream, jwks_server, keys, hold_headers):
    name = "envoy-models-held" if hold_headers else "envoy-models-forwarded"
    filters = [bs.wasm_filter(wasm_path, models_policy(keys), hold_headers=hold_headers)]
    proxy = Envoy(tmp_path_factory.mktemp(name),
                  bs.gateway(upstream.port, jwks_server.port, filters))
    return proxy


@pytest.fixture(scope="module", params=["held", "forwarded"])
def gateway(request, tmp_path_factory, wasm_path, upstream, jwks_server, keys):
    """One Envoy per header mode, every worker past learning it."""
    held = request.param == "held"
    with start(tmp_path_factory, wasm_path, upstream, jwks_server, keys, held) as proxy:
        proxy.learn_header_mode(token(keys, "initech"), request.param)
        proxy.mode = request.param
        yield proxy


def token(keys, tenant_id, user="user-1"):
    return mint(keys.corp_rsa, claims(tenant_id, sub=user))


def request_id():
    return f"tg-test-{uuid.uuid4()}"


def send(gateway, protocol, tok, path, body, answer="openai-json", method="POST"):
    """One request over HTTP/1.1 or h2c; ``body``: JSON-able, bytes, or None."""
    rid = request_id()
    headers = {"x-request-id": rid, "x-test-answer": answer}
    if protocol == "h2":
        return H2Client(gateway.listener_port).request(
            method, path, headers=dict(headers, **{"content-type": "application/json"}),
            body=body, token=tok, request_id=rid)
    return gateway.client.request(method, path, headers=headers, body=body, token=tok,
                                  request_id=rid)


def assert_reached(resp, upstream, model_in_body=None):
    assert resp.status == 200, resp
    received = upstream.received(resp.request_id)
    if model_in_body is not None:
        assert json.loads(received.body)["model"] == model_in_body
    return received


def assert_refused(gateway, upstream, resp, reason, model=None, owner="plan 'free'",
                   tenant_id="acme", at_headers=False):
    """Refused with ``reason``; the upstream never got the request: nothing of it at all with
    held headers (or when refused from its headers), never its body otherwise. Recorded and
    audited."""
    status = 403 if reason == "model_not_allowed" else 400
    error = assert_denied(resp, status, reason, upstream=upstream)
    assert owner in error["message"], error
    if model is not None:
        assert f"'{model}'" in error["message"], error
    if gateway.mode == "held" or at_headers:
        assert upstream.started(resp.request_id) == [], "the upstream saw the headers"
    record = filter_record(gateway, resp.request_id)
    assert (record["tenant"], record["decision"], record["reason"]) == \
        (tenant_id, "deny", reason), record
    event = audit_event(gateway, resp.request_id)
    assert (event["event"], event["tenant"], event["reason"]) == ("deny", tenant_id, reason)
    jsonschema.validate(event, AUDIT_SCHEMA)
    if model is not None:
        assert event["claimed"] == {"model": model}, event
    return error


CHAT = "/v1/chat/completions"


def chat(model, **extra):
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_a_body_model_outside_the_plan_is_refused_and_never_reaches_the_upstream(
        gateway, upstream, keys, protocol):
    acme = token(keys, "acme")
    assert_reached(send(gateway, protocol, acme, CHAT, chat("gpt-4o-mini")), upstream,
                   "gpt-4o-mini")
    assert_reached(send(gateway, protocol, acme, CHAT, chat("claude-3-5-haiku-20241022")),
                   upstream)
    resp = send(gateway, protocol, acme, CHAT, chat("gpt-4o"))
    error = assert_refused(gateway, upstream, resp, "model_not_allowed", model="gpt-4o")
    assert error["message"] == "The model 'gpt-4o' is not available on plan 'free'."
    # A streaming request and an embeddings request the same way.
    resp = send(gateway, protocol, acme, CHAT, chat("o1", stream=True), answer="openai-sse")
    assert_refused(gateway, upstream, resp, "model_not_allowed", model="o1")
    resp = send(gateway, protocol, acme, "/v1/embeddings",
                {"model": "text-embedding-3-large", "input": "x"})
    assert_refused(gateway, upstream, resp, "model_not_allowed", model="text-embedding-3-large")


@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_a_missing_or_non_string_model_is_refused_where_a_list_applies(
        gateway, upstream, keys, protocol):
    acme = token(keys, "acme")
    for body in ({"messages": []}, {"model": 4, "messages": []},
                 {"model": ["gpt-4o-mini"], "messages": []}, b"not json"):
        resp = send(gateway, protocol, acme, CHAT, body)
        assert_refused(gateway, upstream, resp, "model_required")
    # No body at all: refused from the headers.
    resp = send(gateway, protocol, acme, CHAT, None)
    assert_refused(gateway, upstream, resp, "model_required", at_headers=True)
    # Without a list nothing is required: the upstream decides.
    resp = send(gateway, protocol, token(keys, "initech"), CHAT, {"messages": []})
    assert_reached(resp, upstream)


def test_a_body_naming_the_model_twice_is_refused_unless_both_are_allowed(gateway, upstream,
                                                                          keys):
    acme = token(keys, "acme")
    twice = b'{"model":"gpt-4o-mini","messages":[],"model":"gpt-4o"}'
    resp = send(gateway, "h1", acme, CHAT, twice)
    assert_refused(gateway, upstream, resp, "model_not_allowed", model="gpt-4o")
    escaped = b'{"mod\\u0065l":"gpt\\u002d4o","messages":[]}'
    resp = send(gateway, "h1", acme, CHAT, escaped)
    assert_refused(gateway, upstream, resp, "model_not_allowed", model="gpt-4o")
    both = b'{"model":"gpt-4o-mini","messages":[],"model":"claude-3-5-haiku-1"}'
    assert_reached(send(gateway, "h1", acme, CHAT, both), upstream)


AZURE = "/openai/deployments/{}/chat/completions?api-version=2024-10-21"


@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_azure_deployments_are_checked_and_must_agree_with_the_body(gateway, upstream, keys,
                                                                    protocol):
    acme = token(keys, "acme")
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert_reached(send(gateway, protocol, acme, AZURE.format("gpt-4o-mini"), body), upstream)
    resp = send(gateway, protocol, acme, AZURE.format("gpt-4o"), body)
    assert_refused(gateway, upstream, resp, "model_not_allowed", model="gpt-4o",
                   at_headers=True)
    # Resolved as the upstream resolves it.
    resp = send(gateway, protocol, acme, AZURE.format("gpt-4o-mini/../gpt%2D4o"), body)
    assert_refused(gateway, upstream, resp, "model_not_allowed", model="gpt-4o",
                   at_headers=True)
    # Path and body disagree: refused when either is not allowed.
    resp = send(gateway, protocol, acme, AZURE.format("gpt-4o-mini"), chat("gpt-4o"))
    assert_refused(gateway, upstream, resp, "model_not_allowed", model="gpt-4o")
    resp = send(gateway, protocol, acme, AZURE.format("gpt-4o"), chat("gpt-4o-mini"))
    assert_refused(gateway, upstream, resp, "model_not_allowed", model="gpt-4o",
                   at_headers=True)


@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_gemini_and_bedrock_path_models_are_checked(gateway, upstream, keys, protocol):
    acme = token(keys, "acme")
    contents = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    resp = send(gateway, protocol, acme, "/v1beta/models/gemini-1.5-flash:generateContent",
                contents, answer="gemini-json")
    assert_reached(resp, upstream)
    resp = send(gateway, protocol, acme,
                "/v1beta/models/gemini-1.5-pro:streamGenerateContent?alt=sse", contents,
                answer="gemini-sse")
    assert_refused(gateway, upstream, resp, "model_not_allowed", model="gemini-1.5-pro",
                   at_headers=True)
    resp = send(gateway, protocol, acme,
                "/v1/projects/p/locations/us-central1/endpoints/123:generateContent",
                contents, answer="gemini-json")
    error = assert_refused(gateway, upstream, resp, "model_not_allowed", at_headers=True)
    assert "cannot tell the model" in error["message"]
    converse = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    resp = send(gateway, protocol, acme,
                "/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse", converse,
                answer="bedrock-json")
    assert_reached(resp, upstream)
    resp = send(gateway, protocol, acme, "/model/anthropic.claude-3-opus-v1:0/converse",
                converse, answer="bedrock-json")
    assert_refused(gateway, upstream, resp, "model_not_allowed",
                   model="anthropic.claude-3-opus-v1:0", at_headers=True)


def test_a_tenants_own_list_replaces_its_plans(gateway, upstream, keys):
    globex = token(keys, "globex")
    assert_reached(send(gateway, "h1", globex, CHAT, chat("gpt-4o")), upstream, "gpt-4o")
    resp = send(gateway, "h1", globex, CHAT, chat("gpt-4o-mini"))
    error = assert_refused(gateway, upstream, resp, "model_not_allowed", model="gpt-4o-mini",
                           owner="tenant 'globex'", tenant_id="globex")
    assert error["message"] == "The model 'gpt-4o-mini' is not available on tenant 'globex'."
    # Without a list every model goes, in the body and in the path.
    initech = token(keys, "initech")
    assert_reached(send(gateway, "h1", initech, CHAT, chat("o1-pro")), upstream, "o1-pro")
    assert_reached(send(gateway, "h1", initech, AZURE.format("gpt-4o"), chat("gpt-4o")),
                   upstream)


def test_multipart_endpoints_are_refused_while_a_list_applies(gateway, upstream, keys):
    form = (b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\ngpt-4o-transcribe'
            b'\r\n--b--\r\n')
    rid = request_id()
    resp = gateway.client.request(
        "POST", "/v1/audio/transcriptions", body=form, token=token(keys, "acme"),
        request_id=rid, headers={"content-type": "multipart/form-data; boundary=b"})
    assert_refused(gateway, upstream, resp, "model_not_allowed", at_headers=True)


def openai_client(gateway, tok, protocol):
    http_client = (httpx2.Client(http1=False, http2=True, timeout=10.0) if protocol == "h2"
                   else httpx2.Client(timeout=10.0))
    return openai.OpenAI(api_key=tok, base_url=f"http://127.0.0.1:{gateway.listener_port}/v1",
                         http_client=http_client, max_retries=0)


@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_the_openai_sdk_gets_its_typed_403_naming_the_model_and_plan(gateway, upstream,
                                                                     keys, protocol):
    client = openai_client(gateway, token(keys, "acme"), protocol)
    rid = request_id()
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-request-id": rid})
    assert completion.choices[0].message.content == "hello from upstream"
    assert json.loads(upstream.received(rid).body)["model"] == "gpt-4o-mini"
    rid = request_id()
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True,
            extra_headers={"x-request-id": rid})
    assert refused.value.status_code == 403
    assert refused.value.code == "model_not_allowed"
    assert "'gpt-4o'" in refused.value.message and "plan 'free'" in refused.value.message
    assert upstream.find(rid) == []
    if gateway.mode == "held":
        assert upstream.started(rid) == []
    assert audit_event(gateway, rid)["claimed"] == {"model": "gpt-4o"}
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.embeddings.create(model="text-embedding-3-large", input="x",
                                 extra_headers={"x-request-id": request_id()})
    assert refused.value.code == "model_not_allowed"


def test_a_body_in_pieces_ended_by_trailers_is_read_whole_before_its_model_is_decided(
        gateway, upstream, keys):
    """HTTP/2, the body in three DATA frames and request trailers: the model is read from the
    whole body; the allowed one reaches the upstream whole, the other never does."""
    acme = token(keys, "acme")
    client = H2Client(gateway.listener_port)

    def send_in_pieces(model):
        return client.request(body=chat(model), token=acme, pieces=3,
                              trailers=[("x-trailer", "1")],
                              headers=[("x-test-answer", "openai-json")])
    assert_reached(send_in_pieces("gpt-4o-mini"), upstream, "gpt-4o-mini")
    assert_refused(gateway, upstream, send_in_pieces("gpt-4o"), "model_not_allowed",
                   model="gpt-4o")


def test_every_worker_refuses_a_model_outside_the_list(gateway, upstream, keys):
    """The list is each worker's: a refusal on one is a refusal on every one."""
    acme = token(keys, "acme")
    until_every_worker(gateway, lambda: send(gateway, "h1", acme, CHAT, chat("gpt-4o")),
                       lambda resp: assert_denied(resp, 403, "model_not_allowed",
                                                  upstream=upstream))


def test_a_client_leaving_mid_upload_gets_nothing_upstream(gateway, upstream, keys):
    """Headers and half a body naming a model outside the list, then a reset: the upstream
    never gets the body (with held headers, never the request), the request leaves one record
    of its tenant, and the worker refuses the next such request as before."""
    acme = token(keys, "acme")
    client = H2Client(gateway.listener_port)
    left = client.request(body=chat("gpt-4o"), token=acme, pieces=4, abort_after=2,
                          headers=[("x-test-answer", "openai-json")])
    record = filter_record(gateway, left.request_id)
    assert record["tenant"] == "acme", record
    assert upstream.find(left.request_id) == [], "a cut body reached the upstream whole"
    if gateway.mode == "held":
        assert upstream.started(left.request_id) == [], "the upstream saw a held request"
    resp = send(gateway, "h2", acme, CHAT, chat("gpt-4o"))
    assert_refused(gateway, upstream, resp, "model_not_allowed", model="gpt-4o")
