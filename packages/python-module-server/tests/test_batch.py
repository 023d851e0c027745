"""Auto-batching: the batch vectors of proto/vectors/batch.json (shared with the TypeScript codec),
and InvokeBatch over real gRPC on loopback: each program runs on its own, under its own deadline,
and its answer is streamed as soon as it is ready."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from splice_module_server.codec import decode, encode
from splice_module_server.protobuf import (
    decode_batch_request,
    encode_batch_answer,
    read_fields,
    varint,
)
from splice_module_server.server import MAX_BATCH_PROGRAMS, ModuleServer

from .support import SECRET, call, serving
from .tagged_json import load_vectors

VECTORS = load_vectors("batch")
REQUESTS = [v for v in VECTORS if v["kind"] == "request"]
ANSWERS = [v for v in VECTORS if v["kind"] == "answer"]


def names(vectors: list[dict]) -> list[str]:
    return [v["name"] for v in vectors]


@pytest.mark.parametrize("vector", REQUESTS, ids=names(REQUESTS))
def test_reads_the_batch_request_vectors(vector: dict) -> None:
    payloads, timeouts = decode_batch_request(bytes.fromhex(vector["hex"]))
    assert [bytes(p).hex() for p in payloads] == vector["fields"]["payloads"]
    assert timeouts == vector["fields"]["timeouts_ms"]


@pytest.mark.parametrize("vector", ANSWERS, ids=names(ANSWERS))
def test_writes_the_batch_answer_vectors_byte_for_byte(vector: dict) -> None:
    f = vector["fields"]
    encoded = encode_batch_answer(
        f["index"], bytes.fromhex(f["payload"]), f["threw"], f["status"], f["message"]
    )
    assert encoded.hex() == vector["hex"]


def batch_request(payloads: list[bytes], timeouts_ms: list[int] | None = None) -> bytes:
    """An InvokeBatchRequest (timeouts packed), as the pod-manager forwards it."""
    parts = [b"\x0a" + varint(len(p)) + p for p in payloads]
    if timeouts_ms:
        packed = b"".join(varint(t) for t in timeouts_ms)
        parts.append(b"\x12" + varint(len(packed)) + packed)
    return b"".join(parts)


def program(*ops: dict) -> bytes:
    return encode({"v": 1, "session": "batch", "ops": list(ops)})


@pytest.fixture(scope="module")
def server() -> Iterator[ModuleServer]:
    with serving(workers=4, max_call_ms=5_000) as s:
        yield s


@pytest.fixture
def batch(server: ModuleServer) -> Iterator[object]:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    method = channel.unary_stream(
        "/splice.v1.ModuleService/InvokeBatch", request_serializer=bytes, response_deserializer=read_fields
    )

    def send(request: bytes, timeout: float = 10) -> list[tuple[float, dict]]:
        started = time.perf_counter()
        stream = method(request, timeout=timeout, metadata=(("authorization", f"Bearer {SECRET}"),))
        return [(time.perf_counter() - started, fields) for fields in stream]

    yield send
    channel.close()


def test_runs_each_program_on_its_own_and_streams_answers_as_they_are_ready(batch) -> None:  # type: ignore[no-untyped-def]
    answers = batch(
        batch_request(
            [
                program(call(["sleep"], 0.4)),
                program(call(["add"], 1, 2)),
                program(call(["fail"])),
                b"\xc1",
                program(call(["hang"], 2.0)),
            ],
            [0, 0, 0, 0, 300],
        )
    )
    by_index = {int(fields.get(1, 0)): (at, fields) for at, fields in answers}
    assert sorted(by_index) == [0, 1, 2, 3, 4]
    at_add, add = by_index[1]
    assert decode(bytes(add[2]))["value"] == 3
    assert 3 not in add, "a value is no throw"
    _, failed = by_index[2]
    assert failed.get(3) == 1 and decode(bytes(failed[2]))["error"].name == "ValueError"
    _, malformed = by_index[3]
    assert malformed.get(4) == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    _, hung = by_index[4]
    assert hung.get(4) == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert bytes(hung[5]).decode() == "invocation did not finish within 300 ms"
    at_sleep, _ = by_index[0]
    # Streamed when ready: the quick answer arrived before the 0.4 s sleep's.
    order = [int(f.get(1, 0)) for _, f in answers]
    assert order.index(1) < order.index(0)
    assert at_add < at_sleep


def test_refuses_a_batch_of_too_many_programs(batch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as caught:
        batch(batch_request([program(call(["add"], 1, 1))] * (MAX_BATCH_PROGRAMS + 1)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 1024 programs" in (caught.value.details() or "")


def test_needs_the_credential(server: ModuleServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        method = channel.unary_stream("/splice.v1.ModuleService/InvokeBatch", request_serializer=bytes)
        with pytest.raises(grpc.RpcError) as caught:
            list(method(batch_request([program(call(["add"], 1, 1))]), timeout=5))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
