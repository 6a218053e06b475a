"""Every request leaves one record: filter state in the access log and one JSON line in the
Envoy log. The token never appears in either."""

import re

import pytest

from harness.keys import GLOBEX_ISSUER, claims, mint
from harness.records import filter_record

# No verified identity: the record and the access log name no tenant or user (null: the
# filter sets no filter state and the record's field is null).
NO_IDENTITY = object()


def _scenarios(keys):
    corp = lambda tenant, **kw: mint(keys.corp_rsa, claims(tenant, **kw))  # noqa: E731
    globex = lambda tenant: mint(keys.globex_rsa, claims(tenant, iss=GLOBEX_ISSUER))  # noqa: E731
    return {
        # name: (request kwargs, status, decision, reason, tenant, user, provider)
        "allowed": (dict(token=corp("acme")), 200, "allow", "ok", "acme", "alice", "corp-idp"),
        "allowed_default_tenant": (dict(token=corp("hooli", sub="gavin")), 200, "allow", "ok",
                                   "hooli", "gavin", "corp-idp"),
        "allowed_x_api_key": (dict(headers={"x-api-key": corp("acme")}), 200, "allow", "ok",
                              "acme", "alice", "corp-idp"),
        "bypass": (dict(path="/healthz"), 200, "allow", "bypass", NO_IDENTITY, NO_IDENTITY,
                   None),
        "missing_token": ({}, 401, "deny", "missing_token", NO_IDENTITY, NO_IDENTITY, None),
        "invalid_token": (dict(token="a.b.c"), 401, "deny", "invalid_token", NO_IDENTITY,
                          NO_IDENTITY, None),
        # A forged token claiming acme must never be attributed to acme.
        "forged_token": (dict(token=mint(keys.stranger_rsa.with_kid("rsa-1"),
                                         claims("acme", sub="mallory"))),
                         401, "deny", "invalid_token", NO_IDENTITY, NO_IDENTITY, None),
        "token_expired": (dict(token=corp("acme", ttl=-3600)), 401, "deny", "token_expired",
                          NO_IDENTITY, NO_IDENTITY, None),
        "unknown_tenant": (dict(token=globex("hooli")), 403, "deny", "unknown_tenant",
                           "hooli", "alice", "globex-idp"),
        "tenant_suspended": (dict(token=corp("initech")), 403, "deny", "tenant_suspended",
                             "initech", "alice", "corp-idp"),
        "tenant_provider_mismatch": (dict(token=globex("acme")), 403, "deny",
                                     "tenant_provider_mismatch", "acme", "alice",
                                     "globex-idp"),
        "tenant_header_mismatch": (dict(token=corp("acme"), headers={"x-tenant-id": "globex"}),
                                   403, "deny", "tenant_header_mismatch", "acme", "alice",
                                   "corp-idp"),
    }


SCENARIOS = ["allowed", "allowed_default_tenant", "allowed_x_api_key", "bypass",
             "missing_token", "invalid_token", "forged_token", "token_expired", "unknown_tenant",
             "tenant_suspended", "tenant_provider_mismatch", "tenant_header_mismatch"]


def _send(client, kwargs):
    kwargs = dict(kwargs)
    path = kwargs.pop("path", "/v1/chat/completions")
    if path == "/v1/chat/completions":
        return client.chat(**kwargs), "POST", path
    return client.get(path, **kwargs), "GET", path


def _check(value, expected, field):
    if expected is NO_IDENTITY:
        assert value is None, f"{field} names an unverified identity: {value!r}"
    else:
        assert value == expected, f"{field}: expected {expected!r}, got {value!r}"


@pytest.mark.parametrize("name", SCENARIOS)
def test_request_leaves_one_access_log_line_with_its_decision(envoy, client, keys, name):
    kwargs, status, decision, reason, tenant, user, _ = _scenarios(keys)[name]
    resp, _, path = _send(client, kwargs)
    assert resp.status == status, resp
    line = envoy.access_log_entry(resp.request_id)
    _check(line["decision"], decision, "decision")
    _check(line["reason"], reason, "reason")
    _check(line["tenant"], tenant, "tenant")
    _check(line["user"], user, "user")
    # The filter's own record id: 32 hex digits, never the client's x-request-id.
    assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"]), line
    assert line["x_request_id"] == resp.request_id
    assert int(line["status"]) == status
    assert line["path"] == path


@pytest.mark.parametrize("name", SCENARIOS)
def test_request_leaves_one_json_record_in_the_envoy_log(envoy, client, keys, name):
    kwargs, status, decision, reason, tenant, user, provider = _scenarios(keys)[name]
    resp, method, path = _send(client, kwargs)
    assert resp.status == status, resp
    record = filter_record(envoy, resp.request_id)
    _check(record.get("decision"), decision, "decision")
    _check(record.get("reason"), reason, "reason")
    _check(record.get("tenant"), tenant, "tenant")
    _check(record.get("user"), user, "user")
    assert record.get("method") == method
    assert record.get("path") == path
    assert record.get("status") == status and isinstance(record["status"], int), record
    assert "provider" in record and record["provider"] == provider, record
    if decision == "deny":
        assert isinstance(record.get("detail"), str) and record["detail"], record


def test_tokens_never_appear_in_any_log(envoy, client, keys):
    tokens = {
        "valid": mint(keys.corp_rsa, claims("acme", sub="secret-sub-1")),
        "expired": mint(keys.corp_ec256, claims("acme", ttl=-3600)),
        "suspended": mint(keys.corp_ed, claims("initech")),
        "mismatch": mint(keys.globex_rsa, claims("acme", iss=GLOBEX_ISSUER)),
        "api_key": mint(keys.corp_hs, claims("acme")),
        "forged": mint(keys.stranger_rsa.with_kid("rsa-1"), claims("acme")),
    }
    ids = []
    for name, token in tokens.items():
        if name == "api_key":
            resp = client.chat(headers={"x-api-key": token})
        else:
            resp = client.chat(token=token)
        ids.append(resp.request_id)
    for request_id in ids:
        envoy.access_log_entry(request_id)
        filter_record(envoy, request_id)
    envoy.wait_access_log_flushed()
    logs = {"envoy.log": envoy.read_log(),
            "access.log": envoy.access_log_path.read_text(errors="replace")}
    for log_name, text in logs.items():
        for name, token in tokens.items():
            signature = token.rsplit(".", 1)[1]
            assert token not in text, f"{name} token found in {log_name}"
            assert signature not in text, f"{name} token's signature found in {log_name}"


def test_access_log_has_a_line_for_every_completed_request(envoy, client, keys):
    """One line per completed request, and the lines of this test's requests (one admitted,
    one refused) carry the filter's decision. Requests the filter never saw (Envoy's own 400
    and 431 answers in other tests) have lines without a decision, so only this test's own
    request ids say anything about the filter."""
    admitted = client.chat(token=mint(keys.corp_rsa, claims("acme")))
    refused = client.chat()
    assert (admitted.status, refused.status) == (200, 401), (admitted, refused)
    lines = envoy.wait_access_log_flushed()
    assert len(lines) == envoy.requests_completed()
    own = {resp.request_id: [line for line in lines if line.get("x_request_id") ==
                             resp.request_id] for resp in (admitted, refused)}
    assert [len(found) for found in own.values()] == [1, 1], own
    first, second = own[admitted.request_id][0], own[refused.request_id][0]
    assert (first["decision"], first["reason"]) == ("allow", "ok"), first
    assert (second["decision"], second["reason"]) == ("deny", "missing_token"), second
    for line in (first, second):  # the filter's own record id
        assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"]), line
