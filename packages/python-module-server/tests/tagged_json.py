"""The tagged JSON of the golden vectors (proto/INVOKE.md, 10.1) as Python values, and the
comparison of a decoded value with one. Test-only: the codec never reads JSON.

The Python value of each tag follows the package README ("Values"): the value an encoder must write
as the vector's bytes. Where the decoder gives another type for the same value, :func:`same` says
so: typed arrays are described by :class:`TypedArray` and decode to numpy arrays (compared by dtype
and bytes); Maps and Sets are described by the ordered :class:`MapEntries` and :class:`SetItems`
and decode to a dict or a set when Python can hold their keys or items in one.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from splice_module_server.values import (
    NDARRAY_DTYPES,
    TYPED_ARRAY_BY_NAME,
    UNDEFINED,
    BigInt,
    CallbackRef,
    DateValue,
    Kwargs,
    MapEntries,
    RegExp,
    RemoteError,
    RemoteRef,
    SetItems,
    Slot,
    TypedArray,
)

#: proto/ of the repository, found from this file (the package lives in packages/<name>/).
PROTO = Path(__file__).resolve().parents[3] / "proto"

_SPECIAL = {"-0": -0.0, "NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_STRUCT = {
    "Int8Array": "b",
    "Uint8Array": "B",
    "Uint8ClampedArray": "B",
    "Int16Array": "h",
    "Uint16Array": "H",
    "Int32Array": "i",
    "Uint32Array": "I",
    "Float32Array": "f",
    "Float64Array": "d",
    "BigInt64Array": "q",
    "BigUint64Array": "Q",
}


def load_vectors(name: str) -> list[dict[str, Any]]:
    """The vectors of proto/vectors/<name>.json."""
    return json.loads((PROTO / "vectors" / f"{name}.json").read_text("utf-8"))["vectors"]


def value_from_tagged(tagged: Any) -> Any:
    """The Python value a tagged JSON value describes."""
    if isinstance(tagged, list):
        return [value_from_tagged(v) for v in tagged]
    if not isinstance(tagged, dict):
        return tagged
    tag = next((k for k in tagged if k.startswith("$")), None)
    if tag is None:
        return {k: value_from_tagged(v) for k, v in tagged.items()}
    assert len(tagged) == 1, f"a tag has one key: {tagged}"
    body = tagged[tag]
    if tag == "$number":
        return _SPECIAL[body]
    if tag == "$undefined":
        return UNDEFINED
    if tag == "$bigint":
        return BigInt(int(body))
    if tag == "$bytes":
        return bytes.fromhex(body)
    if tag == "$typed":
        return _typed(body)
    if tag == "$date":
        return _date(body)
    if tag == "$map":
        # Ordered entries, keys of any kind: a dict could hold neither 1 and true nor a Map key.
        return MapEntries([(value_from_tagged(k), value_from_tagged(v)) for k, v in body])
    if tag == "$set":
        return SetItems([value_from_tagged(v) for v in body])
    if tag == "$error":
        return _error(body)
    if tag == "$ref":
        return RemoteRef(body["server"], body["id"], body["kind"], body["label"])
    if tag == "$slot":
        return Slot(body)
    if tag == "$callback":
        return CallbackRef(body["id"], body["label"])
    if tag == "$regexp":
        return RegExp(body["source"], body["flags"])
    if tag == "$ndarray":
        return _ndarray(body)
    if tag == "$kwargs":
        return Kwargs({k: value_from_tagged(v) for k, v in body.items()})
    if tag == "$object":
        return {k: value_from_tagged(v) for k, v in body}
    raise AssertionError(f"unknown tag {tag}")


def _typed(body: dict[str, Any]) -> TypedArray:
    name = body["type"]
    if name in ("ArrayBuffer", "DataView"):
        return TypedArray(name, bytes.fromhex(body["bytes"]))
    big = name.startswith("Big")
    values = [int(v) if big else value_from_tagged(v) for v in body["values"]]
    return TypedArray(name, struct.pack(f"<{len(values)}{_STRUCT[name]}", *values))


def _date(ms: Any) -> dt.datetime | DateValue:
    if ms == "invalid":
        return DateValue(math.nan)
    try:
        return _EPOCH + dt.timedelta(milliseconds=ms)
    except OverflowError:
        return DateValue(float(ms))


def _error(fields: dict[str, Any]) -> RemoteError:
    rest = {k: value_from_tagged(v) for k, v in fields.items() if k not in ("name", "message", "stack")}
    cause = rest.pop("cause", UNDEFINED)
    errors = rest.pop("errors", None)
    return RemoteError(
        fields["name"], fields["message"], stack=fields.get("stack"), fields=rest, cause=cause, errors=errors
    )


def _ndarray(body: dict[str, Any]) -> np.ndarray:
    dtype = body["dtype"]
    assert dtype in NDARRAY_DTYPES
    values = [int(v) if dtype.endswith("int64") else value_from_tagged(v) for v in body["values"]]
    return np.array(values, dtype=dtype).reshape(body["shape"])


def same(actual: Any, expected: Any) -> bool:
    """True when a decoded value is the value a vector describes; numbers compare by identity."""
    if expected is UNDEFINED:
        # undefined decodes to None; UNDEFINED is how a value says it has none (an error's cause).
        return actual is None or actual is UNDEFINED
    if isinstance(expected, bool) or expected is None:
        return actual is expected
    if type(expected) is BigInt:
        return type(actual) is BigInt and actual == expected
    if type(expected) is int:
        return type(actual) is int and actual == expected
    if type(expected) is float:
        if type(actual) is not float:
            return False
        if math.isnan(expected):
            return math.isnan(actual)
        return struct.pack(">d", actual) == struct.pack(">d", expected)
    if type(expected) in (str, bytes, RemoteRef, Slot, CallbackRef, RegExp):
        return type(actual) is type(expected) and actual == expected
    if type(expected) is TypedArray:
        kind = TYPED_ARRAY_BY_NAME[expected.type]
        if kind.dtype is None:
            return type(actual) is bytes and actual == expected.data
        return (
            isinstance(actual, np.ndarray)
            and actual.dtype == np.dtype(kind.dtype)
            and actual.tobytes() == expected.data
        )
    if isinstance(expected, np.ndarray):
        return (
            isinstance(actual, np.ndarray)
            and actual.dtype == expected.dtype
            and actual.shape == expected.shape
            and actual.tobytes() == expected.tobytes()
        )
    if type(expected) is DateValue:
        return type(actual) is DateValue and (
            (math.isnan(actual.ms) and math.isnan(expected.ms)) or actual.ms == expected.ms
        )
    if isinstance(expected, dt.datetime):
        return isinstance(actual, dt.datetime) and actual.tzinfo is not None and actual == expected
    if type(expected) is list:
        return (
            type(actual) is list
            and len(actual) == len(expected)
            and all(same(a, e) for a, e in zip(actual, expected, strict=True))
        )
    if type(expected) is dict:
        return (
            type(actual) is dict
            and list(actual) == list(expected)
            and all(same(actual[k], expected[k]) for k in expected)
        )
    if type(expected) is MapEntries:
        # A Map decodes to a dict when Python can hold its keys in one, else to MapEntries.
        entries = actual.items() if type(actual) is dict else getattr(actual, "entries", None)
        return entries is not None and same([list(e) for e in entries], [list(e) for e in expected.entries])
    if type(expected) is SetItems:
        # A Set decodes to a set (Python's order) when Python can hold its items in one.
        if type(actual) is set:
            return len(actual) == len(expected.items) and all(item in actual for item in expected.items)
        return type(actual) is SetItems and same(actual.items, expected.items)
    if type(expected) is Kwargs:
        return type(actual) is Kwargs and same(actual.values, expected.values)
    if type(expected) is RemoteError:
        return (
            type(actual) is RemoteError
            and (actual.name, actual.message, actual.stack)
            == (expected.name, expected.message, expected.stack)
            and same(actual.fields, expected.fields)
            and same(actual.cause, expected.cause)
            and same(actual.errors, expected.errors)
        )
    raise AssertionError(f"no comparison for {type(expected).__name__}")
