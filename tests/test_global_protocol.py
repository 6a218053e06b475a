"""What the filter says to the rate-limit service and how it reads the answers, seen by a
scripted gRPC rate-limit service (grpcio) that records every call and answers as the test
says: the two calls at admission, side by side, each with one descriptor; the token debit after
the answer; OVER_LIMIT answers with the service's headers and reset time; local refusals that
never call the service."""

import pytest

from harness.answers import answer
from harness.expect import assert_denied
from harness.keys import claims, mint
from harness.limits import LONG, assert_quota_denied
from harness.plugin_config import tenant, windows
from harness import rls
from harness.ratelimit import ScriptedRateLimitService
from harness.replicas import global_config, replica, start_all
from harness.wait import wait_for

TENANTS = {
    "acme": tenant("pro"),
    "loner": tenant(),  # no plan: the plan entry says "none"
    "refused-co": tenant("pro"),
    "tokens-co": tenant("pro"),
    "streamer": tenant("pro"),
    "tight-co": tenant(limits={"requests": windows((1, LONG))}),
}


class Gateway:
    def __init__(self, proxy, service, keys):
        self.proxy, self.service, self.keys = proxy, service, keys

    def token(self, tenant_id, sub="alice"):
        return mint(self.keys.corp_rsa, claims(tenant_id, sub=sub))

    def calls_about(self, tenant_id):
        return [c for c in self.service.calls
                if c.request.descriptors
                and c.request.descriptors[0].get("tenant_id") == tenant_id]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, wasm_path, upstream, jwks_server, keys):
    """One Envoy (2 workers) whose ``ratelimit`` cluster is the scripted service. Calls may
    take up to 30 s here: a test holds them to see them side by side, and no call must time
    out while held (nothing here is about timeouts)."""
    workdir = tmp_path_factory.mktemp("global-protocol")
    with ScriptedRateLimitService() as service:
        config = global_config(keys, TENANTS, plans={"pro": None}, extra_entries=["user_id"],
                               timeout_ms=30000)
        proxy = replica(workdir / "envoy", wasm_path, upstream.port, jwks_server.port, config,
                        service.port)
        try:
            start_all([proxy])
            yield Gateway(proxy, service, keys)
        finally:
            proxy.stop()


@pytest.fixture
def service(gateway):
    """The scripted service, answering OK and holding nothing at the start of each test."""
    gateway.service.answer_code(rls.OK)
    gateway.service.hold_until_concurrent(0, 0)
    yield gateway.service
    gateway.service.answer_code(rls.OK)
    gateway.service.hold_until_concurrent(0, 0)


def test_admission_asks_requests_and_tokens_side_by_side_then_debits_the_usage(
        gateway, service):
    """Two calls at admission, both in flight at once (the service holds each until the other
    arrived), each with one descriptor: usage, plan, tenant_id, then the extra user_id entry;
    requests with hits_addend 1, tokens with hits_addend 0 (a check). After the answer, the
    real usage (200 + 100 tokens) is debited on the same entries, once the filter has read it
    from the answer (the client may still be reading the answer's last bytes then)."""
    # Calls made one after the other would each wait out the hold (and be seen alone).
    service.hold_until_concurrent(2, timeout=15,
                                  match=lambda r: r.descriptor.get("tenant_id") == "acme")
    resp = gateway.proxy.client.chat(token=gateway.token("acme"),
                                     headers=answer("openai-json", in_=200, out=100))
    service.hold_until_concurrent(0, 0)
    assert resp.status == 200, resp
    # The two calls at admission came before the answer; the debit may follow any moment.
    calls = gateway.calls_about("acme")[:2]
    assert len(calls) == 2, [c.request for c in calls]
    assert max(c.concurrent for c in calls) == 2, \
        "the requests and tokens calls were not in flight at the same time"

    by_usage = {c.request.descriptor.get("usage"): c.request for c in calls}
    assert set(by_usage) == {"requests", "tokens"}
    for usage, request in by_usage.items():
        assert request.domain == "tenant-guard"
        assert request.descriptor.entries == [("usage", usage), ("plan", "pro"),
                                              ("tenant_id", "acme"), ("user_id", "alice")]
    requests, tokens = by_usage["requests"], by_usage["tokens"]
    assert requests.descriptor.hits_addend == 1, requests
    # The top-level field too (limitador-server reads only that one).
    assert requests.hits_addend == 1, requests
    assert tokens.descriptor.hits_addend == 0, f"the tokens check must add 0: {tokens}"
    assert tokens.hits_addend == 0, f"the tokens check must add 0: {tokens}"

    debit = _wait_for_debit(gateway, "acme", timeout=30)
    assert debit.arrived > max(c.arrived for c in calls), "the debit came before admission"
    assert debit.request.domain == "tenant-guard"
    assert debit.request.descriptor.entries == [("usage", "tokens"), ("plan", "pro"),
                                                ("tenant_id", "acme"), ("user_id", "alice")]
    assert debit.request.descriptor.hits_addend == 300, debit.request
    # Limitador-server reads only the top-level field: it must carry the amount too.
    assert debit.request.hits_addend == 300, debit.request
    # One debit, accepted at once: no more calls.
    assert len(gateway.calls_about("acme")) == 3


def _wait_for_debit(gateway, tenant_id, timeout):
    def debit():
        calls = gateway.calls_about(tenant_id)
        return calls[2] if len(calls) >= 3 else None
    return wait_for(debit, timeout=timeout, interval=0.01,
                    message=f"the token debit of {tenant_id}")


def test_streamed_usage_is_debited_too(gateway, service):
    """A streamed answer's usage (the final chunk the filter asked for) is debited the same
    way: 50 + 25 tokens."""
    stream = gateway.proxy.client.open_stream(
        token=gateway.token("streamer"),
        body={"model": "gpt-4o", "stream": True,
              "messages": [{"role": "user", "content": "hi"}]},
        headers=answer("openai-sse", in_=50, out=25))
    assert stream.status == 200
    stream.read_all()
    debit = _wait_for_debit(gateway, "streamer", timeout=30)
    assert debit.request.descriptor.get("usage") == "tokens"
    assert debit.request.descriptor.hits_addend == 75, debit.request


def test_a_tenant_without_plan_is_sent_as_plan_none(gateway, service):
    resp = gateway.proxy.client.chat(token=gateway.token("loner", sub="bob"))
    assert resp.status == 200, resp
    calls = gateway.calls_about("loner")[:2]
    assert sorted(c.request.descriptor.entries[0][1] for c in calls) == ["requests", "tokens"]
    for call in calls:
        assert call.request.descriptor.entries[1:] == [("plan", "none"), ("tenant_id", "loner"),
                                                       ("user_id", "bob")]


def test_over_limit_answer_refuses_with_the_services_headers_and_reset(gateway, service,
                                                                        upstream):
    """OVER_LIMIT on the requests call: 429 request_quota_exceeded in the OpenAI shape, with
    Retry-After from the answer's duration_until_reset and the answer's
    response_headers_to_add."""
    def over_limit_for_requests(request, context):
        if request.descriptor.get("usage") == "requests":
            return rls.encode_response(rls.OVER_LIMIT, reset_after_s=42, headers=[
                ("x-ratelimit-limit", "10, 10;w=60"), ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "42")])
        return rls.encode_response(rls.OK)
    service.answer_with(over_limit_for_requests)
    resp = gateway.proxy.client.chat(token=gateway.token("refused-co"))
    assert_denied(resp, 429, "request_quota_exceeded", upstream=upstream)
    assert resp.header("retry-after") == "42", resp.headers
    assert resp.header("x-ratelimit-limit") == "10, 10;w=60", resp.headers
    assert resp.header("x-ratelimit-remaining") == "0"
    assert resp.header("x-ratelimit-reset") == "42"


def test_over_limit_on_tokens_refuses_with_token_quota_exceeded(gateway, service, upstream):
    def over_limit_for_tokens(request, context):
        code = rls.OVER_LIMIT if request.descriptor.get("usage") == "tokens" else rls.OK
        return rls.encode_response(code)
    service.answer_with(over_limit_for_tokens)
    resp = gateway.proxy.client.chat(token=gateway.token("tokens-co"))
    assert_denied(resp, 429, "token_quota_exceeded", upstream=upstream)
    # No duration_until_reset in the answer: Retry-After 1.
    assert resp.header_values("retry-after") == ["1"], resp.headers


def test_a_local_refusal_never_calls_the_service(gateway, service, upstream):
    """Local quotas decide first: the tenant's 1 request per hour is used up, so the next
    request is refused locally and no new call reaches the service."""
    token = gateway.token("tight-co")
    first = gateway.proxy.client.chat(token=token, headers=answer("openai-json", in_=0, out=0))
    assert first.status == 200, first
    before = [c for c in gateway.calls_about("tight-co")
              if c.request.descriptor.get("usage") == "requests"]
    assert len(before) == 1
    refused = gateway.proxy.client.chat(token=token)
    assert_quota_denied(refused, "request_quota_exceeded", [("requests", 1, LONG)],
                        refusing=LONG, upstream=upstream)
    after = gateway.calls_about("tight-co")
    assert len(after) == 2, [c.request for c in after]  # the first request's two calls only
