#!/usr/bin/env python3
"""A tiny OpenAI-compatible upstream for the tenant-guard demo (stdlib only).

    tools/demo_upstream.py PORT

Serves on 127.0.0.1:PORT:
  POST /v1/chat/completions  a canned chat.completion with `usage` (or SSE chunks when the
                             request says "stream": true; the last chunk carries `usage`)
  GET  /v1/models            a model list
  GET  /healthz              {"status": "ok"}
Every response echoes what the gateway told it about the caller, so the demo shows the
filter at work: x-demo-upstream-saw-tenant, x-demo-upstream-saw-user and
x-demo-upstream-saw-authorization ("absent" when the gateway stripped the token; the token
itself is never echoed). One line per request goes to stderr.
"""

import json
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODELS = ["gpt-4o", "gpt-4o-mini"]
REPLY = "Hello from the tenant-guard demo upstream."


def count_tokens(text: str) -> int:
    """A rough token estimate (about 4 characters a token), good enough for a demo."""
    return max(1, (len(text) + 3) // 4)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tenant-guard-demo-upstream"

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    def _caller_headers(self):
        return [
            ("x-demo-upstream-saw-tenant", self.headers.get("x-tenant-id", "")),
            ("x-demo-upstream-saw-user", self.headers.get("x-user-id", "")),
            ("x-demo-upstream-saw-authorization",
             "present" if self.headers.get("authorization") else "absent"),
        ]

    def _log(self, status):
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} {self.command} {self.path} -> {status} "
                         f"tenant={self.headers.get('x-tenant-id', '-')} "
                         f"user={self.headers.get('x-user-id', '-')}\n")
        sys.stderr.flush()

    def _read_body(self):
        """The request body, by content-length or chunked (the gateway drops content-length
        when it may rewrite a body, e.g. to add stream_options.include_usage). None when the
        body is malformed or cut short."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size_line = self.rfile.readline(1024)
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    return None
                if size == 0:
                    while True:  # trailers, up to the empty line
                        line = self.rfile.readline(65537)
                        if line in (b"\r\n", b"\n"):
                            return body
                        if not line:
                            return None
                chunk = self.rfile.read(size)
                if len(chunk) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                    return None
                body += chunk
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        return raw if len(raw) == length else None

    def _read_json(self):
        raw = self._read_body()
        if raw is None:
            self.close_connection = True
            return None
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return None

    def _send(self, status, payload, content_type="application/json"):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for name, value in self._caller_headers():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self._log(status)

    def _error(self, status, message):
        self._send(status, {"error": {"type": "invalid_request_error", "code": None,
                                      "message": message}})

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/v1/models":
            self._send(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "demo"} for m in MODELS]})
        elif path == "/healthz":
            self._send(200, {"status": "ok"})
        else:
            self._error(404, f"no route for GET {path}")

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        request = self._read_json()
        if path != "/v1/chat/completions":
            self._error(404, f"no route for POST {path}")
            return
        if not isinstance(request, dict):
            self._error(400, "request body must be a JSON object")
            return
        model = request.get("model") or MODELS[0]
        prompt = "".join(str(m.get("content", "")) for m in request.get("messages") or []
                         if isinstance(m, dict))
        usage = {"prompt_tokens": count_tokens(prompt),
                 "completion_tokens": count_tokens(REPLY)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if request.get("stream"):
            self._stream(completion_id, created, model, usage)
            return
        self._send(200, {
            "id": completion_id, "object": "chat.completion", "created": created,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": REPLY}}],
            "usage": usage,
        })

    def _stream(self, completion_id, created, model, usage):
        def chunk(delta, finish=None, with_usage=False):
            event = {"id": completion_id, "object": "chat.completion.chunk",
                     "created": created, "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if with_usage:
                event["choices"] = []
                event["usage"] = usage
            return f"data: {json.dumps(event)}\n\n".encode()
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": word + " "}) for word in REPLY.split()]
        events += [chunk({}, "stop"), chunk({}, with_usage=True), b"data: [DONE]\n\n"]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        for name, value in self._caller_headers():
            self.send_header(name, value)
        self.end_headers()
        for event in events:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.write(b"0\r\n\r\n")
        self._log(200)


class Server(ThreadingHTTPServer):
    # A burst of connections (curl loops, `make bench`) is queued, not refused: Python's
    # default listen backlog is 5.
    request_queue_size = 1024
    daemon_threads = True


def main(argv):
    if len(argv) != 2 or not argv[1].isdigit():
        sys.stderr.write("usage: demo_upstream.py PORT\n")
        return 2
    server = Server(("127.0.0.1", int(argv[1])), Handler)
    sys.stderr.write(f"demo upstream listening on 127.0.0.1:{argv[1]}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
