"""The module-server: one Python module served over gRPC as ``splice.v1.ModuleService`` (Invoke,
InvokeBatch, Stats) plus the standard health service, on grpc.aio. Failures of the module are answered as values;
failures of the invocation itself (malformed, refused, too large, too slow) as gRPC statuses.

Programs run off the event loop, in a bounded pool of worker threads: a call that blocks holds one
worker, never the loop, so health checks and other sessions' calls keep being answered. A call that
passes its deadline is answered DEADLINE_EXCEEDED at once, but its thread cannot be stopped: it holds
its worker until the module returns.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import secrets
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc

from .callbacks import CallbackHub, encode_callbacks_answer, parse_callbacks_request
from .codec import Decoder
from .errors import Code, SpliceError
from .executor import ExecutionContext, bind_value
from .guard import Guard
from .health import Health, ServingStatus
from .invocation import InvocationHandler, InvocationResult
from .module_loader import load_module
from .object_table import ObjectTable, ObjectTableOptions
from .protobuf import (
    decode_batch_request,
    decode_payload,
    encode_batch_answer,
    encode_payload,
    encode_stats,
)

MODULE_SERVICE_NAME = "splice.v1.ModuleService"
#: Trailer of an Invoke answer whose module raised, so the pod-manager can count outcomes unread.
OUTCOME_TRAILER = "splice-outcome"
#: Metadata carrying the credential, ``Bearer <secret>``.
CREDENTIAL_METADATA = "authorization"
UNAUTHENTICATED_MESSAGE = (
    "missing or wrong credential: only the pod-manager that started this module-server may call it"
)
MIN_SECRET_LENGTH = 16
#: Most programs one InvokeBatch may carry (proto/INVOKE.md, section 10).
MAX_BATCH_PROGRAMS = 1024


@dataclass(frozen=True)
class ModuleServerOptions:
    """What a server serves and how; the defaults are the contract's."""

    #: Import name of the module to serve.
    module_name: str
    #: The credential every Invoke and Stats call must carry, at least 16 characters.
    secret: str
    #: Folder put first on sys.path before the import.
    resolve_from: str | None = None
    host: str = "127.0.0.1"
    #: 0 picks a free port.
    port: int = 0
    #: Largest request or response message, in bytes.
    max_message_bytes: int = 16 * 1024 * 1024
    #: Longest an invocation may run, in ms, when the caller's deadline is later or absent.
    max_call_ms: int = 300_000
    #: Id carried by every reference this server makes; random when None.
    server_id: str | None = None
    #: Worker threads running programs.
    workers: int = 4
    limits: ObjectTableOptions = field(default_factory=ObjectTableOptions)


class _Counters:
    """Invocations running and answered, updated from worker threads."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.calls = 0
        self._lock = threading.Lock()

    def started(self) -> None:
        with self._lock:
            self.in_flight += 1

    def finished(self, _future: object = None) -> None:
        with self._lock:
            self.in_flight -= 1
            self.calls += 1


#: The msgpack bytes of the string "callbacks": only a payload holding them may be an exchange.
_CALLBACKS_OP = b"\xa9callbacks"


class ModuleServer:
    """A running module-server."""

    def __init__(self, options: ModuleServerOptions, root: object) -> None:
        self.options = options
        self.server_id = options.server_id or secrets.token_hex(6)
        self.table = ObjectTable(options.limits)
        self._guard = Guard(options.module_name)
        self._root = root
        self.callbacks = CallbackHub(
            server_id=self.server_id,
            # The handler is made after the hub (it takes it): looked up when a callback is called.
            encode_args=lambda session, args: self.handle.encode_callback_args(session, args),  # noqa: PLW0108
            bind=lambda session, value: bind_value(
                value,
                ExecutionContext(root, self.table, self.server_id, session, self._guard, self.callbacks),
            ),
        )
        self.handle = InvocationHandler(root, self.table, self.server_id, self._guard, self.callbacks)
        #: What ``import { name }`` may link: listed at the first Stats, off the event loop (reading
        #: every public name of a large package may import its lazy submodules), then kept.
        self._exports: asyncio.Future[list[str]] | None = None
        self.health = Health(["", MODULE_SERVICE_NAME])
        self.counters = _Counters()
        self.port = 0
        self._expected = f"Bearer {options.secret}".encode()
        self._pool = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="splice-call")
        limit = options.max_message_bytes
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # One server per port: never share a port with another process that binds it too.
                ("grpc.so_reuseport", 0),
            ],
        )
        self._server.add_generic_rpc_handlers((self._module_service(), self.health.handler()))
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        host = self.options.host
        address = f"[{host}]:{self.options.port}" if ":" in host else f"{host}:{self.options.port}"
        self.port = self._server.add_insecure_port(address)
        self.callbacks.attach(asyncio.get_running_loop())
        await self._server.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        self.health.set_all(ServingStatus.SERVING)

    async def close(self, grace_ms: int = 5_000) -> None:
        """Stops taking calls, lets those in flight finish within ``grace_ms``, then stops."""
        self.health.set_all(ServingStatus.NOT_SERVING)
        self.health.end_watches()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.callbacks.close()
        await self._server.stop(grace_ms / 1000)
        # A worker still running module code cannot be stopped; the process exits without it.
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> ModuleServer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def _module_service(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            MODULE_SERVICE_NAME,
            {
                "Invoke": grpc.unary_unary_rpc_method_handler(
                    self._invoke, request_deserializer=decode_payload, response_serializer=encode_payload
                ),
                "InvokeBatch": grpc.unary_stream_rpc_method_handler(
                    self._invoke_batch, request_deserializer=decode_batch_request, response_serializer=bytes
                ),
                "Stats": grpc.unary_unary_rpc_method_handler(
                    self._stats, request_deserializer=bytes, response_serializer=bytes
                ),
            },
        )

    def _authorized(self, context: grpc.aio.ServicerContext) -> bool:
        given = ""
        for key, value in context.invocation_metadata() or ():
            if key == CREDENTIAL_METADATA and isinstance(value, str):
                given = value
                break
        return hmac.compare_digest(given.encode(), self._expected)

    def _budget(self, context: grpc.aio.ServicerContext) -> int:
        """The longest a program of this call may run, ms: the caller's deadline or max_call_ms."""
        remaining = context.time_remaining()
        budget = self.options.max_call_ms
        if remaining is not None:
            budget = max(0, min(budget, math.floor(remaining * 1000)))
        return budget

    async def _run(self, payload: memoryview, budget: int) -> InvocationResult:
        """Runs a program on a worker thread; raises TimeoutError past ``budget`` ms."""
        self.counters.started()
        deadline = time.monotonic() + budget / 1000
        work: Future[InvocationResult] = self._pool.submit(self.handle, payload, deadline)
        work.add_done_callback(self.counters.finished)
        return await asyncio.wait_for(asyncio.wrap_future(work), budget / 1000)

    async def _invoke(self, payload: memoryview, context: grpc.aio.ServicerContext) -> bytes:
        if not self._authorized(context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        budget = self._budget(context)
        # The app collecting callback requests (INVOKE.md 3.7): served here, on the loop, while
        # calls that wait for its answers block their worker threads. Looked for only in a payload
        # that holds the operation's name where a program starts (its first operation).
        if _CALLBACKS_OP in bytes(payload[:512]):
            exchange = await self._callbacks_exchange(payload, budget, context)
            if exchange is not None:
                return exchange
        try:
            result = await self._run(payload, budget)
        except asyncio.TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"invocation did not finish within {budget} ms"
            )
        except SpliceError as error:
            await context.abort(grpc.StatusCode[error.code.name], error.message)
        except Exception as error:  # noqa: BLE001 - any other failure of the invocation is INTERNAL
            await context.abort(grpc.StatusCode.INTERNAL, SpliceError.wrap(error).message)
        if result.threw:
            context.set_trailing_metadata(((OUTCOME_TRAILER, "remote-error"),))
        return result.payload

    async def _callbacks_exchange(
        self, payload: memoryview, budget: int, context: grpc.aio.ServicerContext
    ) -> bytes | None:
        """The answer of a ``callbacks`` program, or None for a program that only mentions the name."""
        try:
            decoded = Decoder().decode(payload)
            ops = decoded.get("ops") if type(decoded) is dict else None
            if not (type(ops) is list and ops and type(ops[0]) is dict and ops[0].get("op") == "callbacks"):
                return None
            session, op = parse_callbacks_request(decoded)
        except SpliceError as error:
            await context.abort(grpc.StatusCode[error.code.name], error.message)
        requests = await self.callbacks.exchange(session, op, budget)
        return encode_callbacks_answer(self.server_id, requests, self.callbacks.take_dropped(session))

    async def _invoke_batch(
        self, request: tuple[list[memoryview], list[int]], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """Every program runs on its own (one failing fails only its answer), under its own deadline;
        each answer is written as soon as it is ready, and the stream ends after the last."""
        if not self._authorized(context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        payloads, timeouts = request
        if len(payloads) > MAX_BATCH_PROGRAMS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a batch holds at most {MAX_BATCH_PROGRAMS} programs, this one {len(payloads)}",
            )
        budget = self._budget(context)

        async def answer(index: int, payload: memoryview) -> bytes:
            own = timeouts[index] if index < len(timeouts) and timeouts[index] > 0 else budget
            own = min(own, budget)
            try:
                result = await self._run(payload, own)
            except asyncio.TimeoutError:
                failure = SpliceError(Code.DEADLINE_EXCEEDED, f"invocation did not finish within {own} ms")
            except Exception as error:  # noqa: BLE001 - a failed program fails its own answer only
                failure = SpliceError.wrap(error)
            else:
                return encode_batch_answer(index, result.payload, result.threw, 0, "")
            status = grpc.StatusCode[failure.code.name].value[0]
            return encode_batch_answer(index, b"", False, status, failure.message)

        tasks = [asyncio.ensure_future(answer(i, p)) for i, p in enumerate(payloads)]
        try:
            for done in asyncio.as_completed(tasks):
                yield await done
        finally:
            for task in tasks:
                task.cancel()

    async def _stats(self, _request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if not self._authorized(context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        sessions, objects = self.table.stats()
        return encode_stats(
            self.server_id,
            sessions,
            objects,
            self.counters.in_flight,
            self.counters.calls,
            exports=await self.exports(),
        )

    def exports(self) -> asyncio.Future[list[str]]:
        """The module's export names (see :meth:`Guard.export_names`), listed once."""
        if self._exports is None:
            loop = asyncio.get_running_loop()
            self._exports = loop.run_in_executor(self._pool, self._guard.export_names, self._root)
        return self._exports

    async def _sweep(self) -> None:
        """Drops expired sessions every quarter lease (at least every 250 ms)."""
        interval = max(250, self.table.lease_ms // 4) / 1000
        while True:
            await asyncio.sleep(interval)
            self.table.sweep()


async def create_module_server(options: ModuleServerOptions) -> ModuleServer:
    """Loads the module, binds the port and starts serving; health says SERVING once it listens."""
    if len(options.secret) < MIN_SECRET_LENGTH:
        raise SpliceError(
            Code.INVALID_ARGUMENT,
            f"a module-server needs a secret of at least {MIN_SECRET_LENGTH} characters",
        )
    root = load_module(options.module_name, options.resolve_from)
    server = ModuleServer(options, root)
    await server.start()
    return server
