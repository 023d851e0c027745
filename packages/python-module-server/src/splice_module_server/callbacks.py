"""Callbacks (proto/INVOKE.md 3.7), as the Node module-server keeps them: a function of the app among
a call's arguments arrives as a :class:`CallbackRef`, which the executor replaces by a *stub*. Calling
the stub queues a callback request and blocks the call's worker thread until the app answers; the
app collects requests and sends answers with ``callbacks`` programs, which this server serves on its
own port, on the event loop (a call blocked in a worker does not stop it).

A Python stub returns the app's value; when the app's function is async, it waits for the settled
value (Python code that calls a function synchronously expects a value, not an awaitable). A
session's waiting requests fail at once when its last waiting exchange is cancelled (the app went
away) or when it says ``close``; a request no exchange collects within ``absent_s`` fails too.

Stubs are held weakly: when module code lets go of one (CPython frees it at once, or its cycle
collector later), the app is told in the next exchange's answer (``dropped``, with how many times
the id was bound since its last notice) and forgets the function, so a loop that passes a fresh
function each time does not pile callbacks up on either side."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .codec import Decoder, Encoder
from .errors import Code, SpliceError
from .values import MAX_CALLBACK_ID_LENGTH, CallbackRef, RemoteError

#: Longest a ``callbacks`` operation may wait for a request, ms.
MAX_CALLBACK_WAIT_MS = 25_000
#: Most answers, released ids or requests one exchange carries.
MAX_CALLBACK_ITEMS = 1024
#: Most live callbacks (stubs) one session may have: past it, a call that passes a new one is refused.
MAX_CALLBACKS_PER_SESSION = 100_000
#: How long before its call's deadline a stub stops waiting, so that the module can still answer.
_DEADLINE_MARGIN_S = 0.1
#: Sessions kept; past it, those with nothing waiting are forgotten.
_MAX_SESSIONS = 10_000

_ENDED = "the app's session has ended: its callbacks can no longer be called"
_GONE = "the app went away (its connection for callbacks closed)"

#: The deadline (time.monotonic) of the call running on this worker thread.
_call = threading.local()


def set_call_deadline(deadline: float | None) -> None:
    """Called by the invocation handler around a program: a callback waits no longer than this."""
    _call.deadline = deadline


@dataclass
class _Waiter:
    """One request waiting for the app's replies: answers (bytes) or a failure (str)."""

    event: threading.Event = field(default_factory=threading.Event)
    replies: deque[bytes | str] = field(default_factory=deque)

    def put(self, reply: bytes | str) -> None:
        self.replies.append(reply)
        self.event.set()

    def take(self, deadline: float) -> bytes | str | None:
        while not self.replies:
            left = deadline - time.monotonic()
            if left <= 0 or not self.event.wait(left):
                return None
            self.event.clear()
        return self.replies.popleft()


@dataclass
class _Stub:
    """A session's stub for one id, held weakly, and how often the id was bound since its last notice."""

    ref: weakref.ref[Callable[..., Any]]
    binds: int


@dataclass
class _Session:
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    waiters: dict[int, _Waiter] = field(default_factory=dict)
    polls: list[asyncio.Future[list[dict[str, Any]]]] = field(default_factory=list)
    stubs: dict[str, _Stub] = field(default_factory=dict)
    #: Stubs module code let go of, for the app to forget (sent with the next answer).
    dropped: list[dict[str, Any]] = field(default_factory=list)
    released: set[str] = field(default_factory=set)
    absent: asyncio.TimerHandle | None = None
    ended: str | None = None
    gone: bool = False


@dataclass(frozen=True)
class CallbacksOp:
    """A checked ``callbacks`` operation."""

    answers: list[tuple[int, bytes]]
    released: list[str]
    wait_ms: int
    close: bool


class CallbackHub:
    """The stubs and waiting requests of one server, by session."""

    def __init__(
        self,
        *,
        server_id: str,
        encode_args: Callable[[str, list[Any]], bytes],
        bind: Callable[[str, Any], Any],
        timeout_s: float = 30.0,
        absent_s: float = 10.0,
        max_per_session: int = MAX_CALLBACKS_PER_SESSION,
    ) -> None:
        self.server_id = server_id
        self._encode_args = encode_args
        self._bind = bind
        self._timeout_s = timeout_s
        self._absent_s = absent_s
        self._max_per_session = max_per_session
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._seq = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Stubs freed, as (session, id, weakref): appended by weakref callbacks, which run on any
        #: thread at any moment (even one holding the lock), so they take no lock; drained under it.
        self._freed: deque[tuple[str, str, weakref.ref[Callable[..., Any]]]] = deque()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop exchanges run on (the server's)."""
        self._loop = loop

    # -- the module's side (worker threads) --------------------------------------------------------

    def stub(self, session: str, ref: CallbackRef) -> Callable[..., Any]:
        """The function that stands for ``ref`` in ``session``: the same one each time it is passed."""
        with self._lock:
            self._drain_freed()
            state = self._state(session)
            if state.ended is not None:
                raise SpliceError(Code.FAILED_PRECONDITION, state.ended)
            state.released.discard(ref.id)
            entry = state.stubs.get(ref.id)
            stub = entry.ref() if entry is not None else None
            if entry is not None and stub is not None:
                entry.binds += 1
                return stub
            if len(state.stubs) - (entry is not None) >= self._max_per_session:
                raise SpliceError(
                    Code.RESOURCE_EXHAUSTED,
                    f"this session has {self._max_per_session} live callbacks here: "
                    "the app must release some (orc.release(fn))",
                )
            stub = self._make_stub(session, ref)
            freed = self._freed
            key = ref.id

            def on_freed(dead: weakref.ref[Callable[..., Any]]) -> None:
                freed.append((session, key, dead))
                self._soon_quietly(self._flush_freed)

            # A collected stub whose notice has not run hands its count on (its notice is void).
            state.stubs[ref.id] = _Stub(weakref.ref(stub, on_freed), (entry.binds if entry else 0) + 1)
            return stub

    def _drain_freed(self) -> set[str]:
        """Under the lock: moves freed stubs to their sessions' ``dropped`` lists; the sessions."""
        touched: set[str] = set()
        while self._freed:
            session, key, dead = self._freed.popleft()
            state = self._sessions.get(session)
            entry = state.stubs.get(key) if state is not None else None
            if state is None or entry is None or entry.ref is not dead:
                continue  # released, ended, or bound to a new stub since
            del state.stubs[key]
            state.dropped.append({"callback": key, "binds": entry.binds})
            touched.add(session)
        return touched

    def _flush_freed(self) -> None:
        """On the loop: hands freed stubs to the sessions' waiting exchanges."""
        with self._lock:
            touched = self._drain_freed()
        for session in touched:
            self._deliver(session)

    def take_dropped(self, session: str) -> list[dict[str, Any]]:
        """The stubs of ``session`` module code let go of since the last answer (at most the limit)."""
        with self._lock:
            self._drain_freed()
            state = self._sessions.get(session)
            if state is None or not state.dropped:
                return []
            taken = state.dropped[:MAX_CALLBACK_ITEMS]
            del state.dropped[:MAX_CALLBACK_ITEMS]
            return taken

    def _make_stub(self, session: str, ref: CallbackRef) -> Callable[..., Any]:
        label = ref.label or "anonymous"

        def callback(*args: Any, **kwargs: Any) -> Any:
            if kwargs:
                raise TypeError(
                    f"callback {label} is a function of the app: it takes positional arguments only"
                )
            return self._invoke(session, ref.id, label, list(args))

        callback.__name__ = label
        callback.__qualname__ = label
        return callback

    def _invoke(self, session: str, callback: str, label: str, args: list[Any]) -> Any:
        encoded = self._encode_args(session, args)
        waiter = _Waiter()
        with self._lock:
            state = self._state(session)
            if state.ended is not None:
                raise RuntimeError(f"callback {label}: {state.ended}")
            if callback in state.released:
                raise RuntimeError(f"callback {label} was released by the app and can no longer be called")
            if state.gone:
                raise RuntimeError(f"callback {label}: {_GONE}")
            request = next(self._seq)
            state.waiters[request] = waiter
            state.queue.append({"request": request, "callback": callback, "args": encoded})
        self._soon(self._deliver, session)
        started = time.monotonic()
        # Short of the call's deadline by a margin: the call's timer runs on the event loop, another
        # thread, and must not end the call before this stub's error has become the module's answer.
        call_deadline = getattr(_call, "deadline", None)
        deadline = started + self._timeout_s
        if call_deadline is not None:
            deadline = min(deadline, call_deadline - _DEADLINE_MARGIN_S)
        try:
            while True:
                reply = waiter.take(deadline)
                if reply is None:
                    waited = round((time.monotonic() - started) * 1000)
                    raise TimeoutError(f"callback {label} was not answered by the app within {waited} ms")
                if isinstance(reply, str):
                    raise RuntimeError(f"callback {label}: {reply}")
                outcome = Decoder().decode(reply)
                if type(outcome) is not dict:
                    raise SpliceError(Code.INVALID_ARGUMENT, "malformed callback answer")
                if outcome.get("pending") is True:
                    continue  # the app's function is async: its settled outcome follows
                if outcome.get("ok") is True:
                    return self._bind(session, outcome.get("value"))
                error = outcome.get("error")
                raise error if isinstance(error, RemoteError) else RuntimeError(str(error))
        finally:
            with self._lock:
                state.waiters.pop(request, None)
                if any(r["request"] == request for r in state.queue):
                    state.queue = deque(r for r in state.queue if r["request"] != request)

    # -- the app's side (the event loop) -----------------------------------------------------------

    async def exchange(self, session: str, op: CallbacksOp, budget_ms: int) -> list[dict[str, Any]]:
        """Applies the app's answers and releases, then returns the waiting requests, waiting up to
        ``op.wait_ms`` for one when none waits."""
        with self._lock:
            state = self._state(session)
            state.gone = False
            # A newer exchange ends the waiting ones: the app wants its answers through.
            polls, state.polls = state.polls, []
            for request, answer in op.answers:
                waiter = state.waiters.get(request)
                if waiter is not None:
                    waiter.put(answer)
            for callback in op.released:
                state.released.add(callback)
                state.stubs.pop(callback, None)
            self._drain_freed()
            if op.close:
                state.ended = _ENDED
                self._fail(state, "the app's session has ended")
        for poll in polls:
            if not poll.done():
                poll.set_result([])
        if op.close or state.ended is not None:
            # Closed (now, or before this exchange arrived): nothing to wait for.
            return []
        wait = min(op.wait_ms, max(0, budget_ms - 100)) / 1000
        with self._lock:
            if state.queue or state.dropped or wait == 0:
                taken = self._take(state)
                self._soon(self._watch, session)
                return taken
            poll: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
            state.polls.append(poll)
            if state.absent is not None:
                state.absent.cancel()
                state.absent = None
        try:
            return await asyncio.wait_for(asyncio.shield(poll), wait)
        except asyncio.TimeoutError:
            self._soon(self._watch, session)
            return []
        except asyncio.CancelledError:
            self._cancelled(state, poll)
            raise
        finally:
            with self._lock, contextlib.suppress(ValueError):
                state.polls.remove(poll)

    def close(self) -> None:
        """The server stops: nothing will answer what waits."""
        with self._lock:
            for state in self._sessions.values():
                self._fail(state, "the module-server is shutting down")

    def _cancelled(self, state: _Session, poll: asyncio.Future[Any]) -> None:
        with self._lock:
            with contextlib.suppress(ValueError):
                state.polls.remove(poll)
            if state.polls or state.ended is not None:
                return
            # The app's last waiting exchange went away: nothing will answer what waits for it.
            state.gone = True
            self._fail(state, _GONE)

    def _deliver(self, session: str) -> None:
        """On the loop: hands queued requests to waiting exchanges, then watches the session."""
        with self._lock:
            state = self._sessions.get(session)
            if state is None:
                return
            while (state.queue or state.dropped) and state.polls:
                poll = state.polls.pop(0)
                if not poll.done():
                    poll.set_result(self._take(state))
                    if not state.queue:
                        break  # the dropped stubs go with this answer (``take_dropped``)
        self._watch(session)

    def _watch(self, session: str) -> None:
        """On the loop: while requests wait for the app and no exchange of it waits, the app must
        show up within ``absent_s`` (any exchange does), else what waits for it fails."""
        with self._lock:
            state = self._sessions.get(session)
            if state is None or self._loop is None:
                return
            if state.absent is not None:
                state.absent.cancel()
                state.absent = None
            if state.polls or not state.waiters:
                return
            state.absent = self._loop.call_later(self._absent_s, self._absent, session)

    def _absent(self, session: str) -> None:
        with self._lock:
            state = self._sessions.get(session)
            if state is None:
                return
            state.absent = None
            if state.polls:
                return
            ms = round(self._absent_s * 1000)
            self._fail(
                state,
                f"the app has not been heard from for {ms} ms (is its client still running, and its thread free?)",
            )

    def _take(self, state: _Session) -> list[dict[str, Any]]:
        return [state.queue.popleft() for _ in range(min(len(state.queue), MAX_CALLBACK_ITEMS))]

    @staticmethod
    def _fail(state: _Session, message: str) -> None:
        state.queue.clear()
        for waiter in state.waiters.values():
            waiter.put(message)

    def _state(self, session: str) -> _Session:
        state = self._sessions.get(session)
        if state is None:
            if len(self._sessions) >= _MAX_SESSIONS:
                for key, s in list(self._sessions.items()):
                    if not s.queue and not s.waiters and not s.polls and s.ended is None:
                        del self._sessions[key]
            state = _Session()
            self._sessions[session] = state
        return state

    def _soon_quietly(self, fn: Callable[..., None], *args: Any) -> None:
        """``_soon`` from a weakref callback: no loop (yet, or any more) is not an error there; what
        it would do happens at the next stub or exchange."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(fn, *args)

    def _soon(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is None:
            raise SpliceError(Code.FAILED_PRECONDITION, "this server takes no callbacks")
        self._loop.call_soon_threadsafe(fn, *args)


def parse_callbacks_request(decoded: Any) -> tuple[str, CallbacksOp]:
    """Checks a decoded ``{v: 1, session, ops: [callbacks op]}``; INVALID_ARGUMENT otherwise."""
    if type(decoded) is not dict or decoded.get("v") != 1:
        raise _invalid("v must be 1")
    session = decoded.get("session")
    if type(session) is not str or not 1 <= len(session) <= 128:
        raise _invalid("session must be a string of 1 to 128 characters")
    ops = decoded.get("ops")
    if type(ops) is not list or len(ops) != 1:
        raise _invalid("a callbacks program has exactly one operation, callbacks")
    op = ops[0]
    if type(op) is not dict or op.get("op") != "callbacks":
        raise _invalid("the callback endpoint takes only the callbacks operation")
    return session, _check_op(op)


def _check_op(op: dict[str, Any]) -> CallbacksOp:
    answers = op.get("answers", [])
    if type(answers) is not list or len(answers) > MAX_CALLBACK_ITEMS:
        raise _invalid(f"answers must be an array of at most {MAX_CALLBACK_ITEMS}")
    checked: list[tuple[int, bytes]] = []
    for answer in answers:
        request = answer.get("request") if type(answer) is dict else None
        body = answer.get("answer") if type(answer) is dict else None
        if type(request) is not int or not isinstance(body, (bytes, bytearray, memoryview)):
            raise _invalid("each answer is {request: integer, answer: bytes}")
        checked.append((request, bytes(body)))
    released = op.get("released", [])
    if (
        type(released) is not list
        or len(released) > MAX_CALLBACK_ITEMS
        or not all(type(i) is str and len(i) <= MAX_CALLBACK_ID_LENGTH for i in released)
    ):
        raise _invalid(f"released must be an array of at most {MAX_CALLBACK_ITEMS} callback ids")
    wait = op.get("wait", 0)
    if type(wait) is not int or not 0 <= wait <= MAX_CALLBACK_WAIT_MS:
        raise _invalid(f"wait must be an integer from 0 to {MAX_CALLBACK_WAIT_MS} ms")
    close = op.get("close", False)
    if type(close) is not bool:
        raise _invalid("close must be a boolean")
    return CallbacksOp(checked, released, wait, close)


def _invalid(message: str) -> SpliceError:
    return SpliceError(Code.INVALID_ARGUMENT, f"invalid callbacks program: {message}")


def encode_callbacks_answer(
    server_id: str, requests: list[dict[str, Any]], dropped: list[dict[str, Any]] | None = None
) -> bytes:
    """The response of a ``callbacks`` program (section 6 with the requests, and the stubs dropped
    since the last answer when there are any, as its value)."""
    value: dict[str, Any] = {"server": server_id, "requests": requests}
    if dropped:
        value["dropped"] = dropped
    return Encoder().encode({"v": 1, "ok": True, "value": value, "lease": 0})


__all__ = [
    "CallbackHub",
    "CallbacksOp",
    "encode_callbacks_answer",
    "parse_callbacks_request",
    "set_call_deadline",
]
