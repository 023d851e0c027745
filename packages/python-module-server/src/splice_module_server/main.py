"""Entry point of a module-server process (``python -m splice_module_server``), configured by the
environment (environment.py), as the pod-manager starts it.

It prints one JSON log line ``{"msg":"listening","port":N,"serverId":...}`` when it takes calls and,
when started by a Node parent with an IPC channel, sends ``{type: 'listening', port, serverId}`` (or
``{type: 'failed', message}``) to it; it stops on SIGTERM or SIGINT, and when the channel closes.
With SPLICE_ISOLATE=1 it restricts its own file system access before it imports anything more.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import TYPE_CHECKING

from .environment import ConfigurationError, ServerEnvironment, parse_environment
from .isolation import IsolationError, isolate
from .log import JsonLog
from .parent_channel import ParentChannel

if TYPE_CHECKING:
    from .server import ModuleServerOptions


def main() -> None:
    """Runs the server until it is told to stop; exits 0 after a clean stop, 1 when it cannot start."""
    log = JsonLog(module=os.environ.get("MODULE_NAME"))
    code = 1
    try:
        channel = ParentChannel.from_environment(os.environ)
    except ConfigurationError as error:
        _refuse(log, str(error))
    else:
        code = asyncio.run(_run(log, channel))
    # A worker thread still inside module code cannot be joined: leave without waiting for it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _run(log: JsonLog, channel: ParentChannel | None) -> int:
    if channel is not None:
        await channel.open()
    try:
        env = parse_environment(os.environ)
        # Nothing the module could read later: the secret is in `env` only.
        os.environ.pop("SPLICE_SERVER_SECRET", None)
        if env.isolate:
            report = isolate(env.resolve_from, env.isolate_read)
            log.info("isolated", landlockAbi=report.abi, readable=report.readable, writable=report.writable)
        secret = env.secret or await _secret_from_parent(channel)
        # Imported here, after isolation: grpc and the module are read under its rules.
        from .server import create_module_server  # noqa: PLC0415

        server = await create_module_server(_options(env, secret))
    except (ConfigurationError, IsolationError) as error:
        await _refuse_async(log, channel, str(error))
        return 1
    except BaseException as error:  # noqa: BLE001 - a module that fails to import is a start failure
        await _refuse_async(log, channel, f"{type(error).__name__}: {error}")
        return 1
    # Watched before the parent hears that this server listens: a parent that stops it at once
    # (SIGTERM right after 'listening') must find the handlers in place, not the default action.
    stop = _stop_requested(channel)
    log.info("listening", port=server.port, serverId=server.server_id)
    if channel is not None:
        await channel.send({"type": "listening", "port": server.port, "serverId": server.server_id})
    reason = await stop
    log.info("stopping", reason=reason)
    await server.close(env.grace_ms)
    if channel is not None:
        channel.close()
    return 0


async def _secret_from_parent(channel: ParentChannel | None) -> str:
    if channel is None:
        raise ConfigurationError("SPLICE_SECRET_FROM_PARENT=1 needs an IPC channel (NODE_CHANNEL_FD)")
    secret = await channel.request_secret()
    if len(secret) < 16:
        raise ConfigurationError("the secret from the parent must be at least 16 characters")
    return secret


def _options(env: ServerEnvironment, secret: str) -> ModuleServerOptions:
    from .object_table import ObjectTableOptions  # noqa: PLC0415 - see _run
    from .server import ModuleServerOptions  # noqa: PLC0415

    return ModuleServerOptions(
        module_name=env.module_name,
        secret=secret,
        resolve_from=env.resolve_from,
        host=env.host,
        port=env.port,
        max_message_bytes=env.max_message_bytes,
        server_id=env.server_id,
        workers=env.workers,
        limits=ObjectTableOptions(
            lease_ms=env.lease_ms,
            max_objects_per_session=env.max_objects_per_session,
            max_objects=env.max_objects,
            max_sessions=env.max_sessions,
        ),
    )


def _stop_requested(channel: ParentChannel | None) -> asyncio.Future[str]:
    """Resolves with which came first: SIGTERM, SIGINT or the parent's going away."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[str] = loop.create_future()

    def request(reason: str) -> None:
        if not stop.done():
            stop.set_result(reason)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request, sig.name)
    if channel is not None:
        # A parent that dies (even by SIGKILL) closes the channel: never outlive it as an orphan.
        watcher = loop.create_task(channel.closed.wait())
        watcher.add_done_callback(lambda _: request("parent went away"))
        # Held through the future (the loop keeps only weak references to tasks), ended with it.
        stop.add_done_callback(lambda _: watcher.cancel())
    return stop


def _refuse(log: JsonLog, message: str) -> None:
    log.fatal("module-server failed to start", err={"message": message})
    print(f"python module-server failed to start: {message}", file=sys.stderr)


async def _refuse_async(log: JsonLog, channel: ParentChannel | None, message: str) -> None:
    _refuse(log, message)
    if channel is not None:
        await channel.send({"type": "failed", "message": message})
