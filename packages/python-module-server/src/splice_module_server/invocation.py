"""One invocation, bytes in and bytes out: decode the program, check it, run it against the module,
encode the outcome, making remote references for what cannot travel by value. The server runs it in
a worker thread and wraps it in gRPC; tests call it directly."""

from __future__ import annotations

import os
import types
from dataclasses import dataclass
from typing import Any

from .callbacks import CallbackHub, set_call_deadline
from .codec import Decoder, Encoder
from .errors import Code, SpliceError
from .executor import ExecutionContext, execute
from .guard import Guard
from .object_table import ObjectTable
from .program import PROGRAM_VERSION, parse_request
from .values import RemoteRef

_RESULT = ("(result)",)
_CALLBACK_ARGS = ("(callback argument)",)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_NAMED = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType)


@dataclass(frozen=True)
class InvocationResult:
    """The encoded answer, and whether the module raised (for the outcome trailer)."""

    payload: bytes
    threw: bool


class InvocationHandler:
    """Runs invocations against one loaded module. Thread-safe: programs of different calls run in
    parallel worker threads; the object table is the only state they share."""

    def __init__(
        self,
        root: object,
        table: ObjectTable,
        server_id: str,
        guard: Guard,
        callbacks: CallbackHub | None = None,
    ) -> None:
        self.root = root
        self.table = table
        self.server_id = server_id
        self.guard = guard
        self.callbacks = callbacks

    def __call__(self, payload: bytes | memoryview, deadline: float | None = None) -> InvocationResult:
        """Raises SpliceError for a failure of the invocation itself (malformed, refused, unknown
        reference, an answer that cannot be sent); an exception of the module is an answer.
        ``deadline`` (time.monotonic) bounds how long a callback of this call waits for the app."""
        decoder = Decoder()
        request = parse_request(decoder.decode(payload), decoder)
        self.table.touch(request.session)
        ctx = ExecutionContext(
            self.root, self.table, self.server_id, request.session, self.guard, self.callbacks
        )
        lease = self.table.lease_ms
        set_call_deadline(deadline)
        try:
            response: dict[str, Any] = {
                "v": PROGRAM_VERSION,
                "ok": True,
                "value": execute(request, ctx),
                "lease": lease,
            }
        except SpliceError:
            raise
        except BaseException as error:  # noqa: BLE001 - whatever the module raises is its answer
            response = {
                "v": PROGRAM_VERSION,
                "ok": False,
                "error": _without_server_frames(error),
                "lease": lease,
            }
        finally:
            set_call_deadline(None)
        return InvocationResult(self._encode(response, ctx), threw=not response["ok"])

    def reference_maker(self, session: str, made: list[int], where: tuple[str, ...]) -> Any:
        """Makes a reference in ``session`` for each value that cannot travel by value, noting its
        id in ``made`` (a failed encoding releases them); ``where`` names the value in refusals."""

        def export(value: object) -> RemoteRef:
            # A forbidden value nested in a value must not become a reference.
            self.guard.check_value(value, where)
            object_id = self.table.add(session, value)
            made.append(object_id)
            kind = "function" if callable(value) else "object"
            return RemoteRef(self.server_id, object_id, kind, label_of(value))

        return export

    def encode_callback_args(self, session: str, args: list[Any]) -> bytes:
        """A callback's arguments, encoded like an answer: plain data by value, the rest as references."""
        made: list[int] = []
        try:
            return Encoder(self.reference_maker(session, made, _CALLBACK_ARGS)).encode(args)
        except BaseException:
            self.table.release(session, made)
            raise

    def _encode(self, response: dict[str, Any], ctx: ExecutionContext) -> bytes:
        made: list[int] = []
        export = self.reference_maker(ctx.session, made, _RESULT)
        try:
            return Encoder(export).encode(response)
        except BaseException as cause:
            # The client never learns of the references this answer made: they would only take room.
            self.table.release(ctx.session, made)
            reason = SpliceError.wrap(cause, Code.INTERNAL)
            raise SpliceError(
                reason.code, f"the result cannot be sent: {reason.message}", reason.details
            ) from cause


def label_of(value: object) -> str:
    """A reference's label: the name of a function, class or module, else the object's type name."""
    name = None
    if isinstance(value, _NAMED) or callable(value):
        try:
            name = getattr(value, "__name__", None)
        except Exception:  # noqa: BLE001 - a label is for messages only
            name = None
    return name if isinstance(name, str) and name else type(value).__name__


def _without_server_frames(error: BaseException) -> BaseException:
    """The error with the server's own frames cut from the front of its traceback, so that the
    stack a client sees starts in the module."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return error.with_traceback(tb)
