"""The one error class of the Python module-server, with the closed set of codes every side of
splice-orc uses: the gRPC status names and numbers, so that a failure keeps its name from this
server through the pod-manager to the client (packages/protocol/src/status.ts holds the same table).
"""

from __future__ import annotations

import enum
from typing import Any


class Code(enum.IntEnum):
    """gRPC status codes by name; the value is the number on the wire."""

    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class SpliceError(Exception):
    """A failure of the invocation itself (not of the module): answered as a gRPC status.

    ``details`` carries structured context (a limit and its maximum), as the TypeScript SpliceError
    does; only the code and the message travel.
    """

    def __init__(self, code: Code, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    @staticmethod
    def wrap(reason: BaseException, fallback: Code = Code.INTERNAL) -> SpliceError:
        """Keeps a SpliceError as it is; anything else becomes one with ``fallback``."""
        if isinstance(reason, SpliceError):
            return reason
        return SpliceError(fallback, str(reason) or type(reason).__name__)

    def __repr__(self) -> str:
        return f"SpliceError({self.code.name}, {self.message!r})"
