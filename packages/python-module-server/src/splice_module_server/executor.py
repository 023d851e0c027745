"""Runs an invocation program against the module (proto/INVOKE.md 3.2): each operation walks its
path from the module root, a remote reference or an earlier result, through the guard, and the
result of the last get, call or new is the answer.

Python's adaptation of the contract: a path segment is an attribute (``getattr``); a call's function
is the attribute's value, so bound methods carry their object and there is no ``this`` to pass;
``new`` calls the class (Python constructs by calling); keyword arguments (a :class:`Kwargs` as the
last argument) become ``**kwargs``; a coroutine or other awaitable that a get or call gives is run
to its end in the worker thread. Errors the module raises (an AttributeError on the way included) are
answers; refusals of the invocation itself are :class:`SpliceError`.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import Any

from .errors import Code, SpliceError
from .guard import Guard, format_path
from .object_table import ObjectTable
from .program import Op, Request, Target
from .values import UNDEFINED, Kwargs, MapEntries, RemoteRef, SetItems, Slot

_ARGUMENT = ("(argument)",)


@dataclass(frozen=True)
class ExecutionContext:
    """What a program runs against."""

    root: object
    table: ObjectTable
    #: Id of this server instance: references made by another instance are not ours.
    server_id: str
    session: str
    guard: Guard


def execute(request: Request, ctx: ExecutionContext) -> Any:
    """Runs every operation in order; the result of the last get, call or new, or UNDEFINED."""
    results: list[Any] = []
    answer: Any = UNDEFINED
    for op in request.ops:
        value = _run(op, ctx, results, request.binds_args)
        results.append(value)
        if op.op != "release":
            answer = value
    return answer


def _run(op: Op, ctx: ExecutionContext, results: list[Any], binds_args: bool) -> Any:
    if op.op == "release":
        ctx.table.release(ctx.session, op.ids)
        return None
    guard = ctx.guard
    base = _resolve(op.target, ctx, results)
    guard.check_value(base, ())
    path = op.path
    n = len(path)
    if op.op == "get":
        value = _settle(_walk(base, path, 0, n, guard))
        guard.check_value(value, path)
        return value
    args, kwargs = _arguments(op.args or [], ctx, results, binds_args)
    function = base if n == 0 else _walk(_walk(base, path, 0, n - 1, guard), path, n - 1, n, guard)
    if not callable(function):
        kind = "constructor" if op.op == "new" else "function"
        raise TypeError(f"{format_path(path)} is not a {kind}: it is {type(function).__name__!r}")
    value = function(*args, **kwargs)
    if op.op == "call":
        value = _settle(value)
    guard.check_value(value, path)
    return value


def _walk(base: Any, path: tuple[str, ...], start: int, end: int, guard: Guard) -> Any:
    value = base
    for i in range(start, end):
        reached = path[: i + 1]
        guard.check_segment(value, path[i], reached)
        value = getattr(value, path[i])
        guard.check_value(value, reached)
    return value


def _settle(value: Any) -> Any:
    """Runs a coroutine (or any awaitable that is not a class) to its end, in this worker thread."""
    if isinstance(value, type) or not inspect.isawaitable(value):
        return value

    async def wait() -> Any:
        return await value

    return asyncio.run(wait())


def _resolve(target: Target, ctx: ExecutionContext, results: list[Any]) -> Any:
    if target is None:
        return ctx.root
    if type(target) is Slot:
        return _slot_value(target, results)
    return _lookup(target, ctx)


def _slot_value(slot: Slot, results: list[Any]) -> Any:
    if not 0 <= slot.index < len(results):
        raise SpliceError(
            Code.INVALID_ARGUMENT, f"slot {slot.index} is not the index of an earlier operation"
        )
    return results[slot.index]


def _lookup(ref: RemoteRef, ctx: ExecutionContext) -> object:
    if ref.server != ctx.server_id:
        raise SpliceError(
            Code.NOT_FOUND,
            f"remote reference {ref.id} ({ref.label}) belongs to module-server {ref.server}, not to this one "
            f"({ctx.server_id}): the server that held it has restarted or stopped",
            {"id": ref.id, "server": ref.server},
        )
    return ctx.table.get(ctx.session, ref.id)


def _arguments(
    raw: list[Any], ctx: ExecutionContext, results: list[Any], binds_args: bool
) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments, every reference and slot replaced by what it names."""
    args = raw
    kwargs: dict[str, Any] = {}
    if args and type(args[-1]) is Kwargs:
        kwargs = args[-1].values
        args = args[:-1]
    if not binds_args:
        return args, kwargs
    binder = _Binder(ctx, results)
    return [binder.bind(a) for a in args], {k: binder.bind(v) for k, v in kwargs.items()}


class _Binder:
    """Replaces references and slots inside decoded arguments; the decoded tree is ours to change."""

    def __init__(self, ctx: ExecutionContext, results: list[Any]) -> None:
        self.ctx = ctx
        self.results = results

    def bind(self, value: Any) -> Any:
        t = type(value)
        if t is RemoteRef or t is Slot:
            bound = _slot_value(value, self.results) if t is Slot else _lookup(value, self.ctx)
            self.ctx.guard.check_deep(bound, _ARGUMENT)
            return bound
        if t is list:
            for i, item in enumerate(value):
                value[i] = self.bind(item)
        elif t is dict:
            return self._hashed(lambda: {self.bind(k): self.bind(v) for k, v in value.items()})
        elif t is set:
            return self._hashed(lambda: {self.bind(item) for item in value})
        elif t is MapEntries:
            value.entries = [(self.bind(k), self.bind(v)) for k, v in value.entries]
        elif t is SetItems:
            value.items = [self.bind(item) for item in value.items]
        return value

    @staticmethod
    def _hashed(build: Any) -> Any:
        try:
            return build()
        except TypeError as cause:
            raise SpliceError(
                Code.INVALID_ARGUMENT,
                f"a reference used as a Map key or Set item names an object Python cannot hash: {cause}",
            ) from cause
