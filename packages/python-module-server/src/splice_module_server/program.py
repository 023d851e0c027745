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
#: Most items one pull may ask for.
MAX_PULL_ITEMS = 1024

Target = RemoteRef | Slot | None


@dataclass(frozen=True)
class Op:
    """One operation. ``args`` is empty for get; ``ids`` is used by release only."""

    op: Literal["get", "call", "new", "release", "pull", "close", "pipe", "push"]
    target: Target = None
    path: tuple[str, ...] = ()
    args: list[Any] | None = None
    ids: tuple[int, ...] = ()
    #: Most items a pull takes.
    max: int = 0
    #: A push's chunks, whether the stream ends after them, and the error it failed with.
    items: list[Any] | None = None
    end: bool = False
    error: str | None = None


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
    bound = decoder.ref_count + decoder.slot_count + decoder.callback_count
    return Request(session, ops, binds_args=bound > in_targets)


def _check_op(op: Any, index: int) -> Op:
    if type(op) is not dict:
        raise _invalid(f"ops[{index}] is not an object")
    kind = op.get("op")
    if kind == "release":
        ids = op.get("ids")
        if type(ids) is not list or not all(_is_safe_integer(i) for i in ids):
            raise _invalid(f"ops[{index}].ids must be an array of integers")
        return Op("release", ids=tuple(ids))
    if kind == "pipe":
        return Op("pipe")
    if kind not in ("get", "call", "new", "pull", "close", "push"):
        raise _invalid(f"ops[{index}].op must be get, call, new, release, pull, close, pipe or push")
    target = op.get("target", _MISSING)
    if not (
        target is None or type(target) is RemoteRef or (type(target) is Slot and 0 <= target.index < index)
    ):
        raise _invalid(f"ops[{index}].target must be null, a remote reference or an earlier slot")
    if kind in ("close", "push", "pull"):
        return _check_iteration_op(kind, target, op, index)
    path = op.get("path")
    if type(path) is not list or not all(type(s) is str for s in path):
        raise _invalid(f"ops[{index}].path must be an array of strings")
    if kind == "get":
        return Op("get", target, tuple(path))
    args = op.get("args")
    if type(args) is not list:
        raise _invalid(f"ops[{index}].args must be an array")
    return Op(kind, target, tuple(path), args)


def _check_iteration_op(kind: str, target: Target, op: dict[str, Any], index: int) -> Op:
    """pull, close and push (INVOKE.md 3.5, 3.6), their target already checked."""
    if kind == "pull":
        limit = op.get("max")
        if type(limit) is not int or not 1 <= limit <= MAX_PULL_ITEMS:
            raise _invalid(f"ops[{index}].max must be an integer from 1 to {MAX_PULL_ITEMS}")
        return Op("pull", target, max=limit)
    if kind == "close":
        return Op("close", target)
    items = op.get("items")
    if type(items) is not list or len(items) > MAX_PULL_ITEMS:
        raise _invalid(f"ops[{index}].items must be an array of at most {MAX_PULL_ITEMS} chunks")
    end = op.get("end")
    if type(end) is not bool:
        raise _invalid(f"ops[{index}].end must be a boolean")
    error = op.get("error")
    if error is not None and (type(error) is not str or utf16_length(error) > 1000):
        raise _invalid(f"ops[{index}].error must be a string of at most 1000 characters")
    return Op("push", target, items=items, end=end, error=error)


def utf16_length(text: str) -> int:
    """The length JavaScript gives a string: characters outside the BMP count two."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _is_safe_integer(value: object) -> bool:
    return type(value) is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER


def _shown(value: object) -> str:
    return "undefined" if value is _MISSING else repr(value)


def _invalid(message: str) -> SpliceError:
    return SpliceError(Code.INVALID_ARGUMENT, f"invalid invocation: {message}")
