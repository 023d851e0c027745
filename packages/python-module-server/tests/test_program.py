"""The request checks of proto/INVOKE.md 3.4 and the placement of keyword arguments (7.21)."""

from __future__ import annotations

from typing import Any

import pytest

from splice_module_server.codec import Decoder, encode
from splice_module_server.errors import Code, SpliceError
from splice_module_server.program import parse_request
from splice_module_server.values import Kwargs, RemoteRef, Slot

from .tagged_json import load_vectors

REQUESTS = [v for v in load_vectors("programs") if v.get("kind") == "request"]
REF = RemoteRef("srv", 1, "object", "X")


def parse(value: Any) -> Any:
    decoder = Decoder()
    return parse_request(decoder.decode(encode(value)), decoder)


def refused(value: Any) -> str:
    with pytest.raises(SpliceError) as caught:
        parse(value)
    assert caught.value.code == Code.INVALID_ARGUMENT
    return caught.value.message


def program(*ops: dict[str, Any], session: str = "s") -> dict[str, Any]:
    return {"v": 1, "session": session, "ops": list(ops)}


def call(*args: Any, path: tuple[str, ...] = ("f",), target: Any = None, op: str = "call") -> dict[str, Any]:
    return {"op": op, "target": target, "path": list(path), "args": list(args)}


@pytest.mark.parametrize("vector", REQUESTS, ids=[v["name"] for v in REQUESTS])
def test_the_request_vectors_are_accepted_or_refused_as_they_say(vector: dict[str, Any]) -> None:
    decoder = Decoder()
    decoded = decoder.decode(bytes.fromhex(vector["hex"]))
    if "error" in vector:
        with pytest.raises(SpliceError) as caught:
            parse_request(decoded, decoder)
        assert caught.value.code == Code[vector["error"]]
    else:
        request = parse_request(decoded, decoder)
        assert len(request.ops) == len(decoded["ops"])


@pytest.mark.parametrize(
    "request_",
    [
        {"v": True, "session": "s", "ops": []},
        {"v": 2, "session": "s", "ops": []},
        {"v": 1.5, "session": "s", "ops": []},
        {"session": "s", "ops": []},
        program(session=""),
        program(session="s" * 129),
        program(session="😀" * 64 + "s"),
        {"v": 1, "session": "s", "ops": [{"op": "release", "ids": []}] * 1025},
        program({"op": "release", "ids": [True]}),
        program({"op": "release", "ids": [2**53]}),
        program({"op": "release"}),
        program({"op": "get", "path": []}),
        program({"op": "get", "target": Slot(0), "path": []}),
        program({"op": "get", "target": None, "path": ["a", 1]}),
        program({"op": "new", "target": None, "path": []}),
        program({"op": "call", "target": None, "path": [], "args": {}}),
        program("get"),
    ],
)
def test_refuses_requests_that_break_the_checks(request_: dict[str, Any]) -> None:
    assert refused(request_).startswith("invalid invocation: ")


def test_accepts_the_limits_themselves() -> None:
    assert parse(program(session="😀" * 64)).session == "😀" * 64
    assert (
        len(parse({"v": 1, "session": "s", "ops": [{"op": "release", "ids": [2**53 - 1]}] * 1024}).ops)
        == 1024
    )
    assert parse({"v": 1.0, "session": "s", "ops": [], "extra": 1}).ops == ()


def test_keyword_arguments_are_accepted_last_in_a_call_or_new_only() -> None:
    request = parse(program(call(1, Kwargs({"num": 5})), call(Kwargs({}), op="new")))
    assert request.ops[0].args == [1, Kwargs({"num": 5})]
    for misplaced in (
        program(call(Kwargs({"a": 1}), 2)),
        program(call([Kwargs({"a": 1})])),
        program(call({"k": Kwargs({})})),
        program(call(Kwargs({"inner": Kwargs({})}))),
        program({"op": "get", "target": None, "path": [], "args": [Kwargs({})]}),
        program({"op": "release", "ids": [], "why": Kwargs({})}),
    ):
        assert "keyword arguments" in refused(misplaced)


def test_says_when_arguments_hold_references_or_slots_to_bind() -> None:
    assert not parse(program(call(1, [2], target=REF))).binds_args
    assert parse(program(call(1, [REF]))).binds_args
    assert parse(program(call(), call(Kwargs({"x": Slot(0)})))).binds_args
