"""numpy and pandas served over gRPC as the pod-manager serves them: arrays travel by value both
ways, keyword arguments reach Python, a DataFrame stays on the server as a reference and what is
asked of it comes back by value."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from splice_module_server.values import Kwargs, RemoteRef, Slot

from .support import Client, call, get, serving


@pytest.fixture(scope="module")
def numpy_client() -> Iterator[Client]:
    with serving("numpy") as server, Client(server.port) as c:
        yield c


@pytest.fixture(scope="module")
def pandas_client() -> Iterator[Client]:
    with serving("pandas") as server, Client(server.port) as c:
        yield c


def value(client: Client, *ops: dict) -> object:
    response = client.invoke(list(ops))
    assert response["ok"], response.get("error")
    return response["value"]


def test_linspace_with_keyword_arguments_is_an_ndarray(numpy_client: Client) -> None:
    a = value(numpy_client, call(["linspace"], 0, 1, Kwargs({"num": 5})))
    assert isinstance(a, np.ndarray) and a.dtype == np.float64 and a.tolist() == [0, 0.25, 0.5, 0.75, 1]


def test_an_ndarray_argument_arrives_as_an_ndarray(numpy_client: Client) -> None:
    m = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert value(numpy_client, call(["linalg", "det"], m)) == pytest.approx(-2.0)
    inverse = value(numpy_client, call(["linalg", "inv"], m))
    assert np.allclose(inverse @ m, np.eye(2))
    assert value(numpy_client, call(["sum"], np.arange(10, dtype="int16"), Kwargs({"dtype": "int64"}))) == 45


def test_a_big_array_travels_both_ways(numpy_client: Client) -> None:
    a = np.random.default_rng(7).random((500, 400))
    back = value(numpy_client, call(["ascontiguousarray"], a))
    assert np.array_equal(back, a)


def test_a_dataframe_stays_a_reference(pandas_client: Client) -> None:
    records = [{"k": "x", "a": 1.0, "b": 2}, {"k": "y", "a": 3.0, "b": 4}, {"k": "x", "a": 5.0, "b": 6}]
    frame = value(pandas_client, call(["DataFrame", "from_records"], records))
    assert isinstance(frame, RemoteRef) and frame.label == "DataFrame"
    assert value(pandas_client, call(["__getitem__"], "a", target=frame), call(["mean"], target=Slot(0))) == 3
    assert value(
        pandas_client,
        call(["groupby"], "k", target=frame),
        call(["mean"], target=Slot(0)),
        call(["to_dict"], target=Slot(1)),
    ) == {"a": {"x": 3, "y": 3}, "b": {"x": 4, "y": 4}}
    column = value(
        pandas_client, call(["__getitem__"], "b", target=frame), call(["to_numpy"], target=Slot(0))
    )
    assert isinstance(column, np.ndarray) and column.dtype == np.int64 and column.tolist() == [2, 4, 6]
    assert value(pandas_client, get(["shape"], target=frame)) == [3, 3]
    described = value(pandas_client, call(["__repr__"], target=frame))
    assert isinstance(described, str) and "k" in described


def test_a_column_is_set_with_setitem(pandas_client: Client) -> None:
    frame = value(pandas_client, call(["DataFrame"], {"a": [1, 2]}))
    value(pandas_client, call(["__setitem__"], "c", [10, 20], target=frame))
    assert value(pandas_client, call(["to_dict"], Kwargs({"orient": "list"}), target=frame)) == {
        "a": [1, 2],
        "c": [10, 20],
    }
