"""Envoy's rate-limit service protocol (RLS v3, gRPC
``envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit``) on the wire, by hand: what the
scripted rate-limit service needs to read the filter's calls and to write its answers. Field
numbers follow ``envoy/service/ratelimit/v3/rls.proto``,
``envoy/extensions/common/ratelimit/v3/ratelimit.proto`` and ``envoy/config/core/v3/base.proto``.
"""

from dataclasses import dataclass, field

SERVICE = "envoy.service.ratelimit.v3.RateLimitService"
METHOD = "ShouldRateLimit"
PATH = f"/{SERVICE}/{METHOD}"

# RateLimitResponse.Code
UNKNOWN, OK, OVER_LIMIT = 0, 1, 2


class WireError(ValueError):
    """Bytes that are not a valid protobuf message."""


# === Reading ===

def _varint(data: bytes, pos: int):
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise WireError("varint longer than 64 bits")


def fields(data: bytes):
    """Yields (field number, wire type, value) of one message: ints for varints, bytes for
    length-delimited fields and fixed-width ones."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise WireError("truncated length-delimited field")
            value, pos = data[pos:pos + size], pos + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(data):
                raise WireError("truncated fixed-width field")
            value, pos = data[pos:pos + size], pos + size
        else:
            raise WireError(f"unsupported wire type {wire}")
        yield number, wire, value


@dataclass
class Descriptor:
    entries: list  # [(key, value)] in the order sent
    hits_addend: int = None  # the UInt64Value wrapper's value; None when the wrapper is absent

    def get(self, key):
        return next((v for k, v in self.entries if k == key), None)

    @property
    def keys(self):
        return [k for k, _ in self.entries]


@dataclass
class RateLimitRequest:
    domain: str = ""
    descriptors: list = field(default_factory=list)
    hits_addend: int = 0  # the top-level uint32 (0: unset)

    @property
    def descriptor(self) -> Descriptor:
        assert len(self.descriptors) == 1, f"{len(self.descriptors)} descriptors in one call"
        return self.descriptors[0]


def decode_request(data: bytes) -> RateLimitRequest:
    request = RateLimitRequest()
    for number, wire, value in fields(data):
        if number == 1 and wire == 2:
            request.domain = value.decode()
        elif number == 2 and wire == 2:
            request.descriptors.append(_decode_descriptor(value))
        elif number == 3 and wire == 0:
            request.hits_addend = value
    return request


def _decode_descriptor(data: bytes) -> Descriptor:
    descriptor = Descriptor([])
    for number, wire, value in fields(data):
        if number == 1 and wire == 2:
            key = val = ""
            for n, w, v in fields(value):
                if n == 1 and w == 2:
                    key = v.decode()
                elif n == 2 and w == 2:
                    val = v.decode()
            descriptor.entries.append((key, val))
        elif number == 3 and wire == 2:
            descriptor.hits_addend = 0
            for n, w, v in fields(value):
                if n == 1 and w == 0:
                    descriptor.hits_addend = v
    return descriptor


# === Writing ===

def _put_varint(out: bytearray, n: int):
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _put_varint_field(out: bytearray, number: int, n: int):
    _put_varint(out, number << 3)
    _put_varint(out, n)


def _put_bytes(out: bytearray, number: int, data: bytes):
    _put_varint(out, (number << 3) | 2)
    _put_varint(out, len(data))
    out += data


def encode_response(code: int, *, headers=(), limit_remaining: int = None,
                    reset_after_s: int = None) -> bytes:
    """A serialized RateLimitResponse: ``overall_code``, one descriptor status when
    ``limit_remaining`` or ``reset_after_s`` is given, and ``response_headers_to_add``."""
    out = bytearray()
    if code:
        _put_varint_field(out, 1, code)
    if limit_remaining is not None or reset_after_s is not None:
        status = bytearray()
        _put_varint_field(status, 1, code)
        if limit_remaining is not None:
            _put_varint_field(status, 3, limit_remaining)
        if reset_after_s is not None:
            duration = bytearray()
            _put_varint_field(duration, 1, reset_after_s)
            _put_bytes(status, 4, bytes(duration))
        _put_bytes(out, 2, bytes(status))
    for name, value in headers:
        header = bytearray()
        _put_bytes(header, 1, name.encode())
        _put_bytes(header, 2, value.encode())
        _put_bytes(out, 3, bytes(header))
    return bytes(out)
