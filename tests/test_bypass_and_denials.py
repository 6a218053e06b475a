"""Bypass paths, and the shape of every denial."""

import pytest

from harness.expect import assert_allowed, assert_denied
from harness.keys import claims, mint


def test_healthz_is_served_without_a_token(client, upstream):
    resp = client.get("/healthz")
    assert resp.status == 200, resp
    assert upstream.received(resp.request_id).path == "/healthz"


def test_healthz_is_served_even_with_a_garbage_token(client, upstream):
    resp = client.get("/healthz", token="garbage")
    assert resp.status == 200, resp
    upstream.received(resp.request_id)


@pytest.mark.parametrize("path", ["/healthz/../v1/models", "/healthz/x", "/healthzz",
                                  "/v1/healthz", "/HEALTHZ"])
def test_bypass_paths_match_exactly(client, upstream, path):
    assert_denied(client.get(path), 401, "missing_token", upstream)


@pytest.mark.parametrize("status,reason,make", [
    (401, "missing_token", lambda keys: {}),
    (401, "invalid_token", lambda keys: {"token": "a.b.c"}),
    (401, "token_expired", lambda keys: {"token": mint(keys.corp_rsa,
                                                       claims("acme", ttl=-3600))}),
    (403, "tenant_suspended", lambda keys: {"token": mint(keys.corp_rsa,
                                                          claims("initech"))}),
], ids=["missing_token", "invalid_token", "token_expired", "tenant_suspended"])
def test_denial_is_an_openai_style_json_error(client, upstream, keys, status, reason, make):
    error = assert_denied(client.chat(**make(keys)), status, reason, upstream)
    assert set(error) >= {"type", "code", "message"}


def test_denial_of_a_get_request_has_the_same_shape(client, upstream):
    assert_denied(client.get("/v1/models"), 401, "missing_token", upstream)


def test_admitted_get_request_reaches_the_upstream(client, upstream, keys):
    resp = client.get("/v1/models", token=mint(keys.corp_rsa, claims("acme")))
    assert_allowed(resp, upstream)
