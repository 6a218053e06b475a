"""The keyed audit chain in real Envoy: with ``audit.key_env`` every audit line's hash is an
HMAC under a key from Envoy's process environment (``host_env_keys``), the start lines name the
key's fingerprint, and ``tenant-guard audit verify --key-env`` passes the file as written and
fails one that was edited and re-chained without the key, which an unkeyed chain cannot
tell."""

import hashlib
import json
import os
import secrets
import subprocess

import jsonschema
import pytest

from harness import bootstrap as bs
from harness.audit import audit_lines, line_hash, verify
from harness.cli import cli_binary
from harness.envoy_process import Envoy
from harness.expect import assert_denied
from harness.keys import claims, mint
from harness.plugin_config import main_plugin_config
from harness.wait import wait_for
from harness.workers import until_every_worker
from test_audit_tool import SCHEMA
from test_bad_config import assert_refused

AUDIT_KEY = f"tgsecret-audit-{secrets.token_hex(24)}"
FINGERPRINT = hashlib.sha256(AUDIT_KEY.encode()).hexdigest()[:16]


def keyed_policy(keys, variable="TG_AUDIT_KEY"):
    config = main_plugin_config(keys)
    config["audit"] = {"key_env": variable}
    return config


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, wasm_path, upstream, jwks_server, keys):
    filters = [bs.wasm_filter(wasm_path, keyed_policy(keys), env_keys=["TG_AUDIT_KEY"])]
    with Envoy(tmp_path_factory.mktemp("envoy-audit-key"),
               bs.gateway(upstream.port, jwks_server.port, filters),
               env={"TG_AUDIT_KEY": AUDIT_KEY}) as proxy:
        served = until_every_worker(proxy, lambda: proxy.client.get("/v1/models"),
                                    lambda resp: assert_denied(resp, 401, "missing_token"))
        # Every refusal is audited: audit_file waits for exactly these.
        proxy.audited_denials = sum(len(answers) for answers in served.values())
        for tenant_id in ("initech", "hooli"):
            resp = proxy.client.get("/v1/models", token=mint(keys.corp_rsa, claims(tenant_id)))
            proxy.audited_denials += resp.status >= 400
        yield proxy


def audit_file(proxy):
    """The audit stream's own access log, once every worker's chain is in it."""
    def complete():
        lines = audit_lines(proxy.audit_log_path.read_text()) \
            if proxy.audit_log_path.exists() else []
        starts = [line for _, line in lines if line["event"] == "start"]
        denials = [line for _, line in lines if line["event"] == "deny"]
        done = len(starts) >= proxy.concurrency and len(denials) >= proxy.audited_denials
        return lines if done else None
    wait_for(complete, message="every worker's chain in the audit log")
    return proxy.audit_log_path


def cli_verify(path, *args, key=AUDIT_KEY):
    env = dict(os.environ)
    env.pop("TG_AUDIT_KEY", None)
    if key is not None:
        env["TG_AUDIT_KEY"] = key
    return subprocess.run([str(cli_binary()), "audit", "verify", *args, str(path)],
                          capture_output=True, text=True, timeout=60, env=env)


def test_every_chain_is_keyed_and_verifies_with_the_key(gateway):
    path = audit_file(gateway)
    lines = audit_lines(path.read_text())
    starts = [line for _, line in lines if line["event"] == "start"]
    assert {s["key_fingerprint"] for s in starts} == {FINGERPRINT}
    chains = verify(lines, key=AUDIT_KEY.encode())
    assert len(chains) == gateway.concurrency
    with pytest.raises(AssertionError):
        verify(lines)
    # The same in the Envoy log, and the lines are what the schema says.
    assert verify(audit_lines(gateway.read_log()), key=AUDIT_KEY.encode())
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    for _, line in lines:
        assert list(validator.iter_errors(line)) == [], line

    result = cli_verify(path, "--key-env", "TG_AUDIT_KEY")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"OK: {len(lines)} records in {gateway.concurrency} chain(s)" in result.stdout
    result = cli_verify(path)
    assert result.returncode == 1
    assert f"the chain is keyed (key {FINGERPRINT})" in result.stdout


def rechained(lines, edit):
    """The file as a forger without the key writes it: a record edited, then every chain's
    hashes rebuilt with SHA-256 (the start line's key_fingerprint dropped, or kept)."""
    out, prev = [], {}
    for raw, line in lines:
        line = dict(line)
        line.pop("hash")
        edit(line)
        line["prev"] = prev.get(line["chain"], "0" * 64)
        text = json.dumps(line, separators=(",", ":"))
        digest = line_hash(line["prev"], text)
        prev[line["chain"]] = digest
        out.append(text[:-1] + f',"hash":"{digest}"}}')
    return out


def test_a_file_edited_and_rechained_without_the_key_no_longer_verifies(gateway, tmp_path):
    lines = audit_lines(audit_file(gateway).read_text())

    def hide_initech(line):
        if line.get("tenant") == "initech":
            line["tenant"] = "acme"
        line.pop("key_fingerprint", None)

    forged = tmp_path / "forged.log"
    forged.write_text("\n".join(rechained(lines, hide_initech)) + "\n")
    # Without a key such a file is as good as the real one: what the keyless mode cannot tell.
    unkeyed = cli_verify(forged)
    assert unkeyed.returncode == 0, unkeyed.stdout
    result = cli_verify(forged, "--key-env", "TG_AUDIT_KEY")
    assert result.returncode == 1, result.stdout
    assert "the start record names no key" in result.stdout
    # Keeping the start lines' fingerprint does not help the forger either.
    kept = tmp_path / "kept.log"
    kept.write_text("\n".join(rechained(lines, lambda l: None)) + "\n")
    result = cli_verify(kept, "--key-env", "TG_AUDIT_KEY")
    assert result.returncode == 1
    assert "the record does not match its hash: this line was edited" in result.stdout
    # The wrong key is no key.
    result = cli_verify(audit_file(gateway), "--key-env", "TG_AUDIT_KEY",
                        key="tgsecret-not-the-key-0123456789abcdef")
    assert result.returncode == 1


def test_the_key_is_nowhere_but_envoys_environment(gateway):
    gateway.wait_access_log_flushed()
    texts = [gateway.read_log(), gateway.access_log_path.read_text(),
             audit_file(gateway).read_text(), gateway.admin_get("/config_dump")[1],
             gateway.admin_get("/stats")[1]]
    assert all(AUDIT_KEY not in text for text in texts)
    assert all("tgsecret" not in text for text in texts)
    assert f"audit chain keyed with TG_AUDIT_KEY (key fingerprint {FINGERPRINT})" in texts[0]


def test_a_missing_audit_key_refuses_the_configuration(gateway_factory, keys):
    proxy = gateway_factory(keyed_policy(keys, "TG_AUDIT_KEY_ELSEWHERE"),
                            env={"TG_AUDIT_KEY_ELSEWHERE": AUDIT_KEY}, env_keys=[],
                            start=False, name="no-audit-key")
    assert_refused(proxy, "audit.key_env: environment variable TG_AUDIT_KEY_ELSEWHERE is not "
                          "set in the Wasm VM")
    short = gateway_factory(keyed_policy(keys), env={"TG_AUDIT_KEY": "short"},
                            start=False, name="short-audit-key")
    assert_refused(short, "audit.key_env: environment variable TG_AUDIT_KEY must hold at least "
                          "32 characters of secret", check=False)
