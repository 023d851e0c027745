"""What the encoder and the decoder share: the extension numbers, limits and struct layouts of
proto/INVOKE.md, section 7, and the errors a malformed value is refused with."""

from __future__ import annotations

import datetime as _dt
import functools
import importlib
import struct
import sys
from typing import Any

from .errors import Code, SpliceError

# Reading and writing recurse once or a few times per level of nesting (a tag, its payload, the
# container): 256 levels need more frames than Python's default limit of 1000 allows.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 4000))

#: How deep containers may nest, reading or writing (7.17).
MAX_DEPTH = 256
#: Largest integer a JavaScript number holds exactly (Number.MAX_SAFE_INTEGER).
MAX_SAFE_INTEGER = 2**53 - 1

EXT_UNDEFINED = 0
EXT_TIMESTAMP = -1
EXT_BIGINT = 1
EXT_MAP = 2
EXT_ERROR = 3
EXT_REF = 4
EXT_SLOT = 5
EXT_REGEXP = 6
EXT_NDARRAY = 7
EXT_KWARGS = 8
EXT_CALLBACK = 9
#: msgpackr's own type for Set ('s').
EXT_SET = 0x73
#: Typed arrays, ArrayBuffer and DataView ('t').
EXT_TYPED = 0x74

UTC = _dt.timezone.utc
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=UTC)
#: JavaScript Dates range over ±8.64e15 ms from the epoch.
MAX_DATE_MS = 8_640_000_000_000_000

U8 = struct.Struct(">B")
U16 = struct.Struct(">H")
U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")
I8 = struct.Struct(">b")
I16 = struct.Struct(">h")
I32 = struct.Struct(">i")
I64 = struct.Struct(">q")
F32 = struct.Struct(">f")
F64 = struct.Struct(">d")

#: numpy dtype (little-endian) of each NDArray dtype name (7.20).
NDARRAY_NUMPY_DTYPES = {
    "bool": "|b1",
    "int8": "|i1",
    "int16": "<i2",
    "int32": "<i4",
    "int64": "<i8",
    "uint8": "|u1",
    "uint16": "<u2",
    "uint32": "<u4",
    "uint64": "<u8",
    "float32": "<f4",
    "float64": "<f8",
}


def invalid(message: str) -> SpliceError:
    """INVALID_ARGUMENT for bytes or a value that breaks the contract."""
    return SpliceError(Code.INVALID_ARGUMENT, message)


def too_deep() -> SpliceError:
    """The refusal of a value nested past :data:`MAX_DEPTH`, either way."""
    return SpliceError(
        Code.INVALID_ARGUMENT,
        f"value nests deeper than {MAX_DEPTH} levels (the limit of every value sent to or from splice-orc)",
        {"limit": "depth", "max": MAX_DEPTH},
    )


def describe(value: object) -> str:
    """A short description of a value for messages: its kind and type name."""
    if value is None:
        return "None"
    if callable(value):
        return f"function {getattr(value, '__qualname__', None) or type(value).__name__}"
    return f"an instance of {type(value).__name__}"


@functools.cache
def numpy_or_none() -> Any:
    """numpy when it is installed (imported on first need, so that a server whose module does not
    use it never loads it), else None."""
    try:
        return importlib.import_module("numpy")
    except ImportError:
        return None
