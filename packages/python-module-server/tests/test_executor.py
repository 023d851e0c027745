"""Running programs (proto/INVOKE.md 3.2, 4, 6): operations, targets, slots, references, keyword
arguments, the answer, errors as answers, and references released when an answer cannot be sent."""

from __future__ import annotations

import pytest

from splice_module_server.errors import Code, SpliceError
from splice_module_server.values import Kwargs, RemoteError, RemoteRef, Slot

from .invoker import Invoker, call, get


@pytest.fixture
def calc() -> Invoker:
    return Invoker()


def refused(invoker: Invoker, *ops: dict, code: Code) -> str:
    with pytest.raises(SpliceError) as caught:
        invoker.run(*ops)
    assert caught.value.code == code
    return caught.value.message


def test_get_reads_attributes_along_the_path(calc: Invoker) -> None:
    assert calc.value(get(["constants"])) == {"pi": 3.141592653589793, "e": 2.718281828459045}
    assert calc.value(get(["version"])) == "1.0.0"
    assert calc.value(get(["Matrix", "size"])).kind == "function"


def test_call_passes_arguments_and_answers_by_value(calc: Invoker) -> None:
    assert calc.value(call(["add"], 1, 2)) == 3
    assert calc.run(call(["add"], 1, 2)) == {"v": 1, "ok": True, "value": 3, "lease": 60000}


def test_new_calls_the_class_and_objects_come_back_as_references(calc: Invoker) -> None:
    ref = calc.value({"op": "new", "target": None, "path": ["Matrix"], "args": [[[1, 2], [3, 4]]]})
    assert ref == RemoteRef("srv", ref.id, "object", "Matrix")
    assert calc.value(call(["size"], target=ref)) == [2, 2]
    assert calc.value(call(["__getitem__"], 1, target=ref)) == [3, 4]


def test_a_method_is_bound_to_the_object_it_was_read_from(calc: Invoker) -> None:
    counter = calc.value(call(["make_counter"]))
    assert calc.value(call(["increment"], target=counter)) == 1
    increment = calc.value(get(["increment"], target=counter))
    assert increment.kind == "function"
    assert calc.value(call([], Kwargs({"by": 5}), target=increment)) == 6
    assert calc.value(get(["count"], target=counter)) == 6


def test_slots_pipeline_results_into_later_operations(calc: Invoker) -> None:
    answer = calc.value(
        call(["Matrix"], [[1, 2], [3, 4]]),
        call(["scale"], 10, target=Slot(0)),
        call(["add"], Slot(0), Slot(1)),
        call(["size"], target=Slot(2)),
    )
    assert answer == [2, 2]
    assert calc.table.stats() == (1, 0), "intermediate results make no references"


def test_references_and_slots_are_bound_inside_arguments(calc: Invoker) -> None:
    ref = calc.value(call(["Matrix"], [[1]]))
    echoed = calc.value(call(["echo_kw"], [ref, {"m": ref}], Kwargs({"k": ref})))
    assert [type(x) for x in echoed["args"][0]] == [RemoteRef, dict]
    assert type(echoed["kwargs"]["k"]) is RemoteRef
    assert calc.value(get(["add"]), call(["apply"], Slot(0), 2, 3)) == 5
    assert calc.value(call(["Matrix"], [[2]]), call(["echo"], {1: Slot(0)}))[1].label == "Matrix"


def test_keyword_arguments_become_python_keyword_arguments(calc: Invoker) -> None:
    assert calc.value(call(["echo_kw"], 1, Kwargs({"a": 2, "b": [3]}))) == {
        "args": [1],
        "kwargs": {"a": 2, "b": [3]},
    }


def test_a_coroutine_is_run_to_its_end(calc: Invoker) -> None:
    assert calc.value(call(["delayed"], "later", 5)) == "later"


def test_the_answer_is_the_last_get_call_or_new_and_releases_do_not_change_it(calc: Invoker) -> None:
    ref = calc.value(call(["Matrix"], [[1]]))
    assert calc.value(call(["add"], 1, 1), {"op": "release", "ids": [ref.id]}) == 2
    assert calc.table.stats() == (1, 0)
    response = calc.run({"op": "release", "ids": [ref.id]})
    assert response == {"v": 1, "ok": True, "value": None, "lease": 60000}
    assert calc.run() == response


def test_what_the_module_raises_is_an_answer(calc: Invoker) -> None:
    error = calc.error(call(["fail"], "no"))
    assert isinstance(error, RemoteError) and (error.name, error.message) == ("ValueError", "no")
    assert calc.threw
    assert (
        error.stack.startswith("Traceback") and "calc.py" in error.stack and "executor.py" not in error.stack
    )
    assert calc.error(get(["missing"])).name == "AttributeError"
    assert calc.error(call(["version"])).name == "TypeError"
    assert calc.error(call(["add"], 1)).name == "TypeError"


def test_operations_before_a_failure_have_run(calc: Invoker) -> None:
    counter = calc.value(call(["make_counter"]))
    calc.error(call(["increment"], target=counter), call(["fail"]))
    assert calc.value(get(["count"], target=counter)) == 1


def test_references_of_another_server_or_released_ones_are_not_found(calc: Invoker) -> None:
    message = refused(
        calc, call(["size"], target=RemoteRef("old", 1, "object", "Matrix")), code=Code.NOT_FOUND
    )
    assert "belongs to module-server old, not to this one (srv)" in message
    refused(calc, call(["size"], target=RemoteRef("srv", 999, "object", "Matrix")), code=Code.NOT_FOUND)
    ref = calc.value(call(["Matrix"], [[1]]))
    with pytest.raises(SpliceError):
        calc.run(call(["size"], target=ref), session="other")


def test_a_slot_inside_arguments_must_name_an_earlier_operation(calc: Invoker) -> None:
    message = refused(calc, call(["echo"], Slot(0)), code=Code.INVALID_ARGUMENT)
    assert message == "slot 0 is not the index of an earlier operation"


def test_an_answer_refused_for_a_limit_releases_the_references_it_made() -> None:
    calc = Invoker(max_objects_per_session=2)
    message = refused(
        calc,
        call(["echo"], []),
        call(["Matrix"], [[1]]),
        call(["Matrix"], [[2]]),
        call(["echo"], [Slot(1), Slot(2), Slot(1)]),
        code=Code.RESOURCE_EXHAUSTED,
    )
    assert message.startswith("the result cannot be sent: session holds 2 remote references already")
    assert calc.table.stats() == (1, 0)


def test_a_cyclic_answer_is_refused_and_its_references_released(calc: Invoker) -> None:
    message = refused(calc, call(["cyclic"]), code=Code.INVALID_ARGUMENT)
    assert message == "the result cannot be sent: cannot send a cyclic value by value"
    assert calc.table.stats() == (1, 0)
