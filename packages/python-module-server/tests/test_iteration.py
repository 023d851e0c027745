"""Iteration (proto/INVOKE.md 3.5): pull takes the next items of an iterator or iterable, close ends
a generator early (its ``finally`` runs), errors after items come with the next pull."""

from __future__ import annotations

import pytest

from splice_module_server.errors import Code, SpliceError
from splice_module_server.values import RemoteRef, Slot

from .invoker import Invoker, call, get


@pytest.fixture
def calc() -> Invoker:
    invoker = Invoker()
    invoker.value(call(["reset_iteration"]))
    return invoker


def seen(calc: Invoker, what: str) -> int:
    return calc.value(get(["iteration"]))[what]


def pull(target, limit: int) -> dict:
    return {"op": "pull", "target": target, "max": limit}


def test_pull_reads_a_generator_in_windows_and_never_ahead_of_them(calc: Invoker) -> None:
    generator = calc.value(call(["count"], 10))
    assert calc.value(pull(generator, 4)) == {"items": [0, 1, 2, 3], "done": False}
    assert seen(calc, "produced") == 4
    assert calc.value(pull(generator, 100)) == {"items": [4, 5, 6, 7, 8, 9], "done": True}
    assert seen(calc, "closed") == 1


def test_pull_from_a_chain_makes_the_iterator_and_answers_it(calc: Invoker) -> None:
    first = calc.value(call(["count"], 5), pull(Slot(0), 2))
    assert first["items"] == [0, 1]
    assert isinstance(first["iterator"], RemoteRef)
    assert calc.value(pull(first["iterator"], 10)) == {"items": [2, 3, 4], "done": True}
    # an iterable that is not an iterator: its iterator is made and answered
    listed = calc.value(get(["constants"]), call(["values"], target=Slot(0)), pull(Slot(1), 1))
    assert listed["items"] == [3.141592653589793] and "iterator" in listed


def test_close_runs_the_generators_finally(calc: Invoker) -> None:
    generator = calc.value(call(["count"], 1000))
    calc.value(pull(generator, 3))
    calc.value({"op": "close", "target": generator})
    assert seen(calc, "closed") == 1
    assert calc.value(pull(generator, 3)) == {"items": [], "done": True}


def test_an_error_after_items_comes_with_the_next_pull(calc: Invoker) -> None:
    generator = calc.value(call(["fails_at"], 2))
    assert calc.value(pull(generator, 10)) == {"items": [0, 1], "done": False}
    answer = calc.run(pull(generator, 10))
    assert answer["ok"] is False
    assert "no item 2" in answer["error"].message


def test_refusals(calc: Invoker) -> None:
    with pytest.raises(SpliceError) as caught:
        calc.run(pull(None, 0))
    assert caught.value.code == Code.INVALID_ARGUMENT
    answer = calc.run(call(["agen"]), pull(Slot(0), 1))
    assert answer["ok"] is False and "async iterators" in answer["error"].message
    answer = calc.run(pull(None, 1))
    assert answer["ok"] is False


def test_a_pipe_passes_pushed_chunks_to_the_module_as_an_iterator(calc: Invoker) -> None:
    pipe = calc.value({"op": "pipe"})
    assert isinstance(pipe, RemoteRef)
    push = {"op": "push", "target": pipe, "items": [1, "two", [3]], "end": True}
    assert calc.value(push) == {"cancelled": False}
    assert calc.value(call(["collect"], pipe)) == [1, "two", [3]]


def test_a_pipe_fails_the_modules_read_with_the_clients_error(calc: Invoker) -> None:
    pipe = calc.value({"op": "pipe"})
    calc.value({"op": "push", "target": pipe, "items": [1], "end": False, "error": "disk went away"})
    answer = calc.run(call(["collect"], pipe))
    assert answer["ok"] is False
    assert "the client's stream failed: disk went away" in answer["error"].message


def test_a_closed_pipe_answers_pushes_cancelled_and_push_needs_a_pipe(calc: Invoker) -> None:
    pipe = calc.value({"op": "pipe"})
    calc.value({"op": "close", "target": pipe})
    assert calc.value({"op": "push", "target": pipe, "items": [1], "end": False}) == {"cancelled": True}
    generator = calc.value(call(["count"], 3))
    answer = calc.run({"op": "push", "target": generator, "items": [], "end": True})
    assert answer["ok"] is False and "pipe" in answer["error"].message
    with pytest.raises(SpliceError) as caught:
        calc.run({"op": "push", "target": pipe, "items": "x", "end": True})
    assert caught.value.code == Code.INVALID_ARGUMENT
