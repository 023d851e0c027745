"""Python stand-ins for the values of the Invoke contract that Python has no type of its own for.

Most values map to built-in types (see the package README, "Values"); these classes carry the
rest: JavaScript's ``undefined``, bigints, references and slots, RegExps, keyword arguments,
typed arrays, NDArrays without numpy, and Maps, Sets and Dates that ``dict``, ``set`` and
``datetime`` cannot hold. Each is written back exactly as it was read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


class Undefined:
    """JavaScript's ``undefined`` (written ``d4 00 00``). Decoding gives ``None``; a value that
    must go out as ``undefined`` (the answer of a program without get, call or new) uses
    :data:`UNDEFINED`."""

    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED = Undefined()


class BigInt(int):
    """An int that travels as a JavaScript bigint (tag 1) whatever its size.

    Bigints and msgpack's uint 64 / int 64 decode to it, so that they go back as bigints; it is an
    ``int`` in every other respect (arithmetic on it gives plain ints). A plain ``int`` beyond
    ±2^53 is written as a bigint too.
    """

    def __repr__(self) -> str:
        return f"BigInt({int(self)})"


@dataclass(frozen=True)
class RemoteRef:
    """A handle to an object held by a module-server for a client session (tag 4)."""

    server: str
    id: int
    kind: Literal["function", "object"]
    label: str


#: Longest id of a callback reference.
MAX_CALLBACK_ID_LENGTH = 64


@dataclass(frozen=True)
class CallbackRef:
    """A function of the app passed as an argument (tag 9, INVOKE.md 3.7); the module receives a
    function that calls it back."""

    id: str
    label: str


@dataclass(frozen=True)
class Slot:
    """The result of an earlier operation of the same program (tag 5)."""

    index: int


REGEXP_FLAGS = "dgimsuvy"


@dataclass(frozen=True)
class RegExp:
    """A JavaScript regular expression by value (tag 6). It is carried, never compiled: Python's
    ``re`` syntax differs from ECMAScript's. ``flags`` are in the canonical order ``dgimsuvy``."""

    source: str
    flags: str = ""


@dataclass
class Kwargs:
    """Keyword arguments of one call (tag 8): valid only as the last argument of a call or new."""

    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TypedArrayType:
    """One element type of the typed-array extension (ext type ``74``)."""

    code: int
    name: str
    itemsize: int
    #: numpy dtype (little-endian) of the elements; None for ArrayBuffer and DataView.
    dtype: str | None
    #: array.array typecode of the elements; None where array.array has none.
    typecode: str | None


TYPED_ARRAY_TYPES: tuple[TypedArrayType, ...] = (
    TypedArrayType(0x00, "Int8Array", 1, "<i1", "b"),
    TypedArrayType(0x01, "Uint8Array", 1, "<u1", "B"),
    TypedArrayType(0x02, "Uint8ClampedArray", 1, "<u1", "B"),
    TypedArrayType(0x03, "Int16Array", 2, "<i2", "h"),
    TypedArrayType(0x04, "Uint16Array", 2, "<u2", "H"),
    TypedArrayType(0x05, "Int32Array", 4, "<i4", "i"),
    TypedArrayType(0x06, "Uint32Array", 4, "<u4", "I"),
    TypedArrayType(0x07, "Float32Array", 4, "<f4", "f"),
    TypedArrayType(0x08, "Float64Array", 8, "<f8", "d"),
    TypedArrayType(0x09, "BigInt64Array", 8, "<i8", "q"),
    TypedArrayType(0x0A, "BigUint64Array", 8, "<u8", "Q"),
    TypedArrayType(0x10, "ArrayBuffer", 1, None, None),
    TypedArrayType(0x11, "DataView", 1, None, None),
)
TYPED_ARRAY_BY_CODE = {t.code: t for t in TYPED_ARRAY_TYPES}
TYPED_ARRAY_BY_NAME = {t.name: t for t in TYPED_ARRAY_TYPES}


@dataclass(frozen=True)
class TypedArray:
    """A JavaScript typed array, ArrayBuffer or DataView by its type name and raw little-endian
    bytes, for a module that must send one of a given type. (Received typed arrays arrive as numpy
    arrays, or ``array.array`` without numpy; ``array.array`` is also sent as a typed array.)"""

    type: str
    data: bytes


#: numpy dtype names that travel by value as NDArrays, and their element sizes in bytes.
NDARRAY_DTYPES: dict[str, int] = {
    "bool": 1,
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "uint8": 1,
    "uint16": 2,
    "uint32": 4,
    "uint64": 8,
    "float32": 4,
    "float64": 8,
}


@dataclass(frozen=True)
class NDArray:
    """An NDArray (tag 7) as dtype, shape and C-order little-endian bytes: what a received one
    becomes when numpy is not installed. With numpy, NDArrays are ``numpy.ndarray``."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes


@dataclass
class MapEntries:
    """A JavaScript Map that a ``dict`` cannot hold: some key is unhashable (an array, a Map) or
    equal in Python to another one (``1`` and ``True``, two equal byte strings). Entries in order."""

    entries: list[tuple[Any, Any]]


@dataclass
class SetItems:
    """A JavaScript Set that a ``set`` cannot hold (unhashable or Python-equal items), in order."""

    items: list[Any]


@dataclass(frozen=True)
class DateValue:
    """A JavaScript Date that ``datetime`` cannot hold: an invalid Date (``ms`` is NaN) or one
    outside the years 1 to 9999 (JavaScript's Dates range over ±8.64e15 ms)."""

    ms: float


class RemoteError(Exception):
    """An error received by value (tag 3): its ``name``, ``message``, ``stack`` (None when it
    had none), other ``fields`` in order, ``cause`` (``__cause__`` too when it is an exception)
    and ``errors`` (an AggregateError's). It is written back with the same fields."""

    def __init__(
        self,
        name: str,
        message: str,
        *,
        stack: str | None = None,
        fields: dict[str, Any] | None = None,
        cause: Any = UNDEFINED,
        errors: list[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.name = name
        self.message = message
        self.stack = stack
        self.fields: dict[str, Any] = dict(fields or {})
        #: UNDEFINED when the error has no cause.
        self.cause = cause
        self.errors = errors
        if isinstance(cause, BaseException):
            self.__cause__ = cause

    def __repr__(self) -> str:
        return f"RemoteError({self.name!r}, {self.message!r})"
