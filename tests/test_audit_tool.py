"""The audit line's JSON Schema (schema/audit-line.schema.json) and the auditors' commands
(`tenant-guard audit`), checked against audit lines written here from the contract alone (not
by the tool's own generator): the schema accepts them and refuses malformed ones; `tenant-guard
audit verify` agrees with this independent reading of the hash rule."""

import hashlib
import json
import subprocess
from pathlib import Path

import jsonschema
import pytest

from harness.cli import cli_binary

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "schema" / "audit-line.schema.json"
ZERO = "0" * 64


class Chain:
    """A chain written by the contract: compact JSON, members in order, hash last."""

    def __init__(self, chain_id: str):
        self.id, self.seq, self.prev = chain_id, 0, ZERO

    def _seal(self, members: dict) -> str:
        body = json.dumps(members, separators=(",", ":"))
        digest = hashlib.sha256(f"{self.prev}\n{body}".encode()).hexdigest()
        line = body[:-1] + f',"hash":"{digest}"}}'
        self.prev, self.seq = digest, self.seq + 1
        return line

    def start(self, time: str) -> str:
        return self._seal({"type": "tenant_guard.audit", "chain": self.id, "seq": self.seq,
                           "prev": self.prev, "time": time, "event": "start",
                           "config_sha256": "ab" * 32})

    def event(self, time: str, event="deny", reason="invalid_token", tenant="acme",
              claimed=None, decision="deny") -> str:
        return self._seal({
            "type": "tenant_guard.audit", "chain": self.id, "seq": self.seq,
            "prev": self.prev, "time": time, "event": event, "tenant": tenant,
            "user": "alice", "provider": "corp-idp", "claimed": claimed or {},
            "method": "POST", "path": "/v1/chat/completions", "path_sent": None,
            "source": "192.0.2.7:40112", "request_id": "0123456789abcdef" * 2,
            "client_request_id": None, "decision": decision, "reason": reason,
            "detail": None})


def log_lines():
    a, b = Chain("00000000000000a1"), Chain("00000000000000b2")
    prefix = "[2026-11-29 23:30:04.123][17][info][wasm] [context.cc:1198] wasm log tg: "
    lines = [prefix + a.start("2026-11-29T23:30:00.000Z"),
             prefix + b.start("2026-11-29T23:30:00.001Z")]
    for i in range(40):
        chain = a if i % 3 else b
        t = f"2026-11-29T23:{31 + i // 10:02}:{i % 60:02}.{i:03}Z"
        if i % 5 == 0:
            line = chain.event(t, "cross_tenant", "cross_tenant_path",
                               claimed={"path_namespace": "globex"})
        elif i % 7 == 0:
            line = chain.event(t, "shadow", "request_quota_exceeded", decision="allow")
        else:
            line = chain.event(t, tenant=None if i % 4 == 0 else "acme")
        lines.append(prefix + line)
        if i == 20:
            lines.append("[2026-11-29 23:32:00.000][17][info][main] unrelated Envoy line")
    return lines


def record(line: str) -> dict:
    return json.loads(line[line.index('{"type":"tenant_guard.audit"'):])


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def test_the_schema_accepts_the_contracts_lines(validator):
    for line in log_lines():
        if "tenant_guard.audit" in line:
            errors = [e.message for e in validator.iter_errors(record(line))]
            assert errors == [], line


@pytest.mark.parametrize("change", [
    lambda r: r.update(chain="A1"),
    lambda r: r.update(seq=-1),
    lambda r: r.update(prev="xyz"),
    lambda r: r.update(time="2026-11-29 23:30:00"),
    lambda r: r.update(event="denied"),
    lambda r: r.pop("reason"),
    lambda r: r.update(request_id="not-hex"),
    lambda r: r.update(decision="maybe"),
    lambda r: r.update(claimed={"tenant": "globex"}),
    lambda r: r.update(token="eyJ..."),
    lambda r: r.update(config_sha256="ab" * 32),
], ids=["chain", "seq", "prev", "time", "event", "reason", "request_id", "decision",
        "claimed", "extra-member", "config-on-request"])
def test_the_schema_refuses_malformed_request_records(validator, change):
    rec = record(log_lines()[5])
    assert rec["event"] != "start"
    change(rec)
    assert list(validator.iter_errors(rec))


def test_the_schema_refuses_malformed_start_records(validator):
    start = record(log_lines()[0])
    assert not list(validator.iter_errors(start))
    for change in (lambda r: r.update(tenant="acme"), lambda r: r.pop("config_sha256"),
                   lambda r: r.update(prev="1" * 64)):
        broken = dict(start)
        change(broken)
        assert list(validator.iter_errors(broken)), broken


def run(args, lines, tmp_path):
    log = tmp_path / "audit.log"
    log.write_text("\n".join(lines) + "\n")
    return subprocess.run([str(cli_binary()), "audit", *args, str(log)], capture_output=True,
                          text=True, timeout=60)


def test_the_tool_verifies_lines_written_from_the_contract(tmp_path):
    result = run(["verify"], log_lines(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: 42 records in 2 chain(s)" in result.stdout


def test_the_tool_pinpoints_tampering_in_those_lines(tmp_path):
    lines = log_lines()
    edited = list(lines)
    edited[10] = edited[10].replace('"POST"', '"GET"')
    result = run(["verify"], edited, tmp_path)
    assert result.returncode == 1
    assert "BROKEN at line 11" in result.stdout and "edited" in result.stdout
    deleted = lines[:10] + lines[11:]
    chain = record(lines[10])["chain"]
    following = next(i for i in range(11, len(lines))
                     if "tenant_guard.audit" in lines[i] and record(lines[i])["chain"] == chain)
    result = run(["verify"], deleted, tmp_path)
    assert f"chain {chain}: BROKEN at line {following}" in result.stdout, result.stdout
    assert "deleted" in result.stdout


def test_query_and_summary_read_those_lines(tmp_path):
    lines = log_lines()
    records = [record(l) for l in lines if "tenant_guard.audit" in l]
    result = run(["query", "--reason", "cross_tenant_path"], lines, tmp_path)
    out = [json.loads(l) for l in result.stdout.splitlines()]
    assert len(out) == sum(r.get("reason") == "cross_tenant_path" for r in records) > 0
    result = run(["summary", "--json"], lines, tmp_path)
    summary = json.loads(result.stdout)
    assert summary["cross_tenant_by_source"] == {"192.0.2.7": len(out)}
    assert summary["shadow_by_reason"]["request_quota_exceeded"] == \
        sum(r["event"] == "shadow" for r in records)
    # Records without a tenant are counted, under (none), never dropped.
    assert summary["denials_by_reason"]["invalid_token"] == \
        sum(r.get("reason") == "invalid_token" and r["decision"] == "deny" for r in records)


# === The filter's own audit stream, read by the tool ===

def test_the_filters_audit_stream_verifies_and_matches_the_schema(gateway_factory, keys,
                                                                  validator, tmp_path):
    """Real Envoy, real filter: denials and cross-tenant attempts on two workers; both carriers
    (the Envoy log and the audit access log) verify with the tool, every line matches the
    schema, and a line cut out of the Envoy log is pinpointed."""
    from harness.expect import assert_denied
    from harness.keys import claims, mint
    from harness.plugin_config import gateway_config, tenant
    from harness.wait import wait_for

    proxy = gateway_factory(gateway_config(keys, {"acme": tenant(), "globex": tenant()},
                                           routing={"path_prefix": "/tenants/{namespace}"}),
                            name="audit-e2e")
    acme = mint(keys.corp_rsa, claims("acme"))
    sent = 0
    for _ in range(6):
        assert_denied(proxy.client.get("/v1/models"), 401, "missing_token")
        assert_denied(proxy.client.get("/v1/models", token=acme,
                                       headers={"x-tenant-id": "globex"}),
                      403, "tenant_header_mismatch")
        assert_denied(proxy.client.get("/tenants/globex/v1/models", token=acme), 403,
                      "cross_tenant_path")
        sent += 3

    def lines_of(text):
        return [l for l in text.splitlines() if '{"type":"tenant_guard.audit"' in l]

    envoy_log = wait_for(lambda: (lambda t: t if sum(
        '"event":"start"' not in l for l in lines_of(t)) >= sent else None)(proxy.read_log()),
        timeout=15, message="the audit lines in the Envoy log")
    audit_file = wait_for(lambda: (lambda t: t if sum(
        '"event":"start"' not in l for l in lines_of(t)) >= sent else None)(
        proxy.audit_log_path.read_text() if proxy.audit_log_path.exists() else ""),
        timeout=15, message="the audit access log")
    for text in (envoy_log, audit_file):
        for line in lines_of(text):
            errors = [e.message for e in validator.iter_errors(record(line))]
            assert errors == [], line
    for name, text in (("envoy.log", envoy_log), ("audit.log", audit_file)):
        result = run(["verify"], text.splitlines(), tmp_path)
        assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"
        assert "every chain intact" in result.stdout

    summary = json.loads(run(["summary", "--json"], envoy_log.splitlines(), tmp_path).stdout)
    assert summary["cross_tenant_by_reason"] == {"tenant_header_mismatch": 6,
                                                 "cross_tenant_path": 6}
    assert summary["cross_tenant_by_tenant"] == {"acme": 12}
    assert summary["denials_by_reason"]["missing_token"] == 6

    # Cut one request line out of the middle of a chain: the tool names the next line of it.
    lines = envoy_log.splitlines()
    audit_at = [i for i, l in enumerate(lines) if '{"type":"tenant_guard.audit"' in l
                and '"event":"start"' not in l]
    def next_in_chain(i):
        chain = record(lines[i])["chain"]
        return next((j for j in audit_at if j > i and record(lines[j])["chain"] == chain), None)

    victim = next(i for i in audit_at[len(audit_at) // 2:] if next_in_chain(i) is not None)
    chain, after = record(lines[victim])["chain"], next_in_chain(victim)
    result = run(["verify"], lines[:victim] + lines[victim + 1:], tmp_path)
    assert result.returncode == 1
    # `after` moved up one line when the victim went; line numbers are 1-based.
    assert f"chain {chain}: BROKEN at line {after}" in result.stdout, result.stdout
    assert "deleted" in result.stdout
