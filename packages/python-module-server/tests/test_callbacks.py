"""Callbacks (proto/INVOKE.md 3.7) over real gRPC on loopback: a call blocks its worker thread in the
app's function while this test, as the app, collects the request with a ``callbacks`` program on the
same port and answers it; async functions, errors, release, close and the call's deadline."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from splice_module_server.callbacks import CallbackHub
from splice_module_server.codec import decode, encode
from splice_module_server.errors import Code, SpliceError
from splice_module_server.server import ModuleServer
from splice_module_server.values import CallbackRef, RemoteError

from .support import Client, call, serving


@pytest.fixture(scope="module")
def server() -> Iterator[ModuleServer]:
    with serving(workers=4, max_call_ms=2_000) as s:
        yield s


def exchange(client: Client, session: str, answers: list[dict[str, Any]] | None = None, **op: Any) -> Any:
    program = {"op": "callbacks", "answers": answers or [], "released": [], "wait": 5_000, **op}
    return client.invoke([program], session=session)


class App:
    """The app's part: runs its functions for the requests of one session, like the Node client."""

    def __init__(self, client: Client, session: str, functions: dict[str, Callable[..., Any]]) -> None:
        self.client = client
        self.session = session
        self.functions = functions
        self.served = 0

    def serve(self, done: Future[Any], answers: list[dict[str, Any]] | None = None) -> None:
        answers = answers or []
        while not done.done():
            response = exchange(self.client, self.session, answers, wait=200)
            assert response["ok"] is True
            answers = []
            for request in response["value"]["requests"]:
                fn = self.functions[request["callback"]]
                try:
                    outcome: dict[str, Any] = {"ok": True, "value": fn(*decode(request["args"]))}
                except Exception as error:
                    outcome = {"ok": False, "error": RemoteError(type(error).__name__, str(error))}
                answers.append({"request": request["request"], "answer": encode(outcome)})
                self.served += 1


def run_with_app(server: ModuleServer, session: str, functions: dict[str, Any], ops: list[Any]) -> Any:
    with Client(server.port) as caller, Client(server.port) as app_client:
        app = App(app_client, session, functions)
        with ThreadPoolExecutor(1) as pool:
            result = pool.submit(caller.invoke, ops, session)
            app.serve(result)
            return result.result(10), app


def test_a_module_calls_the_apps_function_synchronously(server: ModuleServer) -> None:
    answer, app = run_with_app(
        server,
        "sync",
        {"double": lambda x: x * 2},
        [call(["map_with"], [1, 2, 3], CallbackRef("double", "d"))],
    )
    assert answer == {"v": 1, "ok": True, "value": [2, 4, 6], "lease": answer["lease"]}
    assert app.served == 3


def test_the_apps_error_is_raised_in_the_module(server: ModuleServer) -> None:
    def refuse(_x: object) -> None:
        raise ValueError("not this one")

    answer, _ = run_with_app(
        server, "errors", {"no": refuse}, [call(["try_call"], CallbackRef("no", "no"), 1)]
    )
    assert answer["value"] == {"ok": False, "type": "RemoteError", "message": "not this one"}


def test_an_async_function_of_the_app_gives_its_settled_value(server: ModuleServer) -> None:
    with Client(server.port) as caller, Client(server.port) as app, ThreadPoolExecutor(1) as pool:
        result = pool.submit(caller.invoke, [call(["map_with"], [5], CallbackRef("later", "l"))], "async")
        request = exchange(app, "async")["value"]["requests"][0]
        pending = {"request": request["request"], "answer": encode({"pending": True})}
        assert exchange(app, "async", [pending], wait=0)["value"]["requests"] == []
        settled = encode({"ok": True, "value": "five", "settled": True})
        exchange(app, "async", [{"request": request["request"], "answer": settled}], wait=0)
        assert result.result(10)["value"] == ["five"]


def test_a_released_callback_and_a_closed_session_fail_at_once(server: ModuleServer) -> None:
    ref = CallbackRef("once", "once")
    with Client(server.port) as caller, Client(server.port) as app:
        with ThreadPoolExecutor(1) as pool:
            result = pool.submit(caller.invoke, [call(["map_with"], [1, 2], ref)], "release")
            request = exchange(app, "release")["value"]["requests"][0]
            # answered, and released in the same exchange: the module's second call fails at once
            answer = {"request": request["request"], "answer": encode({"ok": True, "value": 1})}
            exchange(app, "release", [answer], released=["once"], wait=0)
            failed = result.result(5)
            assert failed["ok"] is False
            assert (
                failed["error"].message == "callback once was released by the app and can no longer be called"
            )
        exchange(app, "closed", close=True, wait=0)
        with pytest.raises(grpc.RpcError) as caught:
            caller.invoke([call(["try_call"], ref, 1)], "closed")
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "session has ended" in caught.value.details()


def test_a_callback_waits_no_longer_than_its_call(server: ModuleServer) -> None:
    # No app collects the request: the call's budget (the server's max_call_ms, 2 s) ends the wait.
    with Client(server.port) as c:
        answer = c.invoke([call(["try_call"], CallbackRef("nobody", "n"), 1)], "deadline", timeout=5.0)
        assert answer["value"]["type"] == "TimeoutError"
        message = answer["value"]["message"]
        assert re.fullmatch(r"callback n was not answered by the app within (\d+) ms", message)
        assert 1_500 <= int(message.split()[-2]) <= 2_100
        assert c.invoke([call(["add"], 1, 2)], "deadline")["value"] == 3


def test_a_cancelled_exchange_fails_what_waits_for_the_app(server: ModuleServer) -> None:
    with Client(server.port) as caller, Client(server.port) as app, ThreadPoolExecutor(1) as pool:
        result = pool.submit(caller.invoke, [call(["try_call"], CallbackRef("f", "f"), 1)], "cancel")
        exchange(app, "cancel")  # collects the request; the app then waits for more
        waiting = app._invoke.future(
            encode({"v": 1, "session": "cancel", "ops": [{"op": "callbacks", "wait": 5_000}]}),
            timeout=10,
            metadata=app.metadata,
        )
        threading.Event().wait(0.3)
        waiting.cancel()
        answer = result.result(5)
        assert answer["value"] == {
            "ok": False,
            "type": "RuntimeError",
            "message": "callback f: the app went away (its connection for callbacks closed)",
        }


def test_the_callbacks_program_is_checked(server: ModuleServer) -> None:
    with Client(server.port) as c:
        with pytest.raises(grpc.RpcError) as caught:
            c.invoke([{"op": "callbacks", "wait": 99_999}], "checked")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "wait must be an integer from 0 to 25000 ms" in caught.value.details()


def test_stubs_are_the_same_for_an_id_and_limited_per_session() -> None:
    hub = CallbackHub(server_id="s", encode_args=lambda _s, _a: b"", bind=lambda _s, v: v, max_per_session=2)
    first = hub.stub("a", CallbackRef("x", "x"))
    assert hub.stub("a", CallbackRef("x", "x")) is first
    second = hub.stub("a", CallbackRef("y", "y"))
    with pytest.raises(SpliceError) as caught:
        hub.stub("a", CallbackRef("z", "z"))
    assert caught.value.code == Code.RESOURCE_EXHAUSTED
    assert caught.value.message.startswith("this session has 2 live callbacks here")
    assert callable(hub.stub("b", CallbackRef("z", "z")))
    assert callable(second)


def test_stubs_module_code_lets_go_of_are_told_to_the_app_and_free_their_room(server: ModuleServer) -> None:
    told: list[dict[str, Any]] = []

    def app_exchange(app: Client, answers: list[dict[str, Any]] | None = None, **op: Any) -> Any:
        value = exchange(app, "dropping", answers, **op)["value"]
        told.extend(value.get("dropped", []))
        return value

    # map_with lets go of its callback once each call is done.
    with Client(server.port) as caller, Client(server.port) as app:
        for i in range(3):
            with ThreadPoolExecutor(1) as pool:
                result = pool.submit(
                    caller.invoke, [call(["map_with"], [1], CallbackRef(f"f{i}", "f"))], "dropping"
                )
                # A waiting exchange is also answered when stubs are dropped: ask again until the request comes.
                for _ in range(10):
                    requests = app_exchange(app)["requests"]
                    if requests:
                        break
                request = requests[0]
                answer = {"request": request["request"], "answer": encode({"ok": True, "value": i})}
                app_exchange(app, [answer], wait=0)
                assert result.result(5)["value"] == [i]
        app_exchange(app, wait=0)
        # Each stub was told once, bound once.
        assert sorted(told, key=lambda d: d["callback"]) == [
            {"callback": f"f{i}", "binds": 1} for i in range(3)
        ]


def test_a_freed_stub_frees_its_room_under_the_limit() -> None:
    hub = CallbackHub(server_id="s", encode_args=lambda _s, _a: b"", bind=lambda _s, v: v, max_per_session=1)
    hub.stub("a", CallbackRef("x", "x"))  # let go of at once
    kept = hub.stub("a", CallbackRef("y", "y"))
    with pytest.raises(SpliceError):
        hub.stub("a", CallbackRef("z", "z"))
    assert hub.take_dropped("a") == [{"callback": "x", "binds": 1}]
    assert callable(kept)
