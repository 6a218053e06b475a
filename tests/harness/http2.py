"""A minimal HTTP/2 cleartext (h2c, prior knowledge) client: one new connection per request,
like ``client.Client``, returning the same ``Response``. Envoy's listeners use
``codec_type: AUTO``, so they speak HTTP/2 to any client that starts with the preface."""

import json
import socket
import time

import h2.config
import h2.connection
import h2.events

from .client import Response, new_request_id


class H2Client:
    """Sends one request per connection over h2c to ``port``."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0):
        self.port = port
        self.host = host
        self.timeout = timeout

    def request(self, method="GET", path="/v1/models", headers=None, body=None, token=None,
                request_id=None, authority=None, trailers=None) -> Response:
        """``headers``: dict or (name, value) pairs (lower-case names); ``body``: bytes, str or
        a JSON-able dict/list; ``trailers``: (name, value) pairs sent after the body."""
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            if not any(k.lower() == "content-type" for k, _ in pairs):
                pairs.append(("content-type", "application/json"))
        elif isinstance(body, str):
            body = body.encode()
        if token is not None:
            pairs.append(("authorization", f"Bearer {token}"))
        given = [v for k, v in pairs if k.lower() == "x-request-id"]
        request_id = request_id or (given[0] if given else new_request_id())
        if not given:
            pairs.append(("x-request-id", request_id))
        if body is not None:
            pairs.append(("content-length", str(len(body))))
        request_headers = [(":method", method), (":scheme", "http"),
                           (":authority", authority or f"{self.host}:{self.port}"),
                           (":path", path)] + [(k.lower(), v) for k, v in pairs]

        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                    header_encoding="utf-8"))
        with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
            conn.initiate_connection()
            stream = conn.get_next_available_stream_id()
            ends_with_headers = body is None and not trailers
            conn.send_headers(stream, request_headers, end_stream=ends_with_headers)
            if body is not None:
                conn.send_data(stream, body, end_stream=not trailers)
            if trailers:
                conn.send_headers(stream, list(trailers), end_stream=True)
            sock.sendall(conn.data_to_send())
            return self._read(conn, sock, stream, request_id)

    def _read(self, conn, sock, stream, request_id) -> Response:
        status, headers, data = 0, [], b""
        deadline = time.monotonic() + self.timeout
        while True:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed before stream {stream} ended")
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                    for name, value in event.headers:
                        if name == ":status":
                            status = int(value)
                        else:
                            headers.append((name, value))
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                    data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                    raise ConnectionError(f"stream {stream} reset (error {event.error_code})")
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                    sock.sendall(conn.data_to_send())
                    return Response(status, headers, data, request_id)
            outgoing = conn.data_to_send()
            if outgoing:
                sock.sendall(outgoing)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no complete response on stream {stream}")
