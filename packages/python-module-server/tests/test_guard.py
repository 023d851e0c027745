"""The guard (README, "Guard"): escapes out of the served package are refused with
PERMISSION_DENIED, whatever route they take; what a numpy or pandas user needs stays reachable."""

from __future__ import annotations

import types
import warnings
from typing import Any

import pytest

from splice_module_server.errors import Code, SpliceError
from splice_module_server.guard import SAFE_DUNDERS
from splice_module_server.values import (
    BigInt,
    DateValue,
    Kwargs,
    MapEntries,
    RegExp,
    RemoteError,
    RemoteRef,
    SetItems,
    Slot,
    TypedArray,
)

from .invoker import Invoker, call, get


@pytest.fixture(scope="module")
def calc() -> Invoker:
    return Invoker("calc")


@pytest.fixture(scope="module")
def numpy() -> Invoker:
    return Invoker("numpy")


@pytest.fixture(scope="module")
def pandas() -> Invoker:
    return Invoker("pandas")


def new(path: list[str], *args: Any) -> dict[str, Any]:
    return {"op": "new", "target": None, "path": path, "args": list(args)}


#: Each is a route out of the module to code, the file system or the process; all must be refused.
CALC_ESCAPES: list[tuple[str, list[dict[str, Any]]]] = [
    ("a function's class", [get(["add", "__class__"])]),
    ("a function's globals", [get(["add", "__globals__"])]),
    ("a class's subclasses", [call(["Matrix", "__subclasses__"])]),
    ("the module's builtins", [get(["__builtins__"])]),
    ("__import__ from the module", [call(["__import__"], "os")]),
    ("the module's __dict__", [get(["__dict__"])]),
    ("a function's code", [get(["add", "__code__"])]),
    ("__reduce__ of an object", [call(["make_counter"]), call(["__reduce__"], target=Slot(0))]),
    ("__reduce_ex__ of an object", [call(["make_counter"]), call(["__reduce_ex__"], 2, target=Slot(0))]),
    ("__getattribute__", [call(["Matrix", "__getattribute__"], "x")]),
    ("a class's mro", [call(["Matrix", "mro"])]),
    ("f_globals of a frame", [get(["leak_frame", "f_globals"])]),
    ("f_back of a frame", [get(["leak_frame", "f_back"])]),
    ("a generator's frame", [call(["numbers"]), get(["gi_frame"], target=Slot(0))]),
    ("a coroutine's frame", [get(["delayed", "cr_frame"])]),
    ("a traceback's frame", [get(["fail", "tb_frame"])]),
    ("func_globals", [get(["add", "func_globals"])]),
    ("a private name", [get(["_hidden"])]),
    ("a private name of an object", [call(["make_counter"]), get(["_Counter__x"], target=Slot(0))]),
    ("a module the module imported", [get(["os"])]),
    ("os.system through an import", [call(["os", "system"], "true")]),
    ("subprocess", [get(["subprocess", "run"])]),
    ("a module through a dict", [get(["stdlib"])]),
    ("a module through __getitem__", [get(["stdlib"]), call(["__getitem__"], "os", target=Slot(0))]),
    ("a re-exported os.system", [call(["shell"], "true")]),
    ("eval re-exported under another name", [get(["leaky_eval"])]),
    ("eval returned by a function", [call(["leak_eval"])]),
    ("open nested in a result", [call(["leak_in_list"])]),
    ("open passed on as an argument", [call(["leak_in_list"]), call(["apply"], Slot(0))]),
    ("a module returned by a function", [call(["leak_module"])]),
    ("a frame returned by a function", [call(["leak_frame"])]),
    ("threading", [get(["threading", "Thread"])]),
]

NUMPY_ESCAPES = [
    ("numpy.f2py.os.system", [call(["f2py", "os", "system"], "true")]),
    ("numpy.f2py.subprocess", [get(["f2py", "subprocess"])]),
    ("numpy.load.__globals__", [get(["load", "__globals__"])]),
    ("numpy.ma.extras.ma.builtins.eval", [call(["ma", "extras", "ma", "builtins", "eval"], "1")]),
    ("numpy.f2py.sys.modules", [get(["f2py", "sys", "modules"])]),
    ("numpy.ctypeslib.ctypes", [get(["ctypeslib", "ctypes", "CDLL"])]),
    ("numpy._core", [get(["_core", "multiarray"])]),
    ("a ufunc's __class__", [get(["add", "__class__", "__subclasses__"])]),
]

PANDAS_ESCAPES = [
    ("pandas.io.common.os", [call(["io", "common", "os", "system"], "true")]),
    ("pandas.io.parsers.readers.sys", [get(["io", "parsers", "readers", "sys", "modules"])]),
    ("pandas.core.generic.pickle.loads", [call(["core", "generic", "pickle", "loads"], b"")]),
    ("pandas.io.sql.com.builtins", [get(["io", "sql", "com", "builtins"])]),
    (
        "pandas.eval evaluates attribute chains",
        [call(["eval"], "a.__class__", Kwargs({"local_dict": {"a": 1}}))],
    ),
    (
        "DataFrame.query evaluates attribute chains",
        [call(["DataFrame"], {"a": [1]}), call(["query"], "a.__class__ == 1", target=Slot(0))],
    ),
    ("pandas.read_pickle unpickles what it reads", [call(["read_pickle"], "/dev/null")]),
]


def assert_refused(invoker: Invoker, ops: list[dict[str, Any]]) -> str:
    with pytest.raises(SpliceError) as caught:
        invoker.run(*ops)
    assert caught.value.code == Code.PERMISSION_DENIED, caught.value.message
    return caught.value.message


@pytest.mark.parametrize(("name", "ops"), CALC_ESCAPES, ids=[n for n, _ in CALC_ESCAPES])
def test_refuses_escapes_out_of_a_module(calc: Invoker, name: str, ops: list[dict[str, Any]]) -> None:
    assert_refused(calc, ops)
    assert calc.table.stats()[1] == 0, "a refused answer keeps no reference"


@pytest.mark.parametrize(("name", "ops"), NUMPY_ESCAPES, ids=[n for n, _ in NUMPY_ESCAPES])
def test_refuses_escapes_through_numpy(numpy: Invoker, name: str, ops: list[dict[str, Any]]) -> None:
    assert_refused(numpy, ops)


@pytest.mark.parametrize(("name", "ops"), PANDAS_ESCAPES, ids=[n for n, _ in PANDAS_ESCAPES])
def test_refuses_escapes_through_pandas(pandas: Invoker, name: str, ops: list[dict[str, Any]]) -> None:
    assert_refused(pandas, ops)


def test_the_messages_say_what_was_refused(calc: Invoker) -> None:
    assert assert_refused(calc, [get(["add", "__globals__"])]) == (
        "access to '__globals__' is not allowed (path add.__globals__): only what the module exports can be reached"
    )
    assert assert_refused(calc, [get(["os"])]) == (
        "os leads to the module 'os', outside 'calc', which invocations may not reach"
    )
    assert "the built-in 'eval'" in assert_refused(calc, [call(["leak_eval"])])


PUBLIC_ROUTES_OUT = (
    "os",
    "sys",
    "subprocess",
    "builtins",
    "importlib",
    "ctypes",
    "shutil",
    "socket",
    "pickle",
)


def routes_out(package: types.ModuleType, depth: int = 4) -> list[list[str]]:
    """Public attribute paths from a package, through its own modules, to a module outside it."""
    found, seen, stack = [], set(), [(package, [])]
    while stack:
        module, path = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        for name in dir(module):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # deprecated attributes warn when read
                value = getattr(module, name, None) if not name.startswith("_") else None
            if not isinstance(value, types.ModuleType):
                continue
            if value.__name__.split(".")[0] in PUBLIC_ROUTES_OUT:
                found.append([*path, name])
            elif value.__name__.startswith(package.__name__ + ".") and len(path) < depth:
                stack.append((value, [*path, name]))
    return found


@pytest.mark.parametrize("package", ["numpy", "pandas"])
def test_every_public_route_from_numpy_and_pandas_to_the_system_is_refused(
    package: str, request: Any
) -> None:
    invoker: Invoker = request.getfixturevalue(package)
    routes = routes_out(invoker.handler.root)  # type: ignore[arg-type]
    assert len(routes) > 10
    for route in routes:
        assert_refused(invoker, [get(route)])


def test_the_safe_dunders_work_as_operators_indexing_and_length(calc: Invoker) -> None:
    a = calc.value(call(["Matrix"], [[1, 2], [3, 4]]))
    b = calc.value(call(["__add__"], a, target=a))
    assert calc.value(call(["__getitem__"], 1, target=b)) == [6, 8]
    assert calc.value(call(["__len__"], target=b)) == 2
    assert calc.value(call(["__contains__"], 6, target=b)) is True
    assert {
        "__getitem__",
        "__add__",
        "__radd__",
        "__matmul__",
        "__rmatmul__",
        "__invert__",
        "__ge__",
    } <= SAFE_DUNDERS


def test_a_private_name_listed_in_all_is_reachable(calc: Invoker) -> None:
    assert calc.value(get(["_exported"])) == "private but listed in __all__"


def test_numpy_arithmetic_through_the_operator_dunders(numpy: Invoker) -> None:
    a = numpy.value(call(["array"], [[1.0, 2.0], [3.0, 4.0]]))
    assert a.shape == (2, 2)
    m = numpy.value(call(["array"], [[1, 2], [3, 4]], Kwargs({"dtype": "complex128"})))  # not by value
    assert isinstance(m, RemoteRef)
    assert numpy.value(
        call(["__matmul__"], [[1], [1]], target=m), get(["real"], target=Slot(0))
    ).tolist() == [
        [3],
        [7],
    ]
    assert numpy.value(call(["__rsub__"], 10, target=m), get(["real"], target=Slot(0))).tolist() == [
        [9, 8],
        [7, 6],
    ]
    assert isinstance(numpy.value(get(["__version__"])), str)


def test_the_codecs_own_values_may_be_handed_back(calc: Invoker) -> None:
    """Values that decode to the codec's types (its code lives in this server) are values, not
    doors: a module that returns what it was given returns them by value."""
    values = [
        BigInt(2**70),
        RegExp("a+", "gi"),
        MapEntries([([1], "unhashable key")]),
        SetItems([[1], [1]]),
        DateValue(float("nan")),
        RemoteError("TypeError", "from the client"),
    ]
    for value in values:
        back = calc.value(call(["echo"], value))
        assert type(back) is type(value)
        if not isinstance(value, (DateValue, RemoteError)):
            assert back == value
    assert calc.value(call(["echo"], [BigInt(5), {"k": RegExp("x")}])) == [5, {"k": RegExp("x")}]
    # One a module makes to send a typed array of a given type goes out as that typed array.
    assert calc.value(call(["echo"], TypedArray("Int16Array", b"\x01\x00"))).tolist() == [1]
