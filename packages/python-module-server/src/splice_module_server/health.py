"""The standard gRPC health service (``grpc.health.v1.Health``: Check and Watch), served without a
credential so that probes work, with the hand-written messages of protobuf.py (no dependency on the
protobuf runtime or grpcio-health-checking). It knows two names: ``""`` (the server) and
``splice.v1.ModuleService``; Check of another answers NOT_FOUND, Watch of another SERVICE_UNKNOWN."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator

import grpc

from .protobuf import decode_service, encode_serving_status

HEALTH_SERVICE_NAME = "grpc.health.v1.Health"


class ServingStatus(enum.IntEnum):
    """``grpc.health.v1.HealthCheckResponse.ServingStatus``."""

    UNKNOWN = 0
    SERVING = 1
    NOT_SERVING = 2
    SERVICE_UNKNOWN = 3


class Health:
    """Serving statuses by service name, and the Watch streams to tell of changes. Used from the
    event loop only."""

    def __init__(self, services: list[str]) -> None:
        self._statuses = dict.fromkeys(services, ServingStatus.NOT_SERVING)
        self._watchers: set[tuple[str, asyncio.Queue[ServingStatus | None]]] = set()

    def set_all(self, status: ServingStatus) -> None:
        """Sets every service's status and tells their watchers."""
        for service in self._statuses:
            self._statuses[service] = status
        for service, queue in self._watchers:
            if service in self._statuses:
                queue.put_nowait(status)

    def end_watches(self) -> None:
        """Ends every Watch stream (at shutdown, so that the server can stop)."""
        for _, queue in self._watchers:
            queue.put_nowait(None)

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            HEALTH_SERVICE_NAME,
            {
                "Check": grpc.unary_unary_rpc_method_handler(
                    self._check,
                    request_deserializer=decode_service,
                    response_serializer=encode_serving_status,
                ),
                "Watch": grpc.unary_stream_rpc_method_handler(
                    self._watch,
                    request_deserializer=decode_service,
                    response_serializer=encode_serving_status,
                ),
            },
        )

    async def _check(self, service: str, context: grpc.aio.ServicerContext) -> int:
        status = self._statuses.get(service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service '{service}'")
        return int(status)

    async def _watch(self, service: str, context: grpc.aio.ServicerContext) -> AsyncIterator[int]:
        queue: asyncio.Queue[ServingStatus | None] = asyncio.Queue()
        watcher = (service, queue)
        self._watchers.add(watcher)
        try:
            yield int(self._statuses.get(service, ServingStatus.SERVICE_UNKNOWN))
            while (status := await queue.get()) is not None:
                yield int(status)
        finally:
            self._watchers.discard(watcher)
