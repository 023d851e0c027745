"""A stream passed as an argument (proto/INVOKE.md 3.6), as the Node runtime's ``pipe.ts`` keeps it:
the client opens a pipe (``pipe``), passes its reference where the stream goes, and sends chunks with
``push`` while the call runs. The module receives a generator of the chunks; reading blocks its
worker thread until a chunk arrives (pushes run on other workers). A push returns once fewer than
``HIGH_WATER`` chunks wait (flow control); a reader that waits ``idle_s`` for a push fails."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from .errors import Code, SpliceError

#: Chunks a pipe holds before a push waits.
HIGH_WATER = 64
#: How long a reader waits for the client's next push, and a push for room, in seconds.
IDLE_S = 30.0


class Pipe:
    """The server side of one stream argument; nothing of it is reachable but push and close."""

    __slots__ = ("_cancelled", "_chunks", "_cond", "_ended", "_error", "_idle_s")

    def __init__(self, idle_s: float = IDLE_S) -> None:
        self._cond = threading.Condition()
        self._chunks: deque[Any] = deque()
        self._ended = False
        self._error: str | None = None
        self._cancelled = False
        self._idle_s = idle_s

    def reader(self) -> Iterator[Any]:
        """What the module receives: a generator of the chunks; leaving it stops the client's stream."""
        try:
            while True:
                found, item = self._next()
                if not found:
                    return
                yield item
        finally:
            self.cancel()

    def push(self, items: list[Any], end: bool, error: str | None) -> dict[str, bool]:
        """Adds chunks (and ends or fails the stream); returns once there is room for more."""
        with self._cond:
            if self._cancelled:
                return {"cancelled": True}
            if self._ended or self._error is not None:
                raise SpliceError(Code.FAILED_PRECONDITION, "this stream argument has already ended")
            self._chunks.extend(items)
            if error is not None:
                self._error = f"the client's stream failed: {error}"
            if end:
                self._ended = True
            self._cond.notify_all()
            deadline = time.monotonic() + self._idle_s
            while not self._cancelled and len(self._chunks) >= HIGH_WATER:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return {"cancelled": self._cancelled}

    def cancel(self) -> None:
        """Ends the pipe for good: waiting and later pushes are answered cancelled."""
        with self._cond:
            self._cancelled = True
            self._chunks.clear()
            if not self._ended and self._error is None:
                self._error = "the call this stream argument was passed to is over"
            self._cond.notify_all()

    def _next(self) -> tuple[bool, Any]:
        with self._cond:
            deadline = time.monotonic() + self._idle_s
            while not self._chunks and not self._ended and self._error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    ms = round(self._idle_s * 1000)
                    self._error = f"the client sent nothing for this stream argument in {ms} ms"
                    break
                self._cond.wait(left)
            if self._chunks:
                item = self._chunks.popleft()
                self._cond.notify_all()
                return True, item
            if self._error is not None:
                raise ConnectionError(self._error)
            return False, None
