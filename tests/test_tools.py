"""The demo tools: mint_token.py prints a token the filter accepts, demo_upstream.py speaks
enough OpenAI to show what the gateway forwarded."""

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from harness import bootstrap as bs
from harness.client import Client
from harness.keys import b64url_uint
from harness.ports import reserve_port
from harness.wait import wait_for

REPO = Path(__file__).resolve().parent.parent
MINT = REPO / "tools" / "mint_token.py"
UPSTREAM = REPO / "tools" / "demo_upstream.py"
DEMO_KEY = REPO / "envoy" / "demo-keys" / "demo-rs256.pem"
DEMO_ISSUER = "https://idp.demo.tenant-guard.test"


def mint(*args) -> str:
    result = subprocess.run([sys.executable, str(MINT), *args], capture_output=True,
                            text=True, timeout=30, check=True)
    lines = result.stdout.splitlines()
    assert len(lines) == 1, f"mint_token printed more than the token: {result.stdout!r}"
    return lines[0]


def demo_public_key():
    return serialization.load_pem_private_key(DEMO_KEY.read_bytes(), None).public_key()


def test_mint_token_prints_only_a_verifiable_demo_token():
    token = mint("--tenant", "globex", "--sub", "bob", "--ttl", "120")
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT",
                                                "kid": "demo-rs256"}
    decoded = jwt.decode(token, demo_public_key(), algorithms=["RS256"],
                         audience="genai-gateway", issuer=DEMO_ISSUER)
    assert decoded["tenant_id"] == "globex"
    assert decoded["sub"] == "bob"
    assert decoded["exp"] - decoded["iat"] == 120


@pytest.fixture
def demo_upstream():
    """The demo upstream on a leased port, ready when it says so: it prints its "listening"
    line once its socket is bound (something else accepting on the port proves nothing)."""
    with reserve_port() as lease:
        port = lease.port
        proc = subprocess.Popen([sys.executable, str(UPSTREAM), str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines = []
        # Drained all along: the upstream logs every request to stderr.
        threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
        try:
            ready = f"demo upstream listening on 127.0.0.1:{port}\n"
            wait_for(lambda: ready in lines or proc.poll() is not None, timeout=10,
                     message=lambda: f"the demo upstream's ready line (stderr {lines})")
            assert proc.poll() is None, f"the demo upstream exited: {lines}"
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_demo_upstream_answers_chat_completions_with_usage(demo_upstream):
    client = Client(demo_upstream)
    resp = client.chat(headers={"x-tenant-id": "acme", "x-user-id": "alice"})
    assert resp.status == 200
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["usage"]["total_tokens"] == (body["usage"]["prompt_tokens"]
                                             + body["usage"]["completion_tokens"])
    assert resp.header("x-demo-upstream-saw-tenant") == "acme"
    assert resp.header("x-demo-upstream-saw-user") == "alice"
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"]


def test_demo_upstream_streams_sse_with_usage_last(demo_upstream):
    resp = Client(demo_upstream).post(body={"model": "gpt-4o", "stream": True,
                                            "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status == 200
    assert resp.header("content-type") == "text/event-stream"
    events = [line[len("data: "):] for line in resp.body.decode().splitlines()
              if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "usage" in json.loads(events[-2])


def test_demo_upstream_reads_chunked_request_bodies(demo_upstream):
    body = json.dumps({"model": "gpt-4o-mini", "stream": False,
                       "messages": [{"role": "user", "content": "hello chunks"}]}).encode()
    framed = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 10]), body[i:i + 10])
                      for i in range(0, len(body), 10)) + b"0\r\n\r\n"
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: demo\r\n"
            b"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
    # Two requests on one connection: the second is read only if the first body was
    # consumed exactly.
    with socket.create_connection(("127.0.0.1", demo_upstream), timeout=10) as sock:
        sock.sendall(head + framed + head.replace(b"\r\n\r\n", b"\r\nconnection: close"
                                                  b"\r\n\r\n") + framed)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    answers = received.split(b"HTTP/1.1 ")[1:]
    assert [a[:3] for a in answers] == [b"200", b"200"], received[:400]
    for answer in answers:
        completion = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert completion["model"] == "gpt-4o-mini"
        assert completion["usage"]["prompt_tokens"] == 3  # "hello chunks": 12 chars


def test_minted_token_is_admitted_by_the_filter(envoy_factory, wasm_path, demo_upstream,
                                                jwks_server):
    numbers = demo_public_key().public_numbers()
    config = {
        "providers": {"demo-idp": {"issuer": DEMO_ISSUER, "audiences": ["genai-gateway"],
                                   "jwks": {"keys": [{"kty": "RSA", "kid": "demo-rs256",
                                                      "n": b64url_uint(numbers.n),
                                                      "e": b64url_uint(numbers.e)}]}}},
        "identity": {"token_sources": [{"header": "authorization", "prefix": "Bearer "}],
                     "tenant_claim": "tenant_id", "user_claim": "sub",
                     "tenant_header": "x-tenant-id", "forward_claims": {"sub": "x-user-id"},
                     "strip_token": True},
        "tenants": {"acme": {"status": "active", "providers": ["demo-idp"]}},
    }
    proxy = envoy_factory(make_config=bs.gateway(demo_upstream, jwks_server.port,
                                                 [bs.wasm_filter(wasm_path, config)]),
                          name="demo")
    # The gateway drops content-length on chat completions (it may add stream_options), so
    # the demo upstream must read the chunked body to see the model asked for.
    resp = proxy.client.chat(token=mint("--tenant", "acme"),
                             body={"model": "gpt-4o-mini",
                                   "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status == 200, resp
    assert resp.json()["model"] == "gpt-4o-mini"
    assert resp.header("x-demo-upstream-saw-tenant") == "acme"
    assert resp.header("x-demo-upstream-saw-user") == "demo-user"
    assert resp.header("x-demo-upstream-saw-authorization") == "absent"
