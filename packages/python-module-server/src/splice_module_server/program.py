"""The invocation program: the checks of proto/INVOKE.md 3.4, made before a request touches a
session or runs anything, and the typed operations the executor runs. Keyword arguments (7.21) are
checked here too: valid only as the last argument of a call or new."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .decoder import Decoder
from .errors import Code, SpliceError
from .values import Kwargs, RemoteRef, Slot
from .wire import MAX_SAFE_INTEGER

#: Version of the program format this server runs.
PROGRAM_VERSION = 1
#: Most operations one program may hold.
MAX_OPS = 1024
#: Longest session id, in UTF-16 code units (the length JavaScript gives a string).
MAX_SESSION_UNITS = 128

Target = RemoteRef | Slot | None


@dataclass(frozen=True)
class Op:
    """One operation. ``args`` is empty for get; ``ids`` is used by release only."""

    op: Literal["get", "call", "new", "release"]
    target: Target = None
    path: tuple[str, ...] = ()
    args: list[Any] | None = None
    ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Request:
    """A checked request. ``binds_args`` is False when no argument holds a reference or a slot, so
    that the executor need not walk the arguments looking for one."""

    session: str
    ops: tuple[Op, ...]
    binds_args: bool


_MISSING = object()


def parse_request(decoded: Any, decoder: Decoder) -> Request:
    """Checks a decoded request (3.4) and returns it typed; INVALID_ARGUMENT for anything else."""
    if type(decoded) is not dict:
        raise _invalid("the payload is not an object")
    version = decoded.get("v", _MISSING)
    if type(version) is not int or version != PROGRAM_VERSION:
        raise _invalid(f"unsupported program version {_shown(version)}")
    session = decoded.get("session")
    if type(session) is not str or not 1 <= utf16_length(session) <= MAX_SESSION_UNITS:
        raise _invalid(f"session must be a string of 1 to {MAX_SESSION_UNITS} characters")
    raw_ops = decoded.get("ops")
    if type(raw_ops) is not list or len(raw_ops) > MAX_OPS:
        raise _invalid(f"ops must be an array of at most {MAX_OPS} operations")
    ops = tuple(_check_op(op, i) for i, op in enumerate(raw_ops))
    placed = sum(1 for op in ops if op.args and type(op.args[-1]) is Kwargs)
    if decoder.kwargs_count != placed:
        raise SpliceError(
            Code.INVALID_ARGUMENT,
            "invalid invocation: keyword arguments (kw()) may only be the last argument of a call or new",
        )
    in_targets = sum(1 for op in ops if isinstance(op.target, (RemoteRef, Slot)))
    return Request(session, ops, binds_args=decoder.ref_count + decoder.slot_count > in_targets)


def _check_op(op: Any, index: int) -> Op:
    if type(op) is not dict:
        raise _invalid(f"ops[{index}] is not an object")
    kind = op.get("op")
    if kind == "release":
        ids = op.get("ids")
        if type(ids) is not list or not all(_is_safe_integer(i) for i in ids):
            raise _invalid(f"ops[{index}].ids must be an array of integers")
        return Op("release", ids=tuple(ids))
    if kind not in ("get", "call", "new"):
        raise _invalid(f"ops[{index}].op must be get, call, new or release")
    target = op.get("target", _MISSING)
    if not (
        target is None or type(target) is RemoteRef or (type(target) is Slot and 0 <= target.index < index)
    ):
        raise _invalid(f"ops[{index}].target must be null, a remote reference or an earlier slot")
    path = op.get("path")
    if type(path) is not list or not all(type(s) is str for s in path):
        raise _invalid(f"ops[{index}].path must be an array of strings")
    if kind == "get":
        return Op("get", target, tuple(path))
    args = op.get("args")
    if type(args) is not list:
        raise _invalid(f"ops[{index}].args must be an array")
    return Op(kind, target, tuple(path), args)


def utf16_length(text: str) -> int:
    """The length JavaScript gives a string: characters outside the BMP count two."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _is_safe_integer(value: object) -> bool:
    return type(value) is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER


def _shown(value: object) -> str:
    return "undefined" if value is _MISSING else repr(value)


def _invalid(message: str) -> SpliceError:
    return SpliceError(Code.INVALID_ARGUMENT, f"invalid invocation: {message}")
