"""In-process HTTP servers on 127.0.0.1: the recording upstream (what reached the model
backend?) and the JWKS server (what does the remote identity provider publish?)."""

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .wait import wait_for


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: list  # [(lower-case name, value)] in arrival order, duplicates kept
    body: bytes

    def header(self, name):
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name):
        name = name.lower()
        return [value for key, value in self.headers if key == name]


class _Server:
    """A ThreadingHTTPServer on an ephemeral loopback port, served from a daemon thread."""

    def __init__(self, handler_class):
        handler = type(handler_class.__name__, (handler_class,), {"owner": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner = None  # set per server

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status, body: bytes, content_type="application/json", extra=()):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        raise NotImplementedError

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = (
        lambda self: self._handle())


# === Recording upstream ===

def chat_completion(model="gpt-4o", prompt_tokens=12, completion_tokens=7) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "hello from upstream"}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class _UpstreamHandler(_Handler):
    def _handle(self):
        body = self._read_body()
        record = RecordedRequest(self.command, self.path,
                                 [(k.lower(), v) for k, v in self.headers.items()], body)
        self.owner._record(record)
        self._send(200, json.dumps(chat_completion()).encode())


class RecordingUpstream(_Server):
    """Answers every request 200 with an OpenAI-style chat completion and records it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._requests = []
        super().__init__(_UpstreamHandler)

    def _record(self, record):
        with self._lock:
            self._requests.append(record)

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    def find(self, request_id):
        """The recorded requests carrying ``x-request-id: request_id``."""
        return [r for r in self.requests if request_id in r.header_values("x-request-id")]

    def received(self, request_id) -> RecordedRequest:
        """The one request with this id; fails if it never arrived or arrived twice."""
        found = self.find(request_id)
        assert len(found) == 1, f"upstream saw {len(found)} requests with id {request_id}"
        return found[0]


# === JWKS server ===

class _JwksHandler(_Handler):
    def _handle(self):
        self._read_body()
        owner = self.owner
        mode, document, path = owner._snapshot(self)
        if self.path.split("?")[0] != path:
            self._send(404, b'{"error":"not found"}')
        elif mode == "fail":
            self._send(500, b'{"error":"jwks unavailable"}')
        elif mode == "garbage":
            self._send(200, b'{"keys": [{"kty": "RSA", "n": 12}, not json at all')
        else:
            self._send(200, json.dumps(document).encode())


class JwksServer(_Server):
    """Serves a JWK Set at ``path``. Tests can swap the set (rotation), make the server answer
    500 (``fail``) or invalid JSON (``garbage``), and count fetches."""

    def __init__(self, jwks: dict, path="/jwks.json"):
        self._lock = threading.Lock()
        self._jwks = jwks
        self._mode = "ok"
        self._fetches = 0
        self.path = path
        self.last_headers = []
        super().__init__(_JwksHandler)

    def _snapshot(self, handler):
        with self._lock:
            self._fetches += 1
            self.last_headers = [(k.lower(), v) for k, v in handler.headers.items()]
            return self._mode, self._jwks, self.path

    @property
    def fetches(self) -> int:
        with self._lock:
            return self._fetches

    def set_jwks(self, jwks: dict):
        with self._lock:
            self._jwks = jwks
            self._mode = "ok"

    def set_mode(self, mode: str):
        assert mode in ("ok", "fail", "garbage"), mode
        with self._lock:
            self._mode = mode

    def wait_for_fetches(self, count: int, timeout=10.0) -> int:
        """Wait until ``count`` more fetches than now have been served."""
        target = self.fetches + count
        return wait_for(lambda: self.fetches >= target, timeout=timeout,
                        message=lambda: f"{count} JWKS fetches (have {self.fetches}, "
                                        f"want {target})")
