"""The module-server over real gRPC on loopback: credential, health, outcomes and their trailer,
deadlines answered while health and other calls go on, worker threads, message sizes, Stats."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from splice_module_server.codec import decode, encode
from splice_module_server.server import ModuleServer
from splice_module_server.values import Slot

from .support import SECRET, Client, call, get, serving

UNAUTHENTICATED = (
    "missing or wrong credential: only the pod-manager that started this module-server may call it"
)


@pytest.fixture(scope="module")
def server() -> Iterator[ModuleServer]:
    with serving(workers=4, max_call_ms=400) as s:
        yield s


@pytest.fixture
def client(server: ModuleServer) -> Iterator[Client]:
    with Client(server.port) as c:
        yield c


def status_of(action: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        action()  # type: ignore[operator]
    return caught.value


@pytest.mark.parametrize("secret", [None, "wrong-secret-of-enough-length", SECRET + "x"])
def test_invoke_and_stats_need_the_credential(server: ModuleServer, secret: str | None) -> None:
    with Client(server.port, secret) as stranger:
        for action in (lambda: stranger.invoke([call(["add"], 1, 2)]), stranger.stats):
            error = status_of(action)
            assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED)
        assert stranger.check() == 1, "health needs no credential"


def test_health_knows_the_server_and_the_module_service(client: Client) -> None:
    assert client.check("") == 1
    assert client.check("splice.v1.ModuleService") == 1
    assert status_of(lambda: client.check("other")).code() == grpc.StatusCode.NOT_FOUND
    assert next(iter(client.watch("other"))) == 3


def test_watch_reports_not_serving_and_ends_when_the_server_stops() -> None:
    with serving() as server:
        c = Client(server.port)
        stream = c.watch("")
        statuses = [next(stream)]
        reader = ThreadPoolExecutor(1).submit(lambda: statuses.extend(stream))
        time.sleep(0.1)
    reader.result(5)
    c.close()
    assert statuses == [1, 2]


def test_a_module_error_is_an_answer_flagged_in_a_trailer(client: Client) -> None:
    payload, trailers = client.invoke_raw(encode({"v": 1, "session": "t", "ops": [call(["fail"])]}))
    assert trailers.get("splice-outcome") == "remote-error"
    assert decode(payload)["error"].name == "ValueError"
    _, trailers = client.invoke_raw(encode({"v": 1, "session": "t", "ops": [call(["add"], 1, 2)]}))
    assert "splice-outcome" not in trailers


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", grpc.StatusCode.INVALID_ARGUMENT),
        (b"\xc1", grpc.StatusCode.INVALID_ARGUMENT),
        (encode({"v": 2, "session": "s", "ops": []}), grpc.StatusCode.INVALID_ARGUMENT),
        (encode({"v": 1, "session": "s", "ops": [get(["os"])]}), grpc.StatusCode.PERMISSION_DENIED),
    ],
)
def test_failures_of_the_invocation_are_statuses(
    client: Client, payload: bytes, code: grpc.StatusCode
) -> None:
    assert status_of(lambda: client.invoke_raw(payload)).code() == code


def test_a_hung_call_hits_its_deadline_while_health_and_other_calls_answer(client: Client) -> None:
    with ThreadPoolExecutor(2) as pool:
        started = time.perf_counter()
        hung = pool.submit(lambda: status_of(lambda: client.invoke([call(["hang"], 2.0)], timeout=5)))
        time.sleep(0.05)
        assert client.check() == 1
        assert client.invoke([call(["add"], 2, 3)], session="other")["value"] == 5
        assert time.perf_counter() - started < 0.35, "answered while the hung call runs"
        error = hung.result(5)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error.details() == "invocation did not finish within 400 ms"


def test_the_caller_deadline_bounds_the_call(client: Client) -> None:
    error = status_of(lambda: client.invoke([call(["sleep"], 0.3)], timeout=0.1))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_programs_of_different_calls_run_in_parallel_worker_threads() -> None:
    with serving(workers=3) as server, Client(server.port) as client, ThreadPoolExecutor(3) as pool:
        started = time.perf_counter()
        results = list(pool.map(lambda i: client.invoke([call(["sleep"], 0.25)], session=f"p{i}"), range(3)))
        elapsed = time.perf_counter() - started
    assert [r["value"] for r in results] == [0.25] * 3
    assert elapsed < 0.6, f"three 0.25 s calls took {elapsed:.2f} s"


def test_a_single_worker_queues_calls_but_not_health() -> None:
    with serving(workers=1) as server, Client(server.port) as c, ThreadPoolExecutor(2) as pool:
        first = pool.submit(lambda: c.invoke([call(["sleep"], 0.3)]))
        time.sleep(0.05)
        started = time.perf_counter()
        assert c.check() == 1
        assert time.perf_counter() - started < 0.1
        second = c.invoke([call(["add"], 1, 1)])
        assert time.perf_counter() - started > 0.15, "the second call waited for the only worker"
        assert first.result()["value"] == 0.3 and second["value"] == 2


def test_messages_over_the_size_limit_are_refused() -> None:
    with serving(max_message_bytes=4096) as server, Client(server.port) as c:
        error = status_of(lambda: c.invoke([call(["echo"], "x" * 5000)]))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        error = status_of(
            lambda: c.invoke([call(["echo"], "y" * 3000), call(["__mul__"], 2, target=Slot(0))])
        )
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, "an answer over the limit"
        assert c.invoke([call(["echo"], "y" * 3000)])["value"] == "y" * 3000


def test_stats_count_sessions_objects_and_calls() -> None:
    with serving(server_id="srv-stats") as server, Client(server.port) as c:
        c.invoke([call(["make_counter"])], session="a")
        c.invoke([call(["make_counter"])], session="b")
        c.invoke([], session="c")
        stats = c.stats()
        assert bytes(stats[1]).decode() == "srv-stats"
        assert (stats[2], stats[3], stats.get(4, 0), stats[5]) == (3, 2, 0, 3)


def test_stats_list_the_names_a_caller_can_reach() -> None:
    from splice_module_server.protobuf import iter_fields

    with serving() as server, Client(server.port) as c:
        raw = c.channel.unary_unary(
            "/splice.v1.ModuleService/Stats", request_serializer=bytes, response_deserializer=bytes
        )(b"", timeout=5, metadata=c.metadata)
        names = [bytes(v).decode() for number, _wire, v in iter_fields(raw) if number == 6]
        assert names == sorted(names)
        assert "add" in names and "make_counter" in names
        assert "_exported" in names  # private, but in __all__
        assert "os" not in names and "system" not in names and "subprocess" not in names
        assert server.exports().result() == names


def test_leases_expire_and_free_their_objects() -> None:
    from splice_module_server.object_table import ObjectTableOptions

    with serving(limits=ObjectTableOptions(lease_ms=300)) as server, Client(server.port) as c:
        ref = c.invoke([call(["make_counter"])])["value"]
        assert c.invoke([call(["increment"], target=ref)])["value"] == 1
        deadline = time.monotonic() + 3
        while server.table.stats() != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.table.stats() == (0, 0)
        assert (
            status_of(lambda: c.invoke([call(["increment"], target=ref)])).code() == grpc.StatusCode.NOT_FOUND
        )


def test_serves_from_several_client_threads_at_once(client: Client) -> None:
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(20):
                assert client.invoke([call(["add"], i, j)], session=f"w{i}")["value"] == i + j
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
