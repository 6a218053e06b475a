"""In-process HTTP servers on 127.0.0.1: the recording upstream (what reached the model
backend?) and the JWKS server (what does the remote identity provider publish?)."""

import gzip
import json
import select
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import answers
from .wait import wait_for


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: list  # [(lower-case name, value)] in arrival order, duplicates kept
    body: bytes
    answer: "answers.Answered" = None  # what a scripted answer sent, when there was one

    def header(self, name):
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name):
        name = name.lower()
        return [value for key, value in self.headers if key == name]


class _HTTPServer(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a burst of parallel connections from Envoy
    # (40 clients in the quota tests) overflows it, and the connections dropped meanwhile
    # end in Envoy's connect timeout (503) though nothing is wrong.
    request_queue_size = 1024


class _Server:
    """A ThreadingHTTPServer on an ephemeral loopback port, served from a daemon thread."""

    def __init__(self, handler_class):
        handler = type(handler_class.__name__, (handler_class,), {"owner": self})
        self.httpd = _HTTPServer(("127.0.0.1", 0), handler)
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
        """The request body, chunked or by content-length. Raises ConnectionError when the
        peer closes before the body is complete (never returns a truncated body)."""
        def line():
            text = self.rfile.readline(65537)
            if not text.endswith(b"\n"):
                raise ConnectionError("request body cut short")
            return text

        def exactly(size):
            data = self.rfile.read(size)
            if len(data) != size:
                raise ConnectionError("request body cut short")
            return data

        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            body = b""
            while True:
                size = int(line().split(b";")[0].strip(), 16)
                if size == 0:
                    while line() not in (b"\r\n", b"\n"):
                        pass
                    return body
                body += exactly(size)
                line()
        length = int(self.headers.get("content-length") or 0)
        return exactly(length) if length else b""

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

def _answers_early(spec_text) -> bool:
    """Whether a request's scripted answer goes out before its body is read."""
    if not spec_text:
        return False
    try:
        return answers.parse(spec_text).early
    except ValueError:
        return False


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


# Longest a scripted answer waits for the test's release (or for the peer to go away).
HOLD_LIMIT_S = 15.0


class _UpstreamHandler(_Handler):
    # Stream events go out in separate TCP segments, as a real model server flushes them.
    disable_nagle_algorithm = True

    def _handle(self):
        headers = [(k.lower(), v) for k, v in self.headers.items()]
        request_id = self.headers.get("x-request-id") or ""
        self.owner._start(request_id, self.command, self.path, headers)
        spec_text = self.headers.get(answers.ANSWER_HEADER)
        if _answers_early(spec_text):
            # Answers before reading the body, and closes: what is left of it is never read.
            body = b""
            self.close_connection = True
        else:
            try:
                body = self._read_body()
            except (OSError, ValueError):
                # The proxy gave up on the request before its body was complete.
                self.close_connection = True
                return
        record = RecordedRequest(self.command, self.path, headers, body)
        canned = self.owner._canned_for(request_id)
        if canned is None and spec_text is None:
            self.owner._record(record)
            self._send(200, json.dumps(chat_completion()).encode())
            return
        if canned is not None:
            status, content_type, payload, trailers, extra = canned
            if self.close_connection:
                # An early answer ends the connection and says so, so the proxy never reuses it.
                extra = tuple(extra) + (("connection", "close"),)
            record.answer = answers.Answered("canned", status, "", False)
            record.answer.body += payload
            record.answer.completed = record.answer.finished = True
            self.owner._record(record)
            if trailers:
                self._send_chunked_with_trailers(status, payload, content_type)
            else:
                self._send(status, payload, content_type, extra)
            return
        try:
            spec = answers.parse(spec_text)
        except ValueError as exc:
            self.owner._record(record)
            self._send(400, json.dumps({"error": f"bad {answers.ANSWER_HEADER}: {exc}"})
                       .encode())
            return
        plan = answers.plan(spec, body)
        record.answer = answers.Answered(spec.kind, plan.status, plan.model, plan.stream,
                                         object_id=plan.object_id)
        self.owner._record(record)
        try:
            self._answer(spec, plan, record.answer, request_id)
        except OSError:
            self.close_connection = True  # the peer went away mid-answer
        finally:
            record.answer.holding = False
            record.answer.finished = True

    def _send_chunked_with_trailers(self, status, data, content_type):
        """A whole body sent chunked, in two chunks, ended by a trailer block."""
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("transfer-encoding", "chunked")
        self.send_header("trailer", "x-upstream-trailer")
        self.end_headers()
        half = len(data) // 2
        for piece in (data[:half], data[half:]):
            if piece:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\nx-upstream-trailer: done\r\n\r\n")

    def _send_in_pieces(self, status, data, content_type, extra, spec):
        """A whole body (content-length framing) written in ``spec.split`` pieces."""
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        for piece in answers.pieces(data, spec.split):
            if spec.gap_ms:
                time.sleep(spec.gap_ms / 1000)  # separate reads at the proxy
            self.wfile.write(piece)

    def _wait_release(self, answered, request_id):
        answered.holding = True
        try:
            self.owner._wait_release(request_id, self._peer_gone)
        finally:
            answered.holding = False

    def _peer_gone(self) -> bool:
        """The proxy closed or reset its connection (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _answer(self, spec, plan, answered, request_id):
        if spec.delay_ms:
            time.sleep(spec.delay_ms / 1000)  # shapes the answer; nothing waits on it
        if spec.hold and not spec.stream:
            self._wait_release(answered, request_id)
        # The record is updated before each write, so it is never behind what a client
        # has already received; a failed write undoes `completed`.
        # An answer before the body was read ends the connection, and says so.
        closing = (("connection", "close"),) if spec.early else ()
        if not plan.stream:
            event = plan.events[0]
            data, extra = event.data, closing
            if "gzip" in (self.headers.get("accept-encoding") or "").lower():
                # Like the real APIs: a whole answer is compressed when the client allows it.
                data, extra = gzip.compress(data), (("content-encoding", "gzip"),) + closing
                answered.encoding = "gzip"
            answered.body += data
            answered.reported = event.reported
            answered.events_sent = 1
            answered.completed = True
            try:
                if spec.trailers:
                    self._send_chunked_with_trailers(plan.status, data, plan.content_type)
                elif spec.split <= 1:
                    self._send(plan.status, data, plan.content_type, extra)
                else:
                    self._send_in_pieces(plan.status, data, plan.content_type, extra, spec)
            except OSError:
                answered.completed = False
                raise
            return
        self.send_response(plan.status)
        self.send_header("content-type", plan.content_type)
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        for name, value in closing:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        for index, event in enumerate(plan.events):
            if spec.cut_after is not None and index == spec.cut_after:
                answered.cut = True
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if spec.hold_after is not None and index == spec.hold_after:
                self._wait_release(answered, request_id)
                if self._peer_gone():
                    self.close_connection = True
                    return
            for number, piece in enumerate(answers.pieces(event.data, spec.split)):
                if spec.gap_ms:
                    time.sleep(spec.gap_ms / 1000)  # separate reads at the proxy
                answered.body += piece
                if number == 0:
                    answered.events_sent = index + 1
                    if event.reported is not None:
                        answered.reported = event.reported
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        answered.completed = True
        try:
            self.wfile.write(b"0\r\nx-upstream-trailer: done\r\n\r\n" if spec.trailers
                             else b"0\r\n\r\n")
        except OSError:
            answered.completed = False
            raise


class RecordingUpstream(_Server):
    """Records every request and answers it: by default 200 with an OpenAI-style chat
    completion; as the request's ``x-test-answer`` header says (see ``harness.answers``); or
    with a body the test set for that request id (``reply_for``). Scripted answers are
    recorded as ``RecordedRequest.answer`` (what was sent and the usage it reported)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._requests = []
        self._started = []
        self._canned = {}
        self._released = set()
        self._release_all = threading.Event()
        self._changed = threading.Condition(self._lock)
        super().__init__(_UpstreamHandler)

    def _start(self, request_id, method, path, headers):
        with self._lock:
            self._started.append((request_id, method, path, headers))

    def _record(self, record):
        with self._lock:
            self._requests.append(record)

    def _canned_for(self, request_id):
        with self._lock:
            return self._canned.pop(request_id, None)

    def _wait_release(self, request_id, peer_gone):
        deadline = time.monotonic() + HOLD_LIMIT_S
        with self._changed:
            while (request_id not in self._released and not self._release_all.is_set()
                   and time.monotonic() < deadline):
                self._changed.wait(0.05)
                if peer_gone():
                    return

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

    def started(self, request_id) -> list:
        """(method, path, headers) of every request with this id whose headers arrived, also
        those whose body never came (the proxy gave up)."""
        with self._lock:
            return [(m, p, h) for rid, m, p, h in self._started if rid == request_id]

    def reply_for(self, request_id, body, status=200, content_type="application/json",
                  trailers=False, headers=()):
        """Answer the request with this x-request-id with ``body`` (bytes, or JSON-encoded);
        ``trailers``: chunked, ended by a trailer block; ``headers``: more (name, value)."""
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        with self._lock:
            self._canned[request_id] = (status, content_type, body, trailers, tuple(headers))

    def answered(self, request_id) -> answers.Answered:
        return self.received(request_id).answer

    def wait_finished(self, request_id, timeout=10.0) -> answers.Answered:
        """The scripted answer of this request once its handler is done."""
        def done():
            found = self.find(request_id)
            return found[0].answer if found and found[0].answer.finished else None
        return wait_for(done, timeout=timeout,
                        message=f"the upstream to finish answering {request_id}")

    def leave_when_held(self, stream, timeout=10.0) -> answers.Answered:
        """A client that leaves mid-answer: once the scripted answer of ``stream`` holds
        (``hold_after`` events sent), reads what was sent, closes ``stream`` and waits for the
        handler to finish. Returns the answer (its ``body`` is what the client got)."""
        def held():
            found = self.find(stream.request_id)
            return found[0].answer if found and found[0].answer \
                and found[0].answer.holding else None
        answered = wait_for(held, timeout=timeout,
                            message=f"the upstream to hold its answer to {stream.request_id}")
        stream.read_until(lambda body: body == bytes(answered.body))
        stream.close()
        self.wait_finished(stream.request_id, timeout=timeout)
        return answered

    def holding(self, among=None) -> list:
        """Ids of the requests whose answers are waiting for a release right now; only those
        in ``among`` when given (the upstream is shared by the whole session: a test counts
        its own requests)."""
        held = [r.header("x-request-id") for r in self.requests
                if r.answer is not None and r.answer.holding]
        if among is None:
            return held
        wanted = set(among)
        return [i for i in held if i in wanted]

    def release(self, request_id=None):
        """Let a held answer go on (all of them without ``request_id``)."""
        with self._changed:
            if request_id is None:
                self._release_all.set()
            else:
                self._released.add(request_id)
            self._changed.notify_all()

    def rearm(self):
        """Holds hold again after a ``release()`` of all."""
        with self._changed:
            self._release_all.clear()

    def close(self):
        self.release()
        super().close()


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
