"""Remote references, per client session (proto/INVOKE.md, section 4), as the TypeScript
ObjectTable keeps them (packages/runtime/src/object-table.ts), with the same limits and messages.

A session lives as long as its client keeps renewing the lease (every invocation renews it, and idle
clients send an empty program); a session whose lease has run out is dropped with all its objects.
Everything is bounded: objects per session, objects over all sessions, and live sessions. A new
session beyond the last limit takes the place of the least recently used session that holds nothing;
only when every session holds objects is it refused. Programs run in several threads at once, so
every method takes the table's lock.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .errors import Code, SpliceError


@dataclass(frozen=True)
class ObjectTableOptions:
    """Limits of an :class:`ObjectTable`; the defaults are the contract's (section 9)."""

    #: How long a session outlives the start of its latest invocation, in ms.
    lease_ms: int = 60_000
    #: Most objects one session may hold at once.
    max_objects_per_session: int = 100_000
    #: Most objects all sessions together may hold.
    max_objects: int = 250_000
    #: Most live sessions.
    max_sessions: int = 10_000


@dataclass
class _Session:
    expires_at: float
    objects: dict[int, object] = field(default_factory=dict)


class ObjectTable:
    """The objects that remote references point at, grouped by client session."""

    def __init__(
        self, options: ObjectTableOptions | None = None, now: Callable[[], float] | None = None
    ) -> None:
        self.options = options or ObjectTableOptions()
        self.lease_ms = self.options.lease_ms
        #: Clock in ms; tests give their own.
        self._now = now or (lambda: time.monotonic() * 1000)
        #: In order of last use: the first entry is the least recently used.
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._objects = 0
        self._next_id = 1
        self._lock = threading.Lock()

    def touch(self, session_id: str) -> None:
        """Renews a session's lease, creating the session if it is new. RESOURCE_EXHAUSTED when a
        new session would pass the limit and every live session holds objects."""
        with self._lock:
            self._touch(session_id)

    def add(self, session_id: str, value: object) -> int:
        """Stores an object for a session and returns its new id."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                self._touch(session_id)
                session = self._sessions[session_id]
            limit = self.options.max_objects_per_session
            if len(session.objects) >= limit:
                raise SpliceError(
                    Code.RESOURCE_EXHAUSTED,
                    f"session holds {limit} remote references already (the per-session limit): "
                    "release some before making more",
                    {"limit": "objects_per_session", "max": limit},
                )
            limit = self.options.max_objects
            if self._objects >= limit:
                raise SpliceError(
                    Code.RESOURCE_EXHAUSTED,
                    f"the module-server holds {limit} remote references over all sessions (its limit): "
                    "release some before making more",
                    {"limit": "objects_per_server", "max": limit},
                )
            object_id = self._next_id
            self._next_id += 1
            session.objects[object_id] = value
            self._objects += 1
            return object_id

    def get(self, session_id: str, object_id: int) -> object:
        """The object behind an id, or NOT_FOUND if it was released or its session expired."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and object_id in session.objects:
                return session.objects[object_id]
        raise SpliceError(
            Code.NOT_FOUND,
            f"remote reference {object_id} was released or its lease expired",
            {"id": object_id},
        )

    def release(self, session_id: str, ids: Iterable[int]) -> None:
        """Frees objects; ids that are already gone are ignored, so release is idempotent."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return
            for object_id in ids:
                if session.objects.pop(object_id, _GONE) is not _GONE:
                    self._objects -= 1

    def sweep(self) -> int:
        """Drops every session whose lease has run out; returns how many objects were freed."""
        with self._lock:
            return self._sweep()

    def stats(self) -> tuple[int, int]:
        """(sessions, objects) held now."""
        with self._lock:
            return len(self._sessions), self._objects

    def _touch(self, session_id: str) -> None:
        expires_at = self._now() + self.lease_ms
        session = self._sessions.get(session_id)
        if session is not None:
            session.expires_at = expires_at
            self._sessions.move_to_end(session_id)
            return
        if len(self._sessions) >= self.options.max_sessions:
            self._make_room()
        self._sessions[session_id] = _Session(expires_at)

    def _sweep(self) -> int:
        now = self._now()
        expired = [(sid, s) for sid, s in self._sessions.items() if s.expires_at <= now]
        for sid, session in expired:
            self._drop(sid, session)
        return sum(len(s.objects) for _, s in expired)

    def _make_room(self) -> None:
        """Drops the least recently used session that holds nothing, or refuses a new session."""
        self._sweep()
        limit = self.options.max_sessions
        if len(self._sessions) < limit:
            return
        for sid, session in self._sessions.items():
            if not session.objects:
                self._drop(sid, session)
                return
        raise SpliceError(
            Code.RESOURCE_EXHAUSTED,
            f"the module-server has {limit} client sessions holding references (its limit): "
            "try again when leases expire",
            {"limit": "sessions_per_server", "max": limit},
        )

    def _drop(self, session_id: str, session: _Session) -> None:
        self._objects -= len(session.objects)
        del self._sessions[session_id]


_GONE = object()
