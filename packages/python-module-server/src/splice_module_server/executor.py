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
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import Code, SpliceError
from .guard import Guard, format_path
from .object_table import ObjectTable
from .pipe import Pipe
from .program import Op, Request, Target
from .values import UNDEFINED, CallbackRef, Kwargs, MapEntries, RemoteRef, SetItems, Slot

if TYPE_CHECKING:
    from .callbacks import CallbackHub

_ARGUMENT = ("(argument)",)
_ITEM = ("(item)",)
#: After the first item, a pull takes more only while it has run for less than this (seconds): a
#: slow producer (a stream of tokens) is passed on as it produces, a fast one in full windows.
_PULL_BUDGET_S = 0.01
#: Errors an iterator raised after a pull had taken items, thrown by its next pull (by id; bounded).
_failed: OrderedDict[int, tuple[Any, BaseException]] = OrderedDict()
_MAX_FAILED = 1024


@dataclass(frozen=True)
class ExecutionContext:
    """What a program runs against."""

    root: object
    table: ObjectTable
    #: Id of this server instance: references made by another instance are not ours.
    server_id: str
    session: str
    guard: Guard
    #: Stubs for the app's functions among arguments; without it, a callback is refused.
    callbacks: CallbackHub | None = None


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
    if op.op in _ITERATION_OPS:
        return _run_iteration_op(op, ctx, results)
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


_ITERATION_OPS = frozenset({"pipe", "push", "pull", "close"})


def _run_iteration_op(op: Op, ctx: ExecutionContext, results: list[Any]) -> Any:
    """pipe, push, pull and close (INVOKE.md 3.5, 3.6)."""
    if op.op == "pipe":
        return Pipe()
    base = _resolve(op.target, ctx, results)
    ctx.guard.check_value(base, ())
    if op.op == "push":
        if type(base) is not Pipe:
            raise TypeError("push needs the reference of a pipe (a stream argument)")
        binder = _Binder(ctx, results)
        return base.push([binder.bind(item) for item in op.items or []], op.end, op.error)
    if op.op == "pull":
        return _pull(base, op.max, type(op.target) is RemoteRef, ctx.guard)
    if type(base) is Pipe:
        base.cancel()
    else:
        _failed.pop(id(base), None)
        close = getattr(base, "close", None)
        if inspect.isgenerator(base) and callable(close):
            close()
    return UNDEFINED


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


def bind_value(value: Any, ctx: ExecutionContext) -> Any:
    """Binds the references and callbacks in a value the app answered a callback with."""
    return _Binder(ctx, []).bind(value)


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
        if t is CallbackRef:
            if self.ctx.callbacks is None:
                raise SpliceError(
                    Code.INVALID_ARGUMENT, "this server takes no callbacks (functions as arguments)"
                )
            return self.ctx.callbacks.stub(self.ctx.session, value)
        if t is RemoteRef or t is Slot:
            bound = _slot_value(value, self.results) if t is Slot else _lookup(value, self.ctx)
            if type(bound) is Pipe:
                # A stream argument: the module reads the pipe's chunks.
                return bound.reader()
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


def _pull(value: Any, limit: int, target_is_reference: bool, guard: Guard) -> dict[str, Any]:
    """Takes up to ``limit`` items of an iterator, or of the iterator an iterable makes (INVOKE.md
    3.5). The iterator comes back when this pull made it and it is not exhausted."""
    if hasattr(value, "__anext__") or (hasattr(value, "__aiter__") and not hasattr(value, "__iter__")):
        raise TypeError(
            "async iterators cannot be iterated through the Python module-server: return a generator "
            "or another (synchronous) iterator"
        )
    iterator = value if hasattr(value, "__next__") else iter(value)
    guard.check_value(iterator, ("(iterator)",))
    stashed = _failed.pop(id(iterator), None)
    if stashed is not None and stashed[0] is iterator:
        raise stashed[1]
    items: list[Any] = []
    done = False
    started = 0.0
    try:
        while len(items) < limit:
            if items and time.monotonic() - started > _PULL_BUDGET_S:
                break
            try:
                item = next(iterator)
            except StopIteration:
                done = True
                break
            guard.check_deep(item, _ITEM)
            if not items:
                started = time.monotonic()
            items.append(item)
    except Exception as error:  # the module's error: answered after the items taken
        if not items:
            raise
        _failed[id(iterator)] = (iterator, error)
        while len(_failed) > _MAX_FAILED:
            _failed.popitem(last=False)
    made = not (target_is_reference and iterator is value)
    if done or not made:
        return {"items": items, "done": done}
    return {"items": items, "done": done, "iterator": iterator}
