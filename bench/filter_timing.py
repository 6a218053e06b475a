#!/usr/bin/env python3
"""The filter module's own work per request, under Node's V8 with a mock proxy-wasm host
(bench/filter_timing.mjs): `make bench`'s configuration and workloads (GET with a cached token,
the LLM-shaped POST, the streaming POST), with the host reduced to map lookups.

    bench/filter_timing.py [--tenants N] [MODULE.wasm ...]   # default: target/tenant_guard.wasm

Several modules are timed alternately, batch by batch (for A/B comparisons). Prints each
module's linear memory once configured (``--tenants``: the policy lists N tenants, default 3,
as ``make bench``'s 10,000-tenant case does), then µs per request (best of 7 batches) and the
hostcalls each request makes. Reports, never asserts.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

import run as R  # noqa: E402  (make bench: configuration, bodies, answers)
from harness import keys as K  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument("modules", nargs="*", default=[str(R.TG_WASM)])
    args = parser.parse_args()
    modules = args.modules
    ring = K.KeyRing()
    token = K.mint(ring.corp_rsa, K.claims("acme", now=int(time.time()), ttl=7200))
    chat = (R.USAGE_FIXTURES / "openai_chat.json").read_text()
    stream = (R.USAGE_FIXTURES / "openai_chat_stream.sse").read_text()
    # What wrk sends, and what Envoy's direct responses answer.
    request = [(":authority", "127.0.0.1:10000"), (":path", R.GET_PATH), (":method", "GET"),
               (":scheme", "http"), ("authorization", f"Bearer {token}"),
               ("x-forwarded-proto", "http"), ("x-request-id", "3b0a7a8e-8d8c-4f2b-9d4e-1f6f0f0e2a11")]
    post = [(k, v) for k, v in request if k not in (":path", ":method")] + [
        (":path", R.CHAT_PATH), (":method", "POST"), ("content-type", "application/json"),
        ("content-length", str(len(R.CHAT_BODY)))]
    sse = [(k, R.STREAM_PATH if k == ":path" else v) for k, v in post]
    sse = [(k, str(len(R.STREAM_BODY)) if k == "content-length" else v) for k, v in sse]

    def answer(body, content_type):
        return [(":status", "200"), ("content-type", content_type),
                ("content-length", str(len(body)))]

    scenario = {
        "config": R.tenant_guard_config(ring.corp_jwks(), tenants=args.tenants),
        "workloads": {
            "get": {"request_headers": request, "request_body": None,
                    "response_headers": answer('{"object":"list","data":[]}', "application/json"),
                    "response_body": '{"object":"list","data":[]}'},
            "post": {"request_headers": post, "request_body": R.CHAT_BODY,
                     "response_headers": answer(chat, "application/json"),
                     "response_body": chat, "iterations": 10000},
            "sse": {"request_headers": sse, "request_body": R.STREAM_BODY,
                    "response_headers": answer(stream, "text/event-stream"),
                    "response_body": stream, "iterations": 10000},
        },
    }
    out = REPO / "target" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "filter_timing.json"
    path.write_text(json.dumps(scenario))
    return subprocess.run(["node", "--no-liftoff", str(REPO / "bench" / "filter_timing.mjs"),
                           str(path), *modules]).returncode


if __name__ == "__main__":
    sys.exit(main())
