"""What reaches the upstream for an admitted request: the verified identity as headers
(replacing anything the client sent), no token, everything else untouched."""

import json

from harness.expect import assert_allowed
from harness.keys import claims, mint
from harness.plugin_config import without_isolation_tags


def test_upstream_receives_verified_identity_and_no_token(client, upstream, keys):
    token = mint(keys.corp_rsa, claims("acme", sub="alice", email="alice@acme.test"))
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    resp = client.post("/v1/chat/completions?trace=1", token=token, body=body, headers=[
        ("x-tenant-id", "acme"),
        ("x-user-id", "mallory"), ("x-user-id", "eve"),
        ("x-user-email", "mallory@evil.test"),
        ("x-custom", "kept"), ("x-custom", "kept-too"),
    ])
    seen = assert_allowed(resp, upstream)
    assert seen.method == "POST"
    assert seen.path == "/v1/chat/completions?trace=1"
    assert seen.header_values("x-tenant-id") == ["acme"]
    assert seen.header_values("x-user-id") == ["alice"]
    assert seen.header_values("x-user-email") == ["alice@acme.test"]
    assert seen.header_values("authorization") == []
    assert seen.header_values("x-custom") == ["kept", "kept-too"]
    assert seen.header("content-type") == "application/json"
    assert without_isolation_tags(json.loads(seen.body)) == body


def test_tenant_header_is_added_when_the_client_sent_none(client, upstream, keys):
    seen = assert_allowed(client.chat(token=mint(keys.corp_ec256, claims("acme"))), upstream)
    assert seen.header_values("x-tenant-id") == ["acme"]
    assert seen.header_values("x-user-id") == ["alice"]


def test_client_identity_header_is_removed_when_the_claim_is_absent(client, upstream, keys):
    token = mint(keys.corp_rsa, claims("acme", email=None))
    resp = client.chat(token=token, headers={"x-user-email": "mallory@evil.test"})
    seen = assert_allowed(resp, upstream)
    assert seen.header_values("x-user-email") == []
    assert seen.header_values("x-user-id") == ["alice"]


def test_default_tenant_is_forwarded_as_its_own_tenant_id(client, upstream, keys):
    token = mint(keys.corp_rsa, claims("hooli", sub="gavin", email="gavin@hooli.test"))
    seen = assert_allowed(client.chat(token=token), upstream)
    assert seen.header_values("x-tenant-id") == ["hooli"]
    assert seen.header_values("x-user-id") == ["gavin"]
    assert seen.header_values("x-user-email") == ["gavin@hooli.test"]


def test_token_from_x_api_key_is_not_forwarded_upstream(client, upstream, keys):
    token = mint(keys.corp_rsa, claims("acme"))
    seen = assert_allowed(client.chat(headers={"x-api-key": token}), upstream)
    assert seen.header_values("x-api-key") == []
    assert seen.header_values("authorization") == []
    assert seen.header_values("x-tenant-id") == ["acme"]
    assert all(token not in value for _, value in seen.headers)


def test_bearer_token_is_stripped_when_an_x_api_key_is_sent_too(client, upstream, keys):
    token = mint(keys.corp_rsa, claims("acme"))
    seen = assert_allowed(client.chat(token=token, headers={"x-api-key": "opaque"}), upstream)
    assert seen.header_values("authorization") == []
    assert all(token not in value for _, value in seen.headers)
