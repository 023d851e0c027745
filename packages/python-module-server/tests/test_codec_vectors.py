"""Every golden vector of proto/vectors/, both ways: the bytes decode to the described value, a
canonical value encodes to the bytes exactly, and refused bytes are refused with INVALID_ARGUMENT."""

from __future__ import annotations

import pytest

from splice_module_server.codec import decode, encode
from splice_module_server.errors import Code, SpliceError

from .tagged_json import load_vectors, same, value_from_tagged

VECTORS = [(f"{file}: {v['name']}", v) for file in ("values", "programs") for v in load_vectors(file)]
READABLE = [(name, v) for name, v in VECTORS if "value" in v]
CANONICAL = [(name, v) for name, v in VECTORS if v.get("canonical")]
REFUSED = [(name, v) for name, v in VECTORS if v.get("error") and "value" not in v]


def ids(cases: list[tuple[str, dict]]) -> list[str]:
    return [name for name, _ in cases]


def test_the_vector_files_hold_every_kind_of_case() -> None:
    assert len(VECTORS) > 250
    assert len(CANONICAL) > 150
    assert len(REFUSED) > 50


@pytest.mark.parametrize(("name", "vector"), READABLE, ids=ids(READABLE))
def test_decodes_the_described_value(name: str, vector: dict) -> None:
    expected = value_from_tagged(vector["value"])
    actual = decode(bytes.fromhex(vector["hex"]))
    assert same(actual, expected), f"{name}: got {actual!r}"


@pytest.mark.parametrize(("name", "vector"), CANONICAL, ids=ids(CANONICAL))
def test_encodes_the_canonical_bytes(name: str, vector: dict) -> None:
    assert encode(value_from_tagged(vector["value"])).hex() == vector["hex"]


@pytest.mark.parametrize(("name", "vector"), REFUSED, ids=ids(REFUSED))
def test_refuses_what_the_contract_refuses(name: str, vector: dict) -> None:
    with pytest.raises(SpliceError) as caught:
        decode(bytes.fromhex(vector["hex"]))
    assert caught.value.code == Code[vector["error"]]
