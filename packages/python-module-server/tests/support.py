"""Test support: module-servers in this process (a thread of their own running an event loop) or as
child processes (``python -m splice_module_server``), and a gRPC client speaking the contract."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc

from splice_module_server.codec import decode, encode
from splice_module_server.protobuf import encode_payload, read_fields, varint
from splice_module_server.server import ModuleServer, ModuleServerOptions, create_module_server

from .invoker import FIXTURES, call, get

__all__ = ["FIXTURES", "SECRET", "Client", "call", "child_server", "get", "server_environment", "serving"]

SRC = Path(__file__).resolve().parents[1] / "src"
SECRET = "python-module-server-test-secret"


@contextmanager
def serving(module: str = "calc", **overrides: Any) -> Iterator[ModuleServer]:
    """A module-server in this process, on 127.0.0.1 and a free port, closed at the end."""
    options = replace(ModuleServerOptions(module, SECRET, resolve_from=str(FIXTURES)), **overrides)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        server = asyncio.run_coroutine_threadsafe(create_module_server(options), loop).result(30)
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.close(200), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class Client:
    """A gRPC client of one module-server: Invoke and Stats with the credential, and health."""

    def __init__(self, port: int, secret: str | None = SECRET) -> None:
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{port}",
            options=[
                ("grpc.max_receive_message_length", 64 << 20),
                ("grpc.max_send_message_length", 64 << 20),
            ],
        )
        self.metadata = (("authorization", f"Bearer {secret}"),) if secret else ()
        self._invoke = self.channel.unary_unary(
            "/splice.v1.ModuleService/Invoke",
            request_serializer=encode_payload,
            response_deserializer=lambda data: bytes(read_fields(data).get(1, b"")),
        )
        self._stats = self.channel.unary_unary(
            "/splice.v1.ModuleService/Stats", request_serializer=bytes, response_deserializer=read_fields
        )
        self._check = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=lambda s: (b"\x0a" + varint(len(s.encode())) + s.encode()) if s else b"",
            response_deserializer=lambda data: read_fields(data).get(1, 0),
        )
        self._watch = self.channel.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=lambda s: (b"\x0a" + varint(len(s.encode())) + s.encode()) if s else b"",
            response_deserializer=lambda data: read_fields(data).get(1, 0),
        )

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def invoke_raw(self, payload: bytes, timeout: float = 10.0) -> tuple[bytes, dict[str, str]]:
        """The response payload and the trailers."""
        response, call = self._invoke.with_call(payload, timeout=timeout, metadata=self.metadata)
        return response, dict(call.trailing_metadata() or ())

    def invoke(self, ops: list[dict[str, Any]], session: str = "s", timeout: float = 10.0) -> dict[str, Any]:
        """The decoded response of a program."""
        payload, _ = self.invoke_raw(encode({"v": 1, "session": session, "ops": ops}), timeout)
        return decode(payload)

    def stats(self) -> dict[int, Any]:
        return self._stats(b"", timeout=5, metadata=self.metadata)

    def check(self, service: str = "", timeout: float = 5.0) -> int:
        return self._check(service, timeout=timeout)

    def watch(self, service: str = "") -> Any:
        return self._watch(service)


def server_environment(**variables: str) -> dict[str, str]:
    """The environment of a child server: this one's, the source first on PYTHONPATH, and
    ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPLICE_", "MODULE_", "NODE_CHANNEL"))}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update({"HOST": "127.0.0.1", "PORT": "0", "MODULE_RESOLVE_FROM": str(FIXTURES)})
    env.update(variables)
    return env


@contextmanager
def child_server(
    env: dict[str, str], pass_fds: tuple[int, ...] = (), wait: bool = True
) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any] | None]]:
    """``python -m splice_module_server`` with ``env``; with ``wait``, the parsed "listening" log line
    (None if it exited first). Killed at the end if still running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "splice_module_server"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        pass_fds=pass_fds,
    )
    try:
        yield process, (listening_line(process) if wait else None)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


def listening_line(process: subprocess.Popen[str], timeout: float = 30.0) -> dict[str, Any] | None:
    """Reads the child's stdout until its "listening" JSON line; None if the stream ends first."""
    found: Future[dict[str, Any] | None] = Future()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if '"msg":"listening"' in line:
                found.set_result(json.loads(line))
                return
        found.set_result(None)

    threading.Thread(target=read, daemon=True).start()
    return found.result(timeout)
