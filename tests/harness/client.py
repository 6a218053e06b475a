"""HTTP client helpers for talking to Envoy: one new connection per request (so requests are
spread over Envoy's workers), an ``x-request-id`` on every request so tests can find the
request's records, and a raw-socket variant for bytes that ``http.client`` would refuse."""

import http.client
import json
import select
import socket
import struct
import time
import uuid
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    headers: list  # [(lower-case name, value)], in order, duplicates kept
    body: bytes
    request_id: str = ""
    reason: str = ""
    # Wall-clock time (time.time()) just before the request went out and just after the
    # response was read: the gateway decided about the request in between.
    sent_at: float = 0.0
    received_at: float = 0.0

    def header(self, name):
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_values(self, name):
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        body = self.body[:300]
        return f"<Response {self.status} request_id={self.request_id} body={body!r}>"


def new_request_id() -> str:
    return f"tg-test-{uuid.uuid4()}"


class _CountingConnection(http.client.HTTPConnection):
    """An HTTPConnection that counts the bytes it sent (request line, headers and body)."""

    bytes_sent = 0

    def send(self, data):
        super().send(data)
        self.bytes_sent += len(data)


@dataclass
class Client:
    """Sends requests to one Envoy listener."""

    port: int
    host: str = "127.0.0.1"
    timeout: float = 10.0
    default_headers: list = field(default_factory=list)

    def request(self, method="GET", path="/v1/models", headers=None, body=None,
                token=None, request_id=None) -> Response:
        """``headers``: a dict or a list of (name, value) pairs; values may be ``bytes`` (sent
        verbatim). ``token``: sent as ``authorization: Bearer <token>``. A fresh
        ``x-request-id`` is added unless ``request_id`` or a header gives one."""
        pairs, body, request_id = self._prepare(headers, body, token, request_id)
        sent_at = time.time()
        conn = self._send(method, path, pairs, body)
        try:
            resp = conn.getresponse()
            data = resp.read()
            headers = [(k.lower(), v) for k, v in resp.getheaders()]
            return Response(resp.status, headers, data, request_id, resp.reason,
                            sent_at=sent_at, received_at=time.time())
        finally:
            conn.close()

    def _prepare(self, headers, body, token, request_id):
        pairs = list(self.default_headers)
        if headers:
            pairs += list(headers.items()) if isinstance(headers, dict) else list(headers)
        if token is not None:
            pairs.append(("authorization", f"Bearer {token}"))
        given = [v for k, v in pairs if k.lower() == "x-request-id"]
        if request_id is None:
            request_id = given[0] if given else new_request_id()
        if not given:
            pairs.append(("x-request-id", request_id))
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            if not any(k.lower() == "content-type" for k, _ in pairs):
                pairs.append(("content-type", "application/json"))
        elif isinstance(body, str):
            body = body.encode()
        return pairs, body, request_id

    def _send(self, method, path, pairs, body):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in pairs:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("content-length", str(len(body)))
            conn.endheaders(body)
        except BaseException:
            conn.close()
            raise
        return conn

    def begin(self, method="POST", path="/v1/chat/completions", headers=None, body=None,
              token=None, request_id=None) -> "PendingRequest":
        """Send only the request's headers (with the body's content-length); the test sends
        the body later with ``PendingRequest.send_body`` — a client whose body arrives after
        its headers, as over a slow link or HTTP/2."""
        pairs, body, request_id = self._prepare(headers, body, token, request_id)
        sent_at = time.time()
        conn = _CountingConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in pairs:
                conn.putheader(name, value)
            conn.putheader("content-length", str(len(body or b"")))
            conn.endheaders()
        except BaseException:
            conn.close()
            raise
        return PendingRequest(conn, body or b"", request_id, sent_at)

    def open_stream(self, method="POST", path="/v1/chat/completions", headers=None,
                    body=None, token=None, request_id=None) -> "StreamingResponse":
        """Send a request and return once the response headers are in; the body is read
        piece by piece (``StreamingResponse``), and the client may close mid-way."""
        pairs, body, request_id = self._prepare(headers, body, token, request_id)
        sent_at = time.time()
        conn = self._send(method, path, pairs, body)
        sock = conn.sock  # http.client lets go of it once a response says it will close
        try:
            resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        stream = StreamingResponse(conn, sock, resp, request_id)
        stream.sent_at, stream.received_at = sent_at, time.time()
        return stream

    def get(self, path="/v1/models", **kwargs) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path="/v1/chat/completions", **kwargs) -> Response:
        return self.request("POST", path, **kwargs)

    def chat(self, token=None, **kwargs) -> Response:
        body = kwargs.pop("body", {"model": "gpt-4o",
                                   "messages": [{"role": "user", "content": "hello"}]})
        return self.post("/v1/chat/completions", token=token, body=body, **kwargs)

    def raw(self, data: bytes, timeout=None) -> "RawResponse":
        """Send ``data`` verbatim on a new connection and read until Envoy closes it or a
        complete response (by content-length) has arrived."""
        return raw_exchange(self.host, self.port, data, timeout or self.timeout)


class PendingRequest:
    """A request whose headers are out and whose body is not (``Client.begin``)."""

    def __init__(self, conn, body, request_id, sent_at=0.0):
        self._conn = conn
        self._sock = conn.sock
        self.body = body
        self.request_id = request_id
        self.sent_at = sent_at
        self.response = None

    def answered(self) -> bool:
        """Whether the proxy has started answering (e.g. refused the request early)."""
        if self.response is not None:
            return True
        readable, _, _ = select.select([self._sock], [], [], 0)
        return bool(readable)

    def send_body(self):
        self._conn.send(self.body)

    def send_part(self, size: int):
        """Send the first ``size`` bytes of the body only."""
        self._conn.send(self.body[:size])

    @property
    def bytes_sent(self) -> int:
        """Bytes sent on the connection so far: request line, headers and body."""
        return self._conn.bytes_sent

    def abort(self):
        """Leave: the connection is reset (a client gone mid-upload or mid-wait)."""
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._conn.close()
        self._sock.close()

    def finish(self) -> Response:
        """Read the whole response (sending nothing more) and close the connection."""
        if self.response is None:
            try:
                resp = self._conn.getresponse()
                data = resp.read()
                headers = [(k.lower(), v) for k, v in resp.getheaders()]
                self.response = Response(resp.status, headers, data, self.request_id,
                                         resp.reason, sent_at=self.sent_at,
                                         received_at=time.time())
            finally:
                self._conn.close()
        return self.response


class StreamingResponse:
    """A response being read as it arrives (SSE): ``read_until`` waits (bounded) for more
    bytes, ``close`` drops the connection mid-stream like a client that gives up."""

    def __init__(self, conn, sock, resp, request_id):
        self._conn = conn
        self._sock = sock
        self._resp = resp
        self.request_id = request_id
        self.status = resp.status
        self.headers = [(k.lower(), v) for k, v in resp.getheaders()]
        self.body = b""
        self.ended = False
        self.broken = False  # ended without the response's proper end

    def header(self, name):
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def read_until(self, done, timeout=10.0) -> bytes:
        """Read until ``done(body_so_far)`` is true or the response ends; raises
        AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not done(self.body):
            if self.ended:
                raise AssertionError(f"the response ended before the expected data arrived: "
                                     f"{self.body[-300:]!r}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout:.1f}s reading the stream: "
                                     f"{self.body[-300:]!r}")
            # One blocking read bounded by the deadline (a socket file cannot be read again
            # after one of its reads timed out).
            self._sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self._resp.read1(65536)
            except (socket.timeout, TimeoutError):
                raise AssertionError(f"timed out after {timeout:.1f}s reading the stream: "
                                     f"{self.body[-300:]!r}") from None
            except (http.client.IncompleteRead, ConnectionError) as exc:
                # The proxy cut the response short (e.g. its upstream went away).
                self.broken = True
                data = getattr(exc, "partial", b"") or b""
            if not data:
                self.ended = True
            self.body += data
        return self.body

    def read_all(self, timeout=10.0) -> bytes:
        try:
            return self.read_until(lambda _: self.ended, timeout)
        finally:
            self.close()

    def close(self):
        self._resp.close()
        self._conn.close()
        self._sock.close()


@dataclass
class RawResponse:
    status: int  # 0 when the connection closed without a status line
    head: bytes
    body: bytes
    reset: bool = False  # the connection was reset before a response was read


def raw_exchange(host, port, data: bytes, timeout=10.0) -> RawResponse:
    received = b""
    reset = False
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            reset = True
        while not reset:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                reset = True
                break
            except socket.timeout:
                break
            if not chunk:
                break
            received += chunk
            if _complete(received):
                break
    head, _, body = received.partition(b"\r\n\r\n")
    status = 0
    if head.startswith(b"HTTP/"):
        try:
            status = int(head.split(b" ", 2)[1])
        except (IndexError, ValueError):
            status = 0
    return RawResponse(status, head, body, reset and not received)


def _complete(received: bytes) -> bool:
    head, sep, body = received.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                return len(body) >= int(value.strip())
            except ValueError:
                return False
    return False
