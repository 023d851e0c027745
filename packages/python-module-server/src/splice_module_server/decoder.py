"""The reader of the Invoke payload: one msgpack value with the extensions of proto/INVOKE.md,
refusing with INVALID_ARGUMENT everything section 7.18 refuses. Depth is checked as it reads, so
no input can exhaust the stack."""

from __future__ import annotations

import array
import datetime as _dt
import math
import re
import struct
import sys
from collections.abc import Callable
from typing import Any

from .values import (
    MAX_CALLBACK_ID_LENGTH,
    NDARRAY_DTYPES,
    REGEXP_FLAGS,
    TYPED_ARRAY_BY_CODE,
    UNDEFINED,
    BigInt,
    CallbackRef,
    DateValue,
    Kwargs,
    MapEntries,
    NDArray,
    RegExp,
    RemoteError,
    RemoteRef,
    SetItems,
    Slot,
)
from .wire import (
    EPOCH,
    EXT_BIGINT,
    EXT_CALLBACK,
    EXT_ERROR,
    EXT_KWARGS,
    EXT_MAP,
    EXT_NDARRAY,
    EXT_REF,
    EXT_REGEXP,
    EXT_SET,
    EXT_SLOT,
    EXT_TIMESTAMP,
    EXT_TYPED,
    EXT_UNDEFINED,
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    MAX_DATE_MS,
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    NDARRAY_NUMPY_DTYPES,
    U16,
    U32,
    U64,
    describe,
    invalid,
    numpy_or_none,
    too_deep,
)

_BIGINT_TEXT = re.compile(r"-?[0-9a-fA-F]+")


class Decoder:
    """Reads one value, refusing with INVALID_ARGUMENT whatever 7.18 refuses. After ``decode``,
    ``kwargs_count``, ``ref_count`` and ``slot_count`` say how many of each it read."""

    def __init__(self) -> None:
        self.kwargs_count = 0
        self.ref_count = 0
        self.slot_count = 0
        self.callback_count = 0
        self._data = memoryview(b"")
        self._pos = 0

    def decode(self, data: bytes | bytearray | memoryview) -> Any:
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        self._data = view
        self._pos = 0
        if len(view) == 0:
            raise invalid("payload is not valid msgpack: it is empty")
        try:
            value = self._read(0)
        except (IndexError, struct.error) as cause:
            raise invalid("payload is not valid msgpack: it ends inside a value") from cause
        except UnicodeDecodeError as cause:
            raise invalid(f"payload is not valid msgpack: a string is not UTF-8 ({cause.reason})") from cause
        if self._pos != len(view):
            raise invalid(f"payload is not valid msgpack: {len(view) - self._pos} bytes after the value")
        return value

    def _take(self, n: int) -> memoryview:
        start = self._pos
        end = start + n
        if end > len(self._data):
            raise invalid("payload is not valid msgpack: it ends inside a value")
        self._pos = end
        return self._data[start:end]

    def _peek(self) -> int:
        if self._pos >= len(self._data):
            raise invalid("payload is not valid msgpack: it ends inside a value")
        return self._data[self._pos]

    def _read(self, depth: int) -> Any:  # noqa: C901, PLR0911, PLR0912 - one dispatch on the first byte
        data = self._data
        b = data[self._pos]
        self._pos += 1
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if b >= 0xA0 and b <= 0xBF:
            return self._str(b & 0x1F)
        if b >= 0x90 and b <= 0x9F:
            return self._array(b & 0x0F, depth)
        if b >= 0x80 and b <= 0x8F:
            return self._map(b & 0x0F, depth)
        if b == 0xC0:
            return None
        if b == 0xC2:
            return False
        if b == 0xC3:
            return True
        if b == 0xCB:
            return _number(F64.unpack(self._take(8))[0])
        if b == 0xCA:
            return _number(F32.unpack(self._take(4))[0])
        if b == 0xCC:
            return self._take(1)[0]
        if b == 0xCD:
            return U16.unpack(self._take(2))[0]
        if b == 0xCE:
            return U32.unpack(self._take(4))[0]
        if b == 0xCF:
            return BigInt(U64.unpack(self._take(8))[0])
        if b == 0xD0:
            return I8.unpack(self._take(1))[0]
        if b == 0xD1:
            return I16.unpack(self._take(2))[0]
        if b == 0xD2:
            return I32.unpack(self._take(4))[0]
        if b == 0xD3:
            return BigInt(I64.unpack(self._take(8))[0])
        if b == 0xD9:
            return self._str(self._take(1)[0])
        if b == 0xDA:
            return self._str(U16.unpack(self._take(2))[0])
        if b == 0xDB:
            return self._str(U32.unpack(self._take(4))[0])
        if b == 0xC4:
            return bytes(self._take(self._take(1)[0]))
        if b == 0xC5:
            return bytes(self._take(U16.unpack(self._take(2))[0]))
        if b == 0xC6:
            return bytes(self._take(U32.unpack(self._take(4))[0]))
        if b == 0xDC:
            return self._array(U16.unpack(self._take(2))[0], depth)
        if b == 0xDD:
            return self._array(U32.unpack(self._take(4))[0], depth)
        if b == 0xDE:
            return self._map(U16.unpack(self._take(2))[0], depth)
        if b == 0xDF:
            return self._map(U32.unpack(self._take(4))[0], depth)
        if 0xD4 <= b <= 0xD8:
            return self._ext(1 << (b - 0xD4), depth, fixext=True)
        if b == 0xC7:
            return self._ext(self._take(1)[0], depth, fixext=False)
        if b == 0xC8:
            return self._ext(U16.unpack(self._take(2))[0], depth, fixext=False)
        if b == 0xC9:
            return self._ext(U32.unpack(self._take(4))[0], depth, fixext=False)
        raise invalid(f"payload is not valid msgpack: byte {b:#04x} starts no value")

    def _str(self, n: int) -> str:
        return str(self._take(n), "utf-8")

    def _array(self, n: int, depth: int) -> list[Any]:
        if depth >= MAX_DEPTH:
            raise too_deep()
        if n > len(self._data) - self._pos:
            raise invalid("payload is not valid msgpack: an array is longer than the payload")
        read = self._read
        inner = depth + 1
        return [read(inner) for _ in range(n)]

    def _map(self, n: int, depth: int) -> dict[str, Any]:
        if depth >= MAX_DEPTH:
            raise too_deep()
        if n > len(self._data) - self._pos:
            raise invalid("payload is not valid msgpack: a map is longer than the payload")
        out: dict[str, Any] = {}
        inner = depth + 1
        for _ in range(n):
            key = self._read(inner)
            if type(key) is not str:
                what = "an array or map" if isinstance(key, (list, dict)) else describe(key)
                raise invalid(f"a map key must be a string, not {what}")
            out[key] = self._read(inner)
        return out

    def _is_map_next(self) -> bool:
        b = self._peek()
        return 0x80 <= b <= 0x8F or b in (0xDE, 0xDF)

    def _ext(self, length: int, depth: int, *, fixext: bool) -> Any:
        ext_type = I8.unpack(self._take(1))[0]
        if ext_type in _TAG_READERS:
            if not (fixext and length == 1):
                raise invalid(
                    f"extension type {ext_type} must be the tag d4 {ext_type:02x} 00 followed by a value"
                )
            self._take(1)  # the filler byte, whatever it holds
            return _TAG_READERS[ext_type](self, depth)
        body = self._take(length)
        if ext_type == EXT_UNDEFINED:
            return None
        if ext_type == EXT_TIMESTAMP:
            return _date_from_timestamp(body)
        if ext_type == EXT_TYPED:
            return _typed_array_from(body)
        raise invalid(f"unknown extension type {ext_type} in payload")

    # -- tags: each reads the value after the header

    def _bigint(self, depth: int) -> BigInt:
        text = self._read(0)
        if type(text) is not str or not _BIGINT_TEXT.fullmatch(text):
            raise invalid("malformed bigint in payload")
        return BigInt(-int(text[1:], 16) if text[0] == "-" else int(text, 16))

    def _map_tag(self, depth: int) -> dict[Any, Any] | MapEntries:
        flat = self._read(depth)  # the Map and its entry array are one level
        if type(flat) is not list or len(flat) % 2:
            raise invalid("malformed Map in payload")
        entries = list(zip(flat[0::2], flat[1::2], strict=True))
        try:
            d = dict(entries)
        except TypeError:
            return MapEntries(entries)
        return d if len(d) == len(entries) else MapEntries(entries)

    def _set_tag(self, depth: int) -> set[Any] | SetItems:
        items = self._read(depth)
        if type(items) is not list:
            raise invalid("malformed Set in payload")
        try:
            s = set(items)
        except TypeError:
            return SetItems(items)
        return s if len(s) == len(items) else SetItems(items)

    def _error_tag(self, depth: int) -> RemoteError:
        if not self._is_map_next():
            raise invalid("malformed error in payload")
        fields = self._read(depth)
        return _error_from_fields(fields)

    def _ref_tag(self, depth: int) -> RemoteRef:
        fields = self._read(0)  # a leaf (7.17)
        if type(fields) is list and len(fields) == 4:
            server, ref_id, kind, label = fields
            if (
                type(server) is str
                and _is_safe_integer(ref_id)
                and kind in ("function", "object")
                and type(label) is str
            ):
                self.ref_count += 1
                return RemoteRef(server, ref_id, kind, label)
        raise invalid("malformed remote reference in payload")

    def _callback_tag(self, depth: int) -> CallbackRef:
        fields = self._read(0)  # a leaf
        if type(fields) is list and len(fields) == 2:
            callback_id, label = fields
            if (
                type(callback_id) is str
                and 0 < len(callback_id) <= MAX_CALLBACK_ID_LENGTH
                and type(label) is str
            ):
                self.callback_count += 1
                return CallbackRef(callback_id, label)
        raise invalid("malformed callback reference in payload")

    def _slot_tag(self, depth: int) -> Slot:
        index = self._read(0)
        if not _is_safe_integer(index) or index < 0:
            raise invalid("malformed slot in payload")
        self.slot_count += 1
        return Slot(index)

    def _regexp_tag(self, depth: int) -> RegExp:
        fields = self._read(0)
        if type(fields) is list and len(fields) == 2 and type(fields[0]) is str and type(fields[1]) is str:
            flags = fields[1]
            known = all(f in REGEXP_FLAGS for f in flags) and len(set(flags)) == len(flags)
            if known and not ("u" in flags and "v" in flags):
                return RegExp(fields[0], "".join(f for f in REGEXP_FLAGS if f in flags))
        raise invalid("malformed regular expression in payload")

    def _ndarray_tag(self, depth: int) -> Any:
        if self._peek() != 0x93:
            raise invalid("malformed NDArray in payload")
        self._pos += 1
        dtype = self._read(0)
        shape = self._read(0)
        if (
            type(dtype) is not str
            or dtype not in NDARRAY_DTYPES
            or type(shape) is not list
            or not all(_is_safe_integer(n) and n >= 0 for n in shape)
        ):
            raise invalid("malformed NDArray in payload")
        b = self._peek()
        if b not in (0xC4, 0xC5, 0xC6):
            raise invalid("malformed NDArray in payload: its data must be bin")
        self._pos += 1
        size = self._take(1 << (b - 0xC4))
        n = int.from_bytes(size, "big")
        data = self._take(n)
        count = math.prod(shape)
        if n != count * NDARRAY_DTYPES[dtype]:
            raise invalid(f"malformed NDArray in payload: {n} bytes for {count} elements of {dtype}")
        np = numpy_or_none()
        if np is None:
            return NDArray(dtype, tuple(shape), bytes(data))
        if dtype == "bool":
            return (np.frombuffer(data, dtype=np.uint8) != 0).reshape(shape)
        return np.frombuffer(data, dtype=NDARRAY_NUMPY_DTYPES[dtype]).reshape(shape).copy()

    def _kwargs_tag(self, depth: int) -> Kwargs:
        if not self._is_map_next():
            raise invalid("malformed keyword arguments in payload")
        values = self._read(depth)
        self.kwargs_count += 1
        return Kwargs(values)


_TAG_READERS: dict[int, Callable[[Decoder, int], Any]] = {
    EXT_BIGINT: Decoder._bigint,
    EXT_MAP: Decoder._map_tag,
    EXT_ERROR: Decoder._error_tag,
    EXT_REF: Decoder._ref_tag,
    EXT_SLOT: Decoder._slot_tag,
    EXT_CALLBACK: Decoder._callback_tag,
    EXT_REGEXP: Decoder._regexp_tag,
    EXT_NDARRAY: Decoder._ndarray_tag,
    EXT_KWARGS: Decoder._kwargs_tag,
    EXT_SET: Decoder._set_tag,
}


def _number(x: float) -> int | float:
    """A msgpack float as the number it is: one without a fraction, within ±2^53, is an int, as
    the small ones written as integers are (a JavaScript peer cannot tell them apart); -0 stays."""
    if (
        x.is_integer()
        and -9007199254740992.0 <= x <= 9007199254740992.0
        and (x != 0 or math.copysign(1.0, x) > 0)
    ):
        return int(x)
    return x


def _is_safe_integer(value: object) -> bool:
    return type(value) is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER


def _date_from_timestamp(body: memoryview) -> _dt.datetime | DateValue:
    n = len(body)
    if n == 1:
        return DateValue(math.nan)
    if n == 4:
        seconds, ns = U32.unpack(body)[0], 0
    elif n == 8:
        packed = U64.unpack(body)[0]
        seconds, ns = packed & 0x3FFFFFFFF, packed >> 34
    elif n == 12:
        ns, seconds = U32.unpack(body[:4])[0], I64.unpack(body[4:])[0]
    else:
        raise invalid(f"malformed timestamp in payload: {n} bytes")
    total_ns = seconds * 1_000_000_000 + ns
    # As a JavaScript Date keeps it: whole milliseconds, cut toward zero.
    ms = total_ns // 1_000_000 if total_ns >= 0 else -(-total_ns // 1_000_000)
    if abs(ms) > MAX_DATE_MS:
        return DateValue(math.nan)
    try:
        return EPOCH + _dt.timedelta(milliseconds=ms)
    except OverflowError:
        return DateValue(float(ms))


def _typed_array_from(body: memoryview) -> Any:
    if len(body) == 0:
        raise invalid("malformed typed array in payload: no element type")
    kind = TYPED_ARRAY_BY_CODE.get(body[0])
    if kind is None:
        raise invalid(f"malformed typed array in payload: unknown element type {body[0]}")
    data = body[1:]
    if len(data) % kind.itemsize:
        raise invalid(f"malformed typed array in payload: {len(data)} bytes of {kind.name}")
    if kind.dtype is None:
        return bytes(data)
    np = numpy_or_none()
    if np is not None:
        return np.frombuffer(data, dtype=kind.dtype).copy()
    assert kind.typecode is not None
    out = array.array(kind.typecode)
    out.frombytes(data)
    if sys.byteorder == "big":
        out.byteswap()
    return out


def _error_from_fields(fields: dict[str, Any]) -> RemoteError:
    name = fields.get("name")
    message = fields.get("message")
    stack = fields.get("stack")
    errors = fields.get("errors")
    rest = {k: v for k, v in fields.items() if k not in ("name", "message", "stack", "cause", "errors")}
    return RemoteError(
        name if type(name) is str else "Error",
        "" if message is None else message if type(message) is str else str(message),
        stack=stack if type(stack) is str else None,
        fields=rest,
        cause=fields.get("cause", UNDEFINED),
        errors=errors if type(errors) is list else None,
    )
