"""The IPC channel to a Node parent. Node's ``spawn(..., {stdio: [..., 'ipc']})`` gives the child a
socket whose descriptor is in ``NODE_CHANNEL_FD``; with Node's default 'json' serialization each
message is one JSON document followed by a newline, both ways.

The server uses it as the Node module-server uses ``process.send``: it asks for its secret
(``{"type":"secret-request"}`` answered by ``{"type":"secret","secret":"..."}``), says
``{"type":"listening","port":N,"serverId":"..."}`` or ``{"type":"failed","message":"..."}``, and stops
when the channel closes (the parent died).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import MutableMapping
from typing import Any

from .environment import ConfigurationError

#: How long a server started with SPLICE_SECRET_FROM_PARENT waits for its secret, in seconds.
SECRET_WAIT_S = 10.0


class ParentChannel:
    """The channel, once opened on the running event loop."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._secret: asyncio.Future[Any] | None = None
        #: Set when the parent closes its end.
        self.closed = asyncio.Event()

    @staticmethod
    def from_environment(env: MutableMapping[str, str]) -> ParentChannel | None:
        """The channel Node gave this process, or None. The variables are removed so that module
        code and the processes it starts do not inherit the channel."""
        fd = env.pop("NODE_CHANNEL_FD", None)
        mode = env.pop("NODE_CHANNEL_SERIALIZATION_MODE", "json")
        if fd is None:
            return None
        if mode != "json":
            raise ConfigurationError(
                f"NODE_CHANNEL_SERIALIZATION_MODE must be 'json' (Node's default), got '{mode}'"
            )
        if not fd.isdigit():
            raise ConfigurationError(f"NODE_CHANNEL_FD must be a file descriptor, got '{fd}'")
        sock = socket.socket(fileno=int(fd))
        sock.set_inheritable(False)
        return ParentChannel(sock)

    async def open(self) -> None:
        reader, self._writer = await asyncio.open_connection(sock=self._sock)
        self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))

    async def send(self, message: dict[str, Any]) -> None:
        """Sends one message; a parent that went away is not an error."""
        if self._writer is None or self._writer.is_closing():
            return
        self._writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()

    async def request_secret(self, timeout: float = SECRET_WAIT_S) -> str:
        """Asks the parent for the secret and waits for it (never through the environment, which
        other processes of the same user could read in /proc)."""
        self._secret = asyncio.get_running_loop().create_future()
        await self.send({"type": "secret-request"})
        try:
            secret = await asyncio.wait_for(asyncio.shield(self._secret), timeout)
        except asyncio.TimeoutError:
            raise ConfigurationError(f"no secret from the parent within {int(timeout * 1000)} ms") from None
        if not isinstance(secret, str):
            raise ConfigurationError("the parent sent a secret that is not a string")
        return secret

    def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._writer is not None:
            self._writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                waiting = self._secret is not None and not self._secret.done()
                if waiting and isinstance(message, dict) and message.get("type") == "secret":
                    self._secret.set_result(message.get("secret"))
        except ConnectionError:
            pass
        finally:
            self.closed.set()
            if self._secret is not None and not self._secret.done():
                self._secret.set_exception(ConfigurationError("the parent closed the IPC channel"))
