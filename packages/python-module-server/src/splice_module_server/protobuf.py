"""The protobuf encoding of the few messages of proto/ (splice.v1 and grpc.health.v1), written out by
hand from the .proto files, as packages/protocol/src/protobuf.ts does: the messages are flat (bytes,
strings, varints), and the server needs neither protoc nor the protobuf runtime."""

from __future__ import annotations

from collections.abc import Iterator

from .errors import Code, SpliceError

_WIRE_VARINT = 0
_WIRE_I64 = 1
_WIRE_LEN = 2
_WIRE_I32 = 5


def varint(n: int) -> bytes:
    """A varint's bytes (non-negative integers)."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(10):
        if pos + i >= len(data):
            raise _malformed("truncated varint")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return value, pos + i + 1
    raise _malformed("varint longer than 10 bytes")


def iter_fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Each field in order: (number, wire type, value), a value being a varint or the bytes of a
    length-delimited field (not copied); fields of fixed size are skipped (none of ours has them)."""
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        tag, pos = _read_varint(view, pos)
        number, wire = tag >> 3, tag & 7
        if wire == _WIRE_VARINT:
            value, pos = _read_varint(view, pos)
            yield number, wire, value
        elif wire == _WIRE_LEN:
            length, pos = _read_varint(view, pos)
            if pos + length > len(view):
                raise _malformed("a length-delimited field runs past the message")
            yield number, wire, view[pos : pos + length]
            pos += length
        elif wire in (_WIRE_I64, _WIRE_I32):
            pos += 8 if wire == _WIRE_I64 else 4
        else:
            raise _malformed(f"unsupported protobuf wire type {wire}")
    if pos > len(view):
        raise _malformed("the message is truncated")


def read_fields(data: bytes | memoryview) -> dict[int, int | memoryview]:
    """Field number -> value; the last occurrence wins, as protobuf requires of singular fields."""
    return {number: value for number, _wire, value in iter_fields(data)}


def decode_batch_request(data: bytes) -> tuple[list[memoryview], list[int]]:
    """``InvokeBatchRequest``: the programs (views into the message) and their deadlines in ms
    (``timeouts_ms``, packed or not)."""
    payloads: list[memoryview] = []
    timeouts: list[int] = []
    for number, wire, value in iter_fields(data):
        if number == 1 and isinstance(value, memoryview):
            payloads.append(value)
        elif number == 2 and isinstance(value, memoryview):
            pos = 0
            while pos < len(value):
                timeout, pos = _read_varint(value, pos)
                timeouts.append(timeout)
        elif number == 2 and wire == _WIRE_VARINT and isinstance(value, int):
            timeouts.append(value)
    return payloads, timeouts


def encode_batch_answer(index: int, payload: bytes, threw: bool, status: int, message: str) -> bytes:
    """An ``InvokeBatchAnswer``."""
    return b"".join(
        (
            _varint_field(1, index),
            _bytes_field(2, payload),
            _varint_field(3, 1 if threw else 0),
            _varint_field(4, status),
            _bytes_field(5, message.encode("utf-8")),
        )
    )


def _bytes_field(number: int, value: bytes | memoryview) -> bytes:
    if len(value) == 0:
        return b""
    return varint(number << 3 | _WIRE_LEN) + varint(len(value)) + bytes(value)


def _varint_field(number: int, value: int) -> bytes:
    return b"" if value == 0 else varint(number << 3 | _WIRE_VARINT) + varint(value)


def decode_payload(data: bytes) -> memoryview:
    """``InvokeRequest.payload`` (field 1), as a view into the message."""
    value = read_fields(data).get(1, memoryview(b""))
    return value if isinstance(value, memoryview) else memoryview(b"")


def encode_payload(payload: bytes) -> bytes:
    """An ``InvokeResponse`` holding ``payload``."""
    if not payload:
        return b""
    return b"".join((b"\x0a", varint(len(payload)), payload))


def decode_service(data: bytes) -> str:
    """``HealthCheckRequest.service`` (field 1)."""
    value = read_fields(data).get(1)
    return str(value, "utf-8") if isinstance(value, memoryview) else ""


def encode_serving_status(status: int) -> bytes:
    """A ``HealthCheckResponse`` with ``status`` (the ServingStatus enum's number)."""
    return _varint_field(1, status)


def encode_stats(
    server_id: str, sessions: int, objects: int, in_flight: int, calls: int, *, exports: list[str]
) -> bytes:
    """A ``StatsResponse``; ``exports`` is its repeated field 6, one string each."""
    return b"".join(
        (
            _bytes_field(1, server_id.encode("utf-8")),
            _varint_field(2, sessions),
            _varint_field(3, objects),
            _varint_field(4, in_flight),
            _varint_field(5, calls),
            *(
                varint(6 << 3 | _WIRE_LEN) + varint(len(data)) + data
                for data in (name.encode("utf-8") for name in exports)
            ),
        )
    )


def _malformed(why: str) -> SpliceError:
    return SpliceError(Code.INTERNAL, f"malformed protobuf message: {why}")
