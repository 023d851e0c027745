"""A Python module-server's start-up environment, defined once: the variables whoever starts it sets
(the pod-manager, a container) and how the server reads them. The names and meanings are those of
the Node module-server (packages/module-server/src/environment.ts), plus three of Python's own.

| variable | meaning | default |
| --- | --- | --- |
| MODULE_NAME | import name of the module to serve (``numpy``, ``pandas``, ``pkg.sub``) | required |
| MODULE_RESOLVE_FROM | folder put first on ``sys.path`` (what ``pip install --target`` made) | none |
| HOST | address to bind | 127.0.0.1 |
| PORT | port to bind, 0 = any free port | 50051 |
| SPLICE_SERVER_SECRET | credential every Invoke and Stats must carry (16+ characters) | required, unless given over IPC |
| SPLICE_SECRET_FROM_PARENT | ``1``: the secret arrives over the parent's IPC channel, never in the environment | unset |
| SPLICE_MAX_MESSAGE_BYTES | largest payload either way | 16777216 |
| SPLICE_LEASE_MS | session lease | 60000 |
| SPLICE_GRACE_MS | how long in-flight calls may finish on SIGTERM | 5000 |
| SPLICE_SERVER_ID | id references carry (in a pod: the pod name) | random |
| SPLICE_MAX_OBJECTS_PER_SESSION | remote references one session may hold | 100000 |
| SPLICE_MAX_OBJECTS | remote references all sessions may hold | 250000 |
| SPLICE_MAX_SESSIONS | live client sessions | 10000 |
| SPLICE_PY_WORKERS | worker threads running programs (Python only) | 4 |
| SPLICE_ISOLATE | ``1``: restrict the server's file system access with Landlock before the module loads (Python only) | unset |
| SPLICE_ISOLATE_READ | extra readable paths under isolation, separated by ``os.pathsep`` (Python only) | none |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

#: Shortest secret a module-server accepts.
MIN_SECRET_LENGTH = 16


class ConfigurationError(ValueError):
    """A start-up variable is missing or malformed; the message names it."""


@dataclass(frozen=True)
class ServerEnvironment:
    """What a server is started with, validated."""

    module_name: str
    resolve_from: str | None
    host: str
    port: int
    #: None when it comes over IPC (``secret_from_parent``).
    secret: str | None
    secret_from_parent: bool
    max_message_bytes: int
    lease_ms: int
    grace_ms: int
    server_id: str | None
    max_objects_per_session: int
    max_objects: int
    max_sessions: int
    workers: int
    isolate: bool
    isolate_read: tuple[str, ...]


def parse_environment(env: Mapping[str, str]) -> ServerEnvironment:
    """Reads a server's environment; raises ConfigurationError naming the first bad variable."""
    module_name = env.get("MODULE_NAME", "")
    if not module_name:
        raise ConfigurationError("MODULE_NAME is not set: name the module this server should serve")
    secret_from_parent = env.get("SPLICE_SECRET_FROM_PARENT") == "1"
    secret = env.get("SPLICE_SERVER_SECRET") or None
    if secret is None and not secret_from_parent:
        raise ConfigurationError(
            "SPLICE_SERVER_SECRET is not set: give the server a secret of 16+ characters; only callers "
            "that send it (the pod-manager) may call the module"
        )
    if secret is not None and len(secret) < MIN_SECRET_LENGTH:
        raise ConfigurationError(f"SPLICE_SERVER_SECRET must be at least {MIN_SECRET_LENGTH} characters")
    resolve_from = env.get("MODULE_RESOLVE_FROM") or None
    if resolve_from is not None and not os.path.isdir(resolve_from):
        raise ConfigurationError(f"MODULE_RESOLVE_FROM must be a folder, got '{resolve_from}'")
    port = _int(env, "PORT", 50051)
    if port > 65535:
        raise ConfigurationError(f"PORT must be a port number (0 to 65535), got '{port}'")
    workers = _int(env, "SPLICE_PY_WORKERS", 4)
    if workers < 1:
        raise ConfigurationError(f"SPLICE_PY_WORKERS must be a positive integer, got '{workers}'")
    isolate = env.get("SPLICE_ISOLATE", "")
    if isolate not in ("", "0", "1"):
        raise ConfigurationError(f"SPLICE_ISOLATE must be '1', '0' or unset, got '{isolate}'")
    return ServerEnvironment(
        module_name=module_name,
        resolve_from=resolve_from,
        host=env.get("HOST") or "127.0.0.1",
        port=port,
        secret=secret,
        secret_from_parent=secret_from_parent,
        max_message_bytes=_int(env, "SPLICE_MAX_MESSAGE_BYTES", 16 * 1024 * 1024),
        lease_ms=_int(env, "SPLICE_LEASE_MS", 60_000),
        grace_ms=_int(env, "SPLICE_GRACE_MS", 5_000),
        server_id=env.get("SPLICE_SERVER_ID") or None,
        max_objects_per_session=_int(env, "SPLICE_MAX_OBJECTS_PER_SESSION", 100_000),
        max_objects=_int(env, "SPLICE_MAX_OBJECTS", 250_000),
        max_sessions=_int(env, "SPLICE_MAX_SESSIONS", 10_000),
        workers=workers,
        isolate=isolate == "1",
        isolate_read=tuple(p for p in env.get("SPLICE_ISOLATE_READ", "").split(os.pathsep) if p),
    )


def _int(env: Mapping[str, str], name: str, fallback: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return fallback
    if not raw.isascii() or not raw.isdigit():
        raise ConfigurationError(f"{name} must be a non-negative integer, got '{raw}'")
    return int(raw)
