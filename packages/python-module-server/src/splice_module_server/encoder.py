"""The writer of the Invoke payload: values in the canonical encoding of proto/INVOKE.md (7.1).

Large bytes (strings, bin, typed arrays, NDArray data) are joined into the output once, from
memoryviews where possible, so that a big numpy array is copied a single time.
"""

from __future__ import annotations

import array
import datetime as _dt
import errno as errno_names
import math
import sys
import traceback
from collections.abc import Callable
from typing import Any

from .errors import Code, SpliceError
from .values import (
    NDARRAY_DTYPES,
    TYPED_ARRAY_BY_NAME,
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
    TypedArray,
)
from .wire import (
    EPOCH,
    EXT_TYPED,
    F64,
    I8,
    I16,
    I32,
    I64,
    MAX_DATE_MS,
    MAX_DEPTH,
    U8,
    U16,
    U32,
    U64,
    UTC,
    describe,
    invalid,
    too_deep,
)

#: Turns a value that does not travel by value into a reference; raises SpliceError to refuse it.
ExportRef = Callable[[object], RemoteRef]

#: Blobs from this size on are joined into the output instead of copied into the working buffer.
_BLOB_JOIN_BYTES = 64 * 1024
_NAN = b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"
_NEGATIVE_ZERO = b"\xcb\x80\x00\x00\x00\x00\x00\x00\x00"

#: Element-type byte of the typed-array extension for an array.array, by (kind, itemsize).
_TYPED_CODE_BY_ARRAY = {
    ("i", 1): 0x00,
    ("u", 1): 0x01,
    ("i", 2): 0x03,
    ("u", 2): 0x04,
    ("i", 4): 0x05,
    ("u", 4): 0x06,
    ("f", 4): 0x07,
    ("f", 8): 0x08,
    ("i", 8): 0x09,
    ("u", 8): 0x0A,
}
_ARRAY_KIND = {
    "b": "i",
    "h": "i",
    "i": "i",
    "l": "i",
    "q": "i",
    "B": "u",
    "H": "u",
    "I": "u",
    "L": "u",
    "Q": "u",
}
_ARRAY_KIND.update({"f": "f", "d": "f"})


class Encoder:
    """Writes values in the canonical encoding (7.1). Not thread-safe: one per encoding."""

    def __init__(self, export_ref: ExportRef | None = None) -> None:
        self._export_ref = export_ref
        self._buf = bytearray()
        self._parts: list[bytes | bytearray | memoryview] = []
        self._seen: set[int] = set()

    def encode(self, value: Any) -> bytes:
        """The bytes of ``value``. Raises SpliceError (INVALID_ARGUMENT for a cycle or nesting past
        the limit, INTERNAL for an object of more than 65 535 keys; whatever ``export_ref`` raises)."""
        self._buf = bytearray()
        self._parts = []
        self._seen = set()
        self._write(value, 0)
        if not self._parts:
            return bytes(self._buf)
        self._parts.append(self._buf)
        return b"".join(self._parts)

    # -- plumbing

    def _blob(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) >= _BLOB_JOIN_BYTES:
            # Large bytes are joined once at the end rather than copied here and again there.
            self._parts.append(self._buf)
            self._parts.append(data)
            self._buf = bytearray()
        else:
            self._buf += data

    def _mark(self) -> tuple[int, int]:
        return len(self._parts), len(self._buf)

    def _rollback(self, mark: tuple[int, int]) -> None:
        parts, size = mark
        if len(self._parts) > parts:
            buf = self._parts[parts]
            assert isinstance(buf, bytearray)
            self._buf = buf
            del self._parts[parts:]
        del self._buf[size:]

    def _enter(self, value: object, depth: int) -> int:
        if depth >= MAX_DEPTH:
            raise too_deep()
        key = id(value)
        if key in self._seen:
            raise invalid("cannot send a cyclic value by value")
        self._seen.add(key)
        return key

    # -- dispatch

    def _write(self, v: Any, depth: int) -> None:
        t = type(v)
        if v is None:
            self._buf.append(0xC0)
        elif t is bool:
            self._buf.append(0xC3 if v else 0xC2)
        elif t is int:
            self._int(v)
        elif t is float:
            self._float(v)
        elif t is str:
            self._str(v)
        elif t is list or t is tuple:
            self._array(v, depth)
        elif t is dict:
            self._dict(v, depth)
        elif t is bytes:
            self._bin(v)
        else:
            self._other(v, depth)

    def _other(self, v: Any, depth: int) -> None:  # noqa: C901, PLR0912 - one dispatch table
        t = type(v)
        if v is UNDEFINED:
            self._buf += b"\xd4\x00\x00"
        elif t is BigInt:
            self._bigint(v)
        elif t is RemoteRef:
            self._ref(v)
        elif t is Slot:
            self._buf += b"\xd4\x05\x00"
            self._int(v.index)
        elif t is CallbackRef:
            self._buf += b"\xd4\x09\x00\x92"
            self._str(v.id)
            self._str(v.label)
        elif t is RegExp:
            self._buf += b"\xd4\x06\x00\x92"
            self._str(v.source)
            self._str(v.flags)
        elif t is Kwargs:
            self._buf += b"\xd4\x08\x00"
            self._object(v.values, depth, v)
        elif t is TypedArray:
            self._typed_array(TYPED_ARRAY_BY_NAME[v.type].code, v.data)
        elif t is NDArray:
            self._ndarray_fields(v.dtype, v.shape, v.data)
        elif t is MapEntries:
            self._map(v.entries, depth, v)
        elif t is SetItems:
            self._set(v.items, depth, v)
        elif t is set or t is frozenset:
            self._set(v, depth, v)
        elif t is DateValue:
            self._date_ms(v.ms)
        elif isinstance(v, _dt.datetime):
            self._datetime(v)
        elif isinstance(v, BaseException):
            self._error(v, depth)
        elif t is bytearray or t is memoryview:
            self._bin(v)
        elif t is array.array:
            self._array_array(v)
        elif not self._numpy(v, depth):
            self._subclass(v, depth)

    def _subclass(self, v: Any, depth: int) -> None:
        """Subclasses of the plain types travel as their base (an IntEnum as a number)."""
        if isinstance(v, BigInt):
            self._bigint(v)
        elif isinstance(v, int):
            self._int(int(v))
        elif isinstance(v, float):
            self._float(float(v))
        elif isinstance(v, str):
            self._str(str(v))
        elif isinstance(v, (list, tuple)):
            self._array(v, depth)
        elif isinstance(v, dict):
            self._dict(v, depth)
        elif isinstance(v, (bytes, bytearray)):
            self._bin(v)
        elif isinstance(v, (set, frozenset)):
            self._set(v, depth, v)
        else:
            self._export(v)

    def _numpy(self, v: Any, depth: int) -> bool:
        """numpy arrays of the NDArray dtypes and numpy scalars; False for anything else."""
        np = sys.modules.get("numpy")
        if np is None:
            return False
        if type(v) is np.ndarray:
            if v.dtype.name not in NDARRAY_DTYPES or v.dtype.kind not in "biuf":
                return False
            a = np.asarray(v, dtype=v.dtype.newbyteorder("<"), order="C")
            try:
                data: bytes | memoryview = memoryview(a).cast("B")
            except (TypeError, ValueError):
                data = a.tobytes()
            self._ndarray_fields(v.dtype.name, a.shape, data)
            return True
        if isinstance(v, np.generic):
            if isinstance(v, np.bool_):
                self._buf.append(0xC3 if v else 0xC2)
            elif isinstance(v, np.integer):
                self._int(int(v))
            elif isinstance(v, np.floating):
                self._float(float(v))
            else:
                return False
            return True
        return False

    # -- scalars

    def _int(self, n: int) -> None:
        buf = self._buf
        if 0 <= n <= 0x7F:
            buf.append(n)
        elif -32 <= n < 0:
            buf.append(n + 0x100)
        elif 0 < n <= 0xFFFFFFFF:
            if n <= 0xFF:
                buf += b"\xcc" + U8.pack(n)
            elif n <= 0xFFFF:
                buf += b"\xcd" + U16.pack(n)
            else:
                buf += b"\xce" + U32.pack(n)
        elif -(2**31) <= n < 0:
            if n >= -128:
                buf += b"\xd0" + I8.pack(n)
            elif n >= -32768:
                buf += b"\xd1" + I16.pack(n)
            else:
                buf += b"\xd2" + I32.pack(n)
        elif -(2**53) <= n <= 2**53:
            # A number beyond 32 bits: JavaScript reads msgpack's 64-bit integers as bigints (7.2).
            buf += b"\xcb" + F64.pack(float(n))
        else:
            self._bigint(n)

    def _float(self, x: float) -> None:
        if math.isnan(x):
            self._buf += _NAN
        elif x == 0.0 and math.copysign(1.0, x) < 0:
            self._buf += _NEGATIVE_ZERO
        elif x.is_integer() and -(2**31) <= x <= 0xFFFFFFFF:
            # One number type on the wire: 3.0 is the number 3, written as JavaScript writes it.
            self._int(int(x))
        else:
            self._buf += b"\xcb" + F64.pack(x)

    def _bigint(self, n: int) -> None:
        text = f"-{-n:x}" if n < 0 else f"{n:x}"
        self._buf += b"\xd4\x01\x00"
        self._str(text)

    def _str(self, s: str) -> None:
        # surrogatepass: a lone surrogate goes out as JavaScript writes one (WTF-8, 7.18).
        data = s.encode("utf-8", "surrogatepass")
        n = len(data)
        buf = self._buf
        if n <= 31:
            buf.append(0xA0 | n)
        elif n <= 0xFF:
            buf += b"\xd9" + U8.pack(n)
        elif n <= 0xFFFF:
            buf += b"\xda" + U16.pack(n)
        else:
            buf += b"\xdb" + U32.pack(n)
        self._blob(data)

    def _bin(self, data: bytes | bytearray | memoryview) -> None:
        if isinstance(data, memoryview) and (data.ndim != 1 or data.format not in ("B", "b", "c")):
            data = data.cast("B") if data.c_contiguous else data.tobytes()
        n = data.nbytes if isinstance(data, memoryview) else len(data)
        if n <= 0xFF:
            self._buf += b"\xc4" + U8.pack(n)
        elif n <= 0xFFFF:
            self._buf += b"\xc5" + U16.pack(n)
        else:
            self._buf += b"\xc6" + U32.pack(n)
        self._blob(data)

    def _array_header(self, n: int) -> None:
        if n <= 15:
            self._buf.append(0x90 | n)
        elif n <= 0xFFFF:
            self._buf += b"\xdc" + U16.pack(n)
        else:
            self._buf += b"\xdd" + U32.pack(n)

    # -- containers

    def _array(self, items: list[Any] | tuple[Any, ...], depth: int) -> None:
        key = self._enter(items, depth)
        self._array_header(len(items))
        write = self._write
        inner = depth + 1
        for item in items:
            write(item, inner)
        self._seen.discard(key)

    def _dict(self, d: dict[Any, Any], depth: int) -> None:
        if all(isinstance(k, str) for k in d):
            self._object(d, depth, d)
        else:
            self._map(list(d.items()), depth, d)

    def _object(self, d: dict[str, Any], depth: int, owner: object) -> None:
        """A plain object: always map 16 (7.9), keys in JavaScript's property order."""
        key = self._enter(owner, depth)
        n = len(d)
        if n > 0xFFFF:
            raise SpliceError(Code.INTERNAL, f"an object of {n} keys cannot be encoded (at most 65535)")
        self._buf += b"\xde" + U16.pack(n)
        inner = depth + 1
        for k in _js_key_order(d):
            self._str(k)
            self._write(d[k], inner)
        self._seen.discard(key)

    def _map(self, entries: list[tuple[Any, Any]], depth: int, owner: object) -> None:
        key = self._enter(owner, depth)
        self._buf += b"\xd4\x02\x00"
        self._array_header(2 * len(entries))
        inner = depth + 1
        for k, v in entries:
            self._write(k, inner)
            self._write(v, inner)
        self._seen.discard(key)

    def _set(self, items: Any, depth: int, owner: object) -> None:
        key = self._enter(owner, depth)
        self._buf += b"\xd4\x73\x00"
        self._array_header(len(items))
        inner = depth + 1
        for item in items:
            self._write(item, inner)
        self._seen.discard(key)

    # -- extensions

    def _ref(self, ref: RemoteRef) -> None:
        self._buf += b"\xd4\x04\x00\x94"
        self._str(ref.server)
        self._int(ref.id)
        self._str(ref.kind)
        self._str(ref.label)

    def _typed_array(self, code: int, data: bytes | memoryview) -> None:
        n = 1 + len(data)
        if n <= 0xFF:
            self._buf += b"\xc7" + U8.pack(n)
        elif n <= 0xFFFF:
            self._buf += b"\xc8" + U16.pack(n)
        else:
            self._buf += b"\xc9" + U32.pack(n)
        self._buf += bytes((EXT_TYPED, code))
        self._blob(data)

    def _array_array(self, a: array.array[Any]) -> None:
        code = _TYPED_CODE_BY_ARRAY.get((_ARRAY_KIND.get(a.typecode, ""), a.itemsize))
        if code is None:
            self._export(a)
            return
        if sys.byteorder == "big":
            a = array.array(a.typecode, a)
            a.byteswap()
        self._typed_array(code, memoryview(a).cast("B"))

    def _ndarray_fields(self, dtype: str, shape: tuple[int, ...], data: bytes | memoryview) -> None:
        self._buf += b"\xd4\x07\x00\x93"
        self._str(dtype)
        self._array_header(len(shape))
        for n in shape:
            self._int(int(n))
        self._bin(data)

    def _datetime(self, v: _dt.datetime) -> None:
        if v != v:  # noqa: PLR0124 - pandas.NaT, a datetime that is not a time, is not equal to itself
            self._date_ms(math.nan)
            return
        aware = v if v.tzinfo is not None and v.utcoffset() is not None else v.replace(tzinfo=UTC)
        delta = aware - EPOCH
        self._date_ms(delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000)

    def _date_ms(self, ms: float) -> None:
        if math.isnan(ms) or abs(ms) > MAX_DATE_MS:
            self._buf += b"\xd4\xff\xff"
            return
        ms = int(ms)
        seconds, millis = divmod(ms, 1000)
        if millis == 0 and 0 <= seconds < 2**32:
            self._buf += b"\xd6\xff" + U32.pack(seconds)
        elif ms > 0 and seconds < 2**32:
            self._buf += b"\xd7\xff" + U64.pack((millis * 1_000_000) << 34 | seconds)
        else:
            self._buf += b"\xc7\x0c\xff" + U32.pack(millis * 1_000_000) + I64.pack(seconds)

    def _error(self, e: BaseException, depth: int) -> None:
        key = self._enter(e, depth)
        fields = _error_fields(e)
        self._buf += b"\xd4\x03\x00\xde" + U16.pack(len(fields))
        inner = depth + 1
        for name, value, context_only in fields:
            self._str(name)
            if not context_only:
                self._write(value, inner)
                continue
            # A cause is context, not payload: if it cannot be sent, its description is.
            mark = self._mark()
            try:
                self._write(value, inner)
            except SpliceError:
                self._rollback(mark)
                self._str(describe(value))
        self._seen.discard(key)

    def _export(self, v: Any) -> None:
        if self._export_ref is None:
            raise invalid(
                f"cannot send {describe(v)} by value, and no remote reference can be made for it here"
            )
        self._ref(self._export_ref(v))


def _js_key_order(d: dict[str, Any]) -> list[str] | dict[str, Any]:
    """Keys in JavaScript's property order: array-index keys ascending, then the others."""
    if not any(k[:1].isdigit() for k in d):
        return d
    indices = [k for k in d if _is_array_index(k)]
    if not indices:
        return d
    indices.sort(key=int)
    taken = set(indices)
    return indices + [k for k in d if k not in taken]


def _is_array_index(key: str) -> bool:
    return key.isascii() and key.isdigit() and (key == "0" or key[0] != "0") and int(key) < 2**32 - 1


_ERROR_FIELDS = ("name", "message", "stack", "cause", "errors")


def _primitive(value: object) -> bool:
    return value is None or type(value) in (bool, int, float, str, BigInt)


def _error_fields(e: BaseException) -> list[tuple[str, Any, bool]]:
    """An exception's fields in wire order (7.13): (name, value, is context that may fall back)."""
    if isinstance(e, RemoteError):
        fields: list[tuple[str, Any, bool]] = [("name", e.name, False), ("message", e.message, False)]
        if e.stack is not None:
            fields.append(("stack", e.stack, False))
        fields += [(k, v, False) for k, v in e.fields.items()]
        if e.cause is not UNDEFINED:
            fields.append(("cause", e.cause, True))
        if e.errors is not None:
            fields.append(("errors", e.errors, True))
        return fields
    stack = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    fields = [("name", type(e).__name__, False), ("message", str(e), False), ("stack", stack, False)]
    fields += [(k, v, False) for k, v in _exception_properties(e).items()]
    if e.__cause__ is not None:
        fields.append(("cause", e.__cause__, True))
    group = getattr(e, "exceptions", None)
    if isinstance(group, tuple) and all(isinstance(x, BaseException) for x in group):
        fields.append(("errors", list(group), True))
    return fields


def _exception_properties(e: BaseException) -> dict[str, Any]:
    """What JavaScript would send as an error's own primitive properties: a ``code`` (the
    exception's own, an OSError's symbolic errno such as ``ENOENT``, or an HTTP status from
    ``status_code`` or ``status``), an OSError's ``errno`` and ``path``, and the exception's public
    attributes whose values are None, booleans, numbers or strings."""
    out: dict[str, Any] = {}
    code = _attribute(e, "code")
    if isinstance(e, OSError) and isinstance(e.errno, int):
        out["errno"] = e.errno
        code = code if code is not None else errno_names.errorcode.get(e.errno, e.errno)
        if isinstance(e.filename, str):
            out["path"] = e.filename
    for status in ("status_code", "status"):
        if code is None and type(_attribute(e, status)) is int:
            code = _attribute(e, status)
    if code is not None:
        out["code"] = code
    try:
        attributes = dict(vars(e))
    except TypeError:
        attributes = {}
    for k, v in attributes.items():
        if not k.startswith("_") and k not in out and k not in _ERROR_FIELDS and _primitive(v):
            out[k] = v
    return out


def _attribute(e: BaseException, name: str) -> Any:
    """A primitive attribute of an exception, or None (a property that raises is no field)."""
    try:
        value = getattr(e, name, None)
    except Exception:  # noqa: BLE001
        return None
    return value if value is not None and _primitive(value) else None
