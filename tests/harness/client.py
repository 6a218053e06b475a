"""HTTP client helpers for talking to Envoy: one new connection per request (so requests are
spread over Envoy's workers), an ``x-request-id`` on every request so tests can find the
request's records, and a raw-socket variant for bytes that ``http.client`` would refuse."""

import http.client
import json
import socket
import uuid
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    headers: list  # [(lower-case name, value)], in order, duplicates kept
    body: bytes
    request_id: str = ""
    reason: str = ""

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

        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in pairs:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("content-length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            headers = [(k.lower(), v) for k, v in resp.getheaders()]
            return Response(resp.status, headers, data, request_id, resp.reason)
        finally:
            conn.close()

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
