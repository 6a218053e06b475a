"""The audit stream (src/policy/audit.rs): finding its lines in a log and verifying their
chains, as an auditor would (`tenant-guard audit verify` does the same)."""

import hashlib
import hmac
import json

from .wait import wait_for

MARKER = '{"type":"tenant_guard.audit"'
GENESIS = "0" * 64


def audit_lines(text: str) -> list:
    """(raw JSON text, parsed) of every audit line in a log, in order."""
    found = []
    for line in text.splitlines():
        start = line.find(MARKER)
        if start >= 0:
            raw = line[start:].rstrip()
            found.append((raw, json.loads(raw)))
    return found


def line_hash(prev: str, text: str, key: bytes = None) -> str:
    """A line's hash: SHA-256 of prev, a newline and the text; HMAC-SHA256 under ``key`` for a
    keyed chain (``audit.key_env``)."""
    data = (prev + "\n" + text).encode()
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def verify(lines: list, key: bytes = None) -> dict:
    """Follows every chain; returns {chain: [seq, ...]}; raises AssertionError at the first
    broken link (seq, prev or hash). With ``key``, every chain must be keyed with it: its start
    names the key's fingerprint and every hash is an HMAC under it."""
    chains = {}
    for number, (raw, line) in enumerate(lines, 1):
        chain = chains.setdefault(line["chain"], {"prev": None, "seqs": []})
        suffix = f',"hash":"{line["hash"]}"}}'
        assert raw.endswith(suffix), f"line {number}: hash is not the last member"
        text = raw[:-len(suffix)] + "}"
        if chain["prev"] is None:
            expected_prev = GENESIS if line["seq"] == 0 else line["prev"]
        else:
            expected_prev = chain["prev"]
            assert line["seq"] == chain["seqs"][-1] + 1, f"line {number}: seq jumps"
        assert line["prev"] == expected_prev, f"line {number}: prev does not link"
        if line["seq"] == 0:
            fingerprint = hashlib.sha256(key).hexdigest()[:16] if key else None
            assert line.get("key_fingerprint") == fingerprint, \
                f"line {number}: the start names key {line.get('key_fingerprint')}"
        digest = line_hash(line["prev"], text, key)
        assert digest == line["hash"], f"line {number}: hash does not recompute"
        chain["prev"] = line["hash"]
        chain["seqs"].append(line["seq"])
    return {chain: c["seqs"] for chain, c in chains.items()}


def audit_event(envoy, request_id, timeout=10.0) -> dict:
    """The audit line (from the Envoy log) of the request sent with this x-request-id."""
    def find():
        found = [line for _, line in audit_lines(envoy.read_log())
                 if line.get("client_request_id") == request_id]
        assert len(found) <= 1, found
        return found[0] if found else None
    return wait_for(find, timeout=timeout, message=f"the audit line of {request_id}")
