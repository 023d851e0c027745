"""Benchmark of the Python module-server, to compare with the Node one (``pnpm bench`` runs it).

1. Sequential Invoke latency: a trivial call (``add(1, 2)`` of the test fixture) over loopback gRPC
   from a Python client to a server in its own process, one call at a time: p50, p90, p99.
2. The codec on a 1M-element float64 ndarray (8 MB): encode + decode in this process, as MB/s of
   array data.
3. The same array through a numpy server and back (``numpy.ascontiguousarray(a)``): MB/s of array
   data per round trip (8 MB each way).

Usage: python scripts/bench.py [--calls N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from splice_module_server.codec import decode, encode
from splice_module_server.protobuf import encode_payload, read_fields

HERE = Path(__file__).resolve().parent
SECRET = "python-module-server-bench-secret"


def start_server(module: str) -> tuple[subprocess.Popen[str], int]:
    env = {
        **os.environ,
        "MODULE_NAME": module,
        "MODULE_RESOLVE_FROM": str(HERE.parent / "tests" / "fixtures"),
        "SPLICE_SERVER_SECRET": SECRET,
        "HOST": "127.0.0.1",
        "PORT": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "splice_module_server"], env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    for line in process.stdout:
        if '"msg":"listening"' in line:
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, json.loads(line)["port"]
    raise RuntimeError("the server did not start")


def invoker(port: int) -> tuple[grpc.Channel, object]:
    channel = grpc.insecure_channel(
        f"127.0.0.1:{port}",
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
    )
    method = channel.unary_unary(
        "/splice.v1.ModuleService/Invoke",
        request_serializer=encode_payload,
        response_deserializer=lambda data: bytes(read_fields(data).get(1, b"")),
    )
    metadata = (("authorization", f"Bearer {SECRET}"),)
    return channel, lambda payload: method(payload, metadata=metadata, timeout=30)


def program(path: list[str], *args: object) -> bytes:
    return encode(
        {
            "v": 1,
            "session": "bench",
            "ops": [{"op": "call", "target": None, "path": path, "args": list(args)}],
        }
    )


def latency(calls: int) -> dict[str, float]:
    process, port = start_server("calc")
    try:
        channel, invoke = invoker(port)
        payload = program(["add"], 1, 2)
        for _ in range(200):
            invoke(payload)
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            decode(invoke(payload))
            samples.append((time.perf_counter() - start) * 1e6)
        channel.close()
    finally:
        process.terminate()
        process.wait(10)
    samples.sort()
    return {
        "calls": calls,
        "p50_us": samples[len(samples) // 2],
        "p90_us": samples[int(len(samples) * 0.9)],
        "p99_us": samples[int(len(samples) * 0.99)],
        "mean_us": statistics.fmean(samples),
    }


def codec_throughput(a: np.ndarray) -> dict[str, float]:
    times = []
    for _ in range(7):
        start = time.perf_counter()
        back = decode(encode(a))
        times.append(time.perf_counter() - start)
    assert np.array_equal(back, a)
    best = min(times)
    return {"bytes": a.nbytes, "encode_decode_ms": best * 1e3, "mb_per_s": a.nbytes / best / 1e6}


def served_throughput(a: np.ndarray) -> dict[str, float]:
    process, port = start_server("numpy")
    try:
        channel, invoke = invoker(port)
        payload = program(["ascontiguousarray"], a)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            back = decode(invoke(payload))["value"]
            times.append(time.perf_counter() - start)
        channel.close()
    finally:
        process.terminate()
        process.wait(10)
    assert np.array_equal(back, a)
    best = min(times)
    return {"round_trip_ms": best * 1e3, "mb_per_s": a.nbytes / best / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    calls = parser.parse_args().calls
    a = np.random.default_rng(0).random(1_000_000)
    results = {
        "invoke_latency": latency(calls),
        "ndarray_1m_float64_codec": codec_throughput(a),
        "ndarray_1m_float64_served": served_throughput(a),
    }
    for name, figures in results.items():
        shown = ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
        print(f"{name}: {shown}")


if __name__ == "__main__":
    main()
