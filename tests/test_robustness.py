"""Hostile input never takes a worker down: each malformed request is refused with a 4xx, and
afterwards valid requests still get 200 on every worker with no Wasm VM failure."""

import base64
import pytest

from harness.expect import assert_denied, assert_healthy_on_all_workers
from harness.keys import b64url, b64url_json, claims, mint
from harness.records import filter_record


def _malformed_authorization(keys):
    header = b64url_json({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"})
    payload = b64url_json(claims("acme"))
    return {
        "non_utf8_bytes": b"Bearer \xff\xfe\xfd." + bytes(range(0x80, 0xa0)) + b".\xc3\x28",
        "non_utf8_inside_base64": b"Bearer " + header.encode() + b".\xe2\x82." + b"sig",
        "empty_token": b"Bearer ",
        "bearer_without_space": b"Bearer",
        "one_segment": b"Bearer abcdef",
        "two_segments": f"Bearer {header}.{payload}".encode(),
        "five_segments": f"Bearer {header}.{payload}.a.b.c".encode(),
        "only_dots": b"Bearer " + b"." * 200,
        "invalid_base64": b"Bearer %%%.@@@.###",
        "standard_base64_with_padding": b"Bearer " + base64.b64encode(b'{"alg":"RS256"}')
                                        + b"." + base64.b64encode(b'{"a":1}') + b".x==",
        "header_not_json": f"Bearer {b64url(b'not json')}.{payload}.c2ln".encode(),
        "header_json_array": f"Bearer {b64url(b'[1,2,3]')}.{payload}.c2ln".encode(),
        "header_alg_number": f"Bearer {b64url_json({'alg': 256, 'kid': 'rsa-1'})}."
                             f"{payload}.c2ln".encode(),
        "header_kid_object": f"Bearer {b64url_json({'alg': 'RS256', 'kid': {'a': 1}})}."
                             f"{payload}.c2ln".encode(),
        "payload_not_json": f"Bearer {header}.{b64url(b'{not json')}.c2ln".encode(),
        "payload_deeply_nested": f"Bearer {header}.{b64url(b'[' * 5000 + b']' * 5000)}"
                                 f".c2ln".encode(),
        "huge_garbage_token_16k": b"Bearer " + b"A" * 5000 + b"." + b"B" * 6000 + b"."
                                  + b"C" * 5400,
        "control_characters": b"Bearer a\x01b\x7f.c.d",
    }


MALFORMED = ["non_utf8_bytes", "non_utf8_inside_base64", "empty_token",
             "bearer_without_space", "one_segment", "two_segments", "five_segments",
             "only_dots", "invalid_base64", "standard_base64_with_padding", "header_not_json",
             "header_json_array", "header_alg_number", "header_kid_object",
             "payload_not_json", "payload_deeply_nested", "huge_garbage_token_16k",
             "control_characters"]


# Refused by Envoy's own HTTP/1 codec (400, plain text) before any filter runs (seen on 1.40).
ENVOY_REJECTS = {"control_characters"}
# Envoy trims the trailing space of "Bearer ", and "Bearer" alone is not the source's prefix
# "Bearer ": no token was given at all.
NO_TOKEN_AT_ALL = {"empty_token", "bearer_without_space"}


@pytest.fixture
def healthy(envoy, client, keys):
    """Call after a hostile request: the gateway still serves valid requests everywhere."""
    token = mint(keys.corp_rsa, claims("acme"))
    return lambda: assert_healthy_on_all_workers(envoy, lambda: client.chat(token=token))


def assert_refused_by_envoy(status, headers, body, expected_status, expected_body):
    """An answer of Envoy's own (its codec or header limits), not the filter's JSON denial."""
    assert status == expected_status, (status, headers, body)
    assert headers.get("content-type") == "text/plain", headers
    assert body == expected_body, body


def raw_answer(resp):
    """(status, {header: value}, body) of a RawResponse."""
    assert not resp.reset, "the connection was reset before an answer"
    headers = dict((name.strip().lower(), value.strip()) for name, _, value in
                   (line.decode().partition(":") for line in resp.head.split(b"\r\n")[1:]))
    return resp.status, headers, resp.body


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_authorization_is_refused_and_workers_survive(client, upstream, keys,
                                                                healthy, case):
    value = _malformed_authorization(keys)[case]
    resp = client.chat(headers=[("authorization", value)])
    if case in ENVOY_REJECTS:
        assert_refused_by_envoy(resp.status, dict(resp.headers), resp.body, 400, b"Bad Request")
    elif case in NO_TOKEN_AT_ALL:
        assert_denied(resp, 401, "missing_token")
    else:
        assert_denied(resp, 401, "invalid_token")
    assert upstream.find(resp.request_id) == []
    healthy()


def test_non_utf8_x_api_key_is_refused_and_workers_survive(client, upstream, healthy):
    resp = client.chat(headers=[("x-api-key", b"\xff\xfe\x80abc.\xc0\xaf.x")])
    assert_denied(resp, 401, "invalid_token", upstream)
    healthy()


def test_non_utf8_tenant_header_is_handled_and_workers_survive(client, upstream, keys,
                                                               healthy):
    token = mint(keys.corp_rsa, claims("acme"))
    resp = client.chat(token=token, headers=[("x-tenant-id", b"ac\xffme")])
    assert_denied(resp, 403, "tenant_header_mismatch", upstream)
    healthy()


# Validly signed tokens whose claims have the wrong JSON types: {claim: value}.
WRONG_TYPES = {
    "tenant_number": {"tenant_id": 12345},
    "tenant_object": {"tenant_id": {"id": "acme"}},
    "tenant_list": {"tenant_id": ["acme"]},
    "tenant_null": {"tenant_id": None},
    "tenant_bool": {"tenant_id": True},
    "exp_string": {"exp": "tomorrow"},
    "nbf_string": {"nbf": "yesterday"},
    "audience_number": {"aud": 42},
    "issuer_list": {"iss": ["https://idp.corp.test"]},
}


@pytest.mark.parametrize("case", list(WRONG_TYPES))
def test_signed_token_with_wrongly_typed_claim_is_refused(client, upstream, keys, healthy,
                                                          case):
    payload = dict(claims("acme"), **WRONG_TYPES[case])
    resp = client.chat(token=mint(keys.corp_rsa, payload))
    assert_denied(resp, 401, "invalid_token", upstream)
    healthy()


def test_signed_token_with_absurd_exp_does_not_break_the_worker(envoy, client, upstream, keys,
                                                                healthy):
    """An exp of 10^30 is no NumericDate the filter can compute with: refused, not admitted
    forever."""
    payload = dict(claims("acme"), exp=10 ** 30)
    resp = client.chat(token=mint(keys.corp_rsa, payload))
    assert_denied(resp, 401, "invalid_token", upstream)
    assert filter_record(envoy, resp.request_id)["detail"] == \
        "token exp is not a valid NumericDate"
    healthy()


def test_64k_header_is_refused_and_workers_survive(envoy, client, healthy):
    """Over Envoy's 60 KiB header limit: 431 from Envoy itself, the filter never runs."""
    resp = client.raw(b"GET /v1/models HTTP/1.1\r\nhost: gw.test\r\n"
                      b"authorization: Bearer " + b"A" * (64 * 1024) + b"\r\n"
                      b"x-request-id: tg-test-64k\r\n\r\n")
    assert_refused_by_envoy(*raw_answer(resp), 431, b"Request Header Fields Too Large")
    healthy()


def test_many_headers_are_refused_and_workers_survive(envoy, client, healthy):
    """Over Envoy's limit of 100 headers: 431 from Envoy itself."""
    lines = b"".join(b"x-pad-%d: v\r\n" % i for i in range(200))
    resp = client.raw(b"GET /v1/models HTTP/1.1\r\nhost: gw.test\r\n" + lines
                      + b"authorization: Bearer x.y.z\r\n\r\n")
    assert_refused_by_envoy(*raw_answer(resp), 431, b"Request Header Fields Too Large")
    healthy()


def test_json_claims_with_unicode_are_handled(client, upstream, keys):
    token = mint(keys.corp_rsa, claims("acme", sub="ålice-\u2603", email="a@b.test"))
    resp = client.chat(token=token)
    assert resp.status == 200, resp
    seen = upstream.received(resp.request_id)
    assert seen.header_values("x-tenant-id") == ["acme"]
