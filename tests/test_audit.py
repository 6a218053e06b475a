"""The audit stream for security teams: one chained JSON line for every denial, cross-tenant
event and shadow would-be denial, in the Envoy log and in an access log of its own; and shadow
mode, which computes and records every quota decision but refuses nothing."""

import json
import time

import pytest

from harness.answers import answer
from harness.audit import GENESIS, audit_event, audit_lines, verify
from harness.expect import assert_denied
from harness.keys import GLOBEX_ISSUER, claims, mint
from harness.plugin_config import gateway_config, tenant, windows
from harness.records import filter_record
from harness.wait import wait_for

DECADE = 10 * 365 * 86400


def denials(keys):
    """(kind, request kwargs, status, reason) for the denials the main Envoy can give."""
    acme = mint(keys.corp_rsa, claims("acme"))
    return [
        ("missing token", {}, 401, "missing_token"),
        ("invalid token", {"token": "not.a.jwt"}, 401, "invalid_token"),
        ("expired", {"token": mint(keys.corp_rsa, claims("acme", exp=int(time.time()) - 3600))},
         401, "token_expired"),
        ("unknown tenant", {"token": mint(keys.globex_rsa, claims("hooli", iss=GLOBEX_ISSUER))},
         403, "unknown_tenant"),
        ("suspended", {"token": mint(keys.corp_rsa, claims("initech"))}, 403,
         "tenant_suspended"),
        ("foreign provider", {"token": mint(keys.corp_rsa, claims("globex"))}, 403,
         "tenant_provider_mismatch"),
        ("tenant header", {"token": acme, "headers": {"x-tenant-id": "globex"}}, 403,
         "tenant_header_mismatch"),
        ("object", {"token": acme, "path": "/v1/files/file-of-someone-else"}, 404,
         "provider_object_not_found"),
        ("path", {"token": acme, "path": "/v1/files/a%2fb"}, 400, "invalid_path"),
    ]


def test_every_denial_leaves_one_chained_audit_line(envoy, keys):
    sent = []
    for kind, kwargs, status, reason in denials(keys):
        path = kwargs.pop("path", "/v1/models")
        resp = envoy.client.get(path, **kwargs)
        assert_denied(resp, status, reason)
        sent.append((kind, resp.request_id, reason))
    for kind, request_id, reason in sent:
        line = audit_event(envoy, request_id)
        assert (line["decision"], line["reason"]) == ("deny", reason), (kind, line)
        assert line["event"] == ("cross_tenant" if reason in (
            "tenant_provider_mismatch", "tenant_header_mismatch",
            "provider_object_not_found") else "deny"), line
        assert len(line["request_id"]) == 32 and line["source"].startswith("127.0.0.1:")
        assert line["time"].endswith("Z")
        record = filter_record(envoy, request_id)
        assert record["request_id"] == line["request_id"]
    by_reason = {line["reason"]: line for _, line in audit_lines(envoy.read_log())
                 if line["event"] != "start"}
    assert by_reason["tenant_header_mismatch"]["claimed"] == {"tenant_header": "globex"}
    assert by_reason["provider_object_not_found"]["claimed"] == \
        {"object": "file-of-someone-else"}
    assert by_reason["provider_object_not_found"]["tenant"] == "acme"
    text = envoy.read_log()
    assert "Bearer" not in "".join(raw for raw, _ in audit_lines(text))


def test_the_chains_are_intact_in_the_envoy_log_and_in_the_audit_file(envoy, keys):
    """Both carriers keep every chain whole: the Envoy log (the filter's own lines, start
    records included) and the audit access log (filter state set in on_log, which Envoy 1.40
    writes after it; each chain's start record goes out with its first event)."""
    for _ in range(12):  # new connections: both workers
        envoy.client.get("/v1/models")
    def complete():
        from_log = verify(audit_lines(envoy.read_log()))
        from_file = verify(audit_lines(envoy.audit_log_path.read_text()))
        return (from_log, from_file) if from_file == {
            c: s for c, s in from_log.items() if len(s) > 1} else None
    from_log, from_file = wait_for(complete, timeout=15,
                                   message="the audit file to catch up with the Envoy log")
    for chain, seqs in from_file.items():
        assert seqs == list(range(len(seqs))), (chain, seqs[:5])
    assert len(from_file) >= 2, "both workers' chains"
    starts = [line for _, line in audit_lines(envoy.audit_log_path.read_text())
              if line["event"] == "start"]
    assert all(len(s["config_sha256"]) == 64 and s["prev"] == GENESIS for s in starts)


def test_a_deleted_edited_or_reordered_line_breaks_the_chain(envoy, keys):
    for _ in range(4):
        envoy.client.get("/v1/models")
    lines = wait_for(lambda: (lambda ls: ls if len(ls) >= 5 else None)(
        audit_lines(envoy.audit_log_path.read_text())), message="audit lines")
    chain = max({l["chain"] for _, l in lines}, key=lambda c: sum(
        1 for _, l in lines if l["chain"] == c))
    mine = [(raw, line) for raw, line in lines if line["chain"] == chain]
    verify(mine)
    with pytest.raises(AssertionError, match="seq jumps"):
        verify(mine[:1] + mine[2:])
    edited = mine[1][0].replace('"deny"', '"allow"', 1)
    with pytest.raises(AssertionError, match="hash does not recompute"):
        verify([mine[0], (edited, json.loads(edited))] + mine[2:])
    with pytest.raises(AssertionError):
        verify([mine[0], mine[2], mine[1]] + mine[3:])


# === Shadow mode ===

@pytest.mark.parametrize("where", ["plan", "tenant"])
def test_shadow_mode_admits_and_records_what_enforcement_would_refuse(gateway_factory,
                                                                     upstream, keys, where):
    plans = {"small": {"requests": windows((2, DECADE))}}
    if where == "plan":
        plans["small"]["enforcement"] = "shadow"
        acme = tenant("small")
    else:
        acme = tenant("small") | {"enforcement": "shadow"}
    config = gateway_config(keys, {"acme": acme, "strict": tenant("small")}, plans=plans)
    proxy = gateway_factory(config, name=f"shadow-{where}")
    token = mint(keys.corp_rsa, claims("acme"))
    responses = [proxy.client.chat(token=token) for _ in range(5)]
    assert [r.status for r in responses] == [200] * 5, "shadow mode refused a request"
    records = [filter_record(proxy, r.request_id) for r in responses]
    assert [(r["decision"], r["reason"], r.get("shadow", False)) for r in records] == \
        [("allow", "ok", False)] * 2 + [("allow", "request_quota_exceeded", True)] * 3
    for resp in responses[2:]:
        line = audit_event(proxy, resp.request_id)
        assert (line["event"], line["decision"], line["reason"]) == \
            ("shadow", "allow", "request_quota_exceeded")
    name = "wasmcustom.tenant_guard.tenant.acme.requests_shadow_denied.reason." \
           "request_quota_exceeded"
    assert wait_for(lambda: proxy.stat(name) == 3 or None, message=name)
    # A tenant on the same plan without shadow mode is refused as usual.
    strict = mint(keys.corp_rsa, claims("strict"))
    statuses = [proxy.client.chat(token=strict).status for _ in range(3)]
    if where == "plan":
        assert statuses == [200] * 3
    else:
        assert statuses == [200, 200, 429]
