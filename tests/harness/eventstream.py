"""AWS event-stream messages (``application/vnd.amazon.eventstream``), as Bedrock's
``ConverseStream`` and ``InvokeModelWithResponseStream`` send them: a prelude (total and
headers lengths, big-endian, and their CRC-32), string headers, the payload, and the CRC-32 of
everything before it."""

import base64
import json
import struct
import zlib


def message(headers: dict, payload: bytes) -> bytes:
    """One message with string-valued ``headers`` (type 7) and ``payload``."""
    encoded = b""
    for name, value in headers.items():
        name, value = name.encode(), value.encode()
        encoded += bytes([len(name)]) + name + b"\x07" + struct.pack(">H", len(value)) + value
    total = 12 + len(encoded) + len(payload) + 4
    lengths = struct.pack(">II", total, len(encoded))
    prelude = lengths + struct.pack(">I", zlib.crc32(lengths))
    body = prelude + encoded + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(event_type: str, payload: dict) -> bytes:
    """A JSON event, as Bedrock sends them (``p``: the padding Bedrock adds against
    length side channels)."""
    payload = dict(payload, p="abcdefghijklmnopqrstuvwxyzABCDEF"[:len(event_type) + 4])
    return message({":event-type": event_type, ":content-type": "application/json",
                    ":message-type": "event"},
                   json.dumps(payload, separators=(",", ":")).encode())


def chunk(model_event: dict) -> bytes:
    """An ``InvokeModelWithResponseStream`` chunk: the model's own event, base64 in ``bytes``."""
    inner = json.dumps(model_event, separators=(",", ":")).encode()
    return event("chunk", {"bytes": base64.b64encode(inner).decode()})


def exception(exception_type: str, message_text: str) -> bytes:
    return message({":exception-type": exception_type, ":content-type": "application/json",
                    ":message-type": "exception"},
                   json.dumps({"message": message_text}).encode())
