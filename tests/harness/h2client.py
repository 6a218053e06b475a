"""An HTTP/2 cleartext (h2c, prior knowledge) client for one request per connection, with what
HTTP/1.1 clients rarely send: request trailers, a body in pieces, a stream reset mid-upload.
Envoy listeners with ``codec_type: AUTO`` accept h2c from any client."""

import json
import socket
import time
import uuid
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events


@dataclass
class H2Response:
    status: int  # 0 when the stream was reset before response headers
    headers: list
    body: bytes
    trailers: list = field(default_factory=list)
    reset: bool = False
    request_id: str = ""

    def header(self, name):
        return next((v for k, v in self.headers if k == name.lower()), None)

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return (f"<H2Response {self.status} reset={self.reset} request_id={self.request_id} "
                f"body={self.body[:300]!r}>")


class H2Client:
    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.port = port
        self.host = host
        self.timeout = timeout

    def request(self, method="POST", path="/v1/chat/completions", *, headers=(), body=None,
                token=None, trailers=None, pieces=1, request_id=None,
                abort_after=None, authority=None, content_length=False,
                reset_when=None) -> H2Response:
        """Sends one request on a new connection. ``headers``: (name, value) pairs or a dict;
        ``authority``: the ``:authority`` the client claims [the proxy's address];
        ``content_length``: send the body's length as a header too; ``body``: bytes, str or
        JSON-able;
        ``trailers``: (name, value) pairs ending the request (then the body's last DATA frame
        does not end the stream); ``pieces``: DATA frames the body is cut into;
        ``abort_after``: reset the stream after that many DATA frames (a client that leaves
        mid-upload) and return at once; ``reset_when``: a test of the response body read so
        far: once it holds, reset the stream (a client that leaves mid-response) and return
        what was read."""
        headers = list(headers.items()) if isinstance(headers, dict) else list(headers or ())
        given = [v for k, v in headers if k.lower() == "x-request-id"]
        request_id = request_id or (given[0] if given else f"tg-test-{uuid.uuid4()}")
        headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        sent_headers = [(":method", method), (":path", path), (":scheme", "http"),
                        (":authority", authority or f"{self.host}:{self.port}"),
                        ("x-request-id", request_id)]
        if content_length and body is not None:
            sent_headers.append(("content-length", str(len(body))))
        if token is not None:
            sent_headers.append(("authorization", f"Bearer {token}"))
        if body is not None and not any(k.lower() == "content-type" for k, _ in headers):
            sent_headers.append(("content-type", "application/json"))
        sent_headers += [(k.lower(), v) for k, v in headers]
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                    header_encoding="utf-8"))
        with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
            stream = conn.get_next_available_stream_id()
            ends_with_headers = body is None and not trailers
            conn.send_headers(stream, sent_headers, end_stream=ends_with_headers)
            sock.sendall(conn.data_to_send())
            if body is not None:
                size = max(1, -(-len(body) // max(pieces, 1)))
                parts = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
                for index, part in enumerate(parts):
                    if abort_after is not None and index == abort_after:
                        conn.reset_stream(stream, error_code=8)  # CANCEL
                        sock.sendall(conn.data_to_send())
                        return H2Response(0, [], b"", reset=True, request_id=request_id)
                    last = index == len(parts) - 1
                    self._send_data(conn, sock, stream, part, last and not trailers)
                    if pieces > 1:
                        time.sleep(0.02)  # separate reads at the proxy
            if trailers:
                conn.send_headers(stream, [(k.lower(), v) for k, v in trailers],
                                  end_stream=True)
                sock.sendall(conn.data_to_send())
            return self._read(conn, sock, stream, request_id, reset_when)

    def _send_data(self, conn, sock, stream, data, end):
        """DATA frames within the flow-control window, waiting for window updates."""
        while True:
            room = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
            if room <= 0 and data:
                self._pump(conn, sock)
                continue
            chunk, data = data[:room], data[room:]
            conn.send_data(stream, chunk, end_stream=end and not data)
            sock.sendall(conn.data_to_send())
            if not data:
                return

    @staticmethod
    def _pump(conn, sock):
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the proxy closed the connection")
        events = conn.receive_data(data)
        sock.sendall(conn.data_to_send())
        return events

    def _read(self, conn, sock, stream, request_id, reset_when=None) -> H2Response:
        resp = H2Response(0, [], b"", request_id=request_id)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                events = self._pump(conn, sock)
            except (ConnectionError, socket.timeout, TimeoutError):
                resp.reset = True
                return resp
            for event in events:
                if getattr(event, "stream_id", stream) != stream:
                    continue
                if isinstance(event, h2.events.ResponseReceived):
                    resp.headers = [(k, v) for k, v in event.headers]
                    resp.status = int(dict(resp.headers)[":status"])
                elif isinstance(event, h2.events.DataReceived):
                    resp.body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                    sock.sendall(conn.data_to_send())
                    if reset_when is not None and reset_when(resp.body):
                        conn.reset_stream(stream, error_code=8)  # CANCEL
                        sock.sendall(conn.data_to_send())
                        resp.reset = True
                        return resp
                elif isinstance(event, h2.events.TrailersReceived):
                    resp.trailers = [(k, v) for k, v in event.headers]
                elif isinstance(event, h2.events.StreamReset):
                    resp.reset = True
                    return resp
                elif isinstance(event, h2.events.StreamEnded):
                    return resp
        raise AssertionError(f"no complete HTTP/2 response within {self.timeout}s: {resp}")
