"""What an invocation may reach: what the served package defines or exports on purpose, and none of
Python's doors to the rest of the process (proto/INVOKE.md 3.3). The rule, in the README's words:

1. **Names.** A path segment that starts with ``_`` is refused, except the dunders of
   :data:`SAFE_DUNDERS` (indexing, length, membership, the operators, ``repr``/``str``,
   ``__version__``) and the private names a module lists in its ``__all__``. A few names without an
   underscore that lead to frames, globals or the class hierarchy are refused too
   (:data:`FORBIDDEN_NAMES`).
2. **Values**, checked for the base of every operation, every value met along a path, every result,
   every object an argument reference or slot stands for (looking into lists, tuples, dicts and
   sets), and every object an answer would make a reference to:

   - a module outside the served package's own tree (``numpy.f2py.os`` is ``os``);
   - a built-in that runs, loads or reflects code (:data:`FORBIDDEN_BUILTINS`: ``eval``, ``exec``,
     ``open``, ``getattr``...), by identity, wherever it turns up;
   - frames, code objects, tracebacks and cells;
   - a function, class or object whose code lives in a module of :data:`FORBIDDEN_MODULES` (``os``,
     ``subprocess``, ``pickle``, ``importlib``, this server itself...), however it was re-exported;
   - the few functions of numpy and pandas that evaluate strings with attribute access or unpickle
     what they read (:data:`FORBIDDEN_FUNCTIONS`), which would go around rule 1.

The guard is not a sandbox: module code runs in this process with its rights, and public functions of
a package can do what they do (write files, open URLs). The process boundary, the server's file
system isolation (isolation.py) and the deployment's network policy are the boundary.
"""

from __future__ import annotations

import builtins
import inspect
import sys
import types
import warnings
from typing import Any

from .errors import Code, SpliceError
from .pipe import Pipe
from .values import (
    BigInt,
    DateValue,
    Kwargs,
    MapEntries,
    NDArray,
    RegExp,
    RemoteError,
    SetItems,
    TypedArray,
    Undefined,
)

#: Dunders reachable as path segments: what a numpy or pandas user calls by name (indexing,
#: ``len``, ``in``, the operators, which a JavaScript client cannot spell), the text form of an
#: object, and a package's version. Each returns a value that is checked like any other.
SAFE_DUNDERS: frozenset[str] = frozenset(
    {
        "__getitem__",
        "__setitem__",
        "__delitem__",
        "__len__",
        "__contains__",
        "__repr__",
        "__str__",
        "__version__",
        *(
            f"__{prefix}{op}__"
            for op in (
                "add",
                "sub",
                "mul",
                "truediv",
                "floordiv",
                "mod",
                "pow",
                "matmul",
                "and",
                "or",
                "xor",
            )
            for prefix in ("", "r")
        ),
        "__neg__",
        "__pos__",
        "__abs__",
        "__invert__",
        "__eq__",
        "__ne__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
    }
)

#: Names without a leading underscore that lead to frames, code, globals or the class hierarchy.
FORBIDDEN_NAMES: frozenset[str] = frozenset(
    {
        "mro",
        *(f"f_{x}" for x in ("globals", "locals", "builtins", "back", "code", "trace")),
        *(f"{p}_{x}" for p in ("gi", "cr", "ag") for x in ("frame", "code", "await", "yieldfrom")),
        "cr_origin",
        "tb_frame",
        "tb_next",
        "func_globals",
        "func_code",
        "func_closure",
        "im_func",
        "im_self",
        "im_class",
        "cell_contents",
    }
)

#: Built-ins that compile, run, import or reflect code, or read the terminal or the file system.
FORBIDDEN_BUILTINS: tuple[object, ...] = tuple(
    getattr(builtins, name)
    for name in (
        "eval",
        "exec",
        "compile",
        "open",
        "__import__",
        "__build_class__",
        "getattr",
        "setattr",
        "delattr",
        "globals",
        "locals",
        "vars",
        "breakpoint",
        "input",
        "help",
        "exit",
        "quit",
    )
    if hasattr(builtins, name)
)
_FORBIDDEN_IDS = frozenset(id(x) for x in FORBIDDEN_BUILTINS)

#: Modules (and their submodules) whose functions, classes and objects no invocation may hold:
#: processes, files, sockets, code loading and reflection, serialisation that runs code, and the
#: server itself. (``builtins`` is not here: its dangerous functions are refused by identity, and
#: ``len`` or ``list`` are harmless; the ``builtins`` module itself is outside every package's tree.)
FORBIDDEN_MODULES: frozenset[str] = frozenset(
    {
        *("os", "posix", "nt", "posixpath", "ntpath", "genericpath", "sys", "_sitebuiltins"),
        *("subprocess", "_posixsubprocess", "multiprocessing", "concurrent", "asyncio", "signal"),
        *("_signal", "threading", "_thread", "pty", "tty", "termios", "fcntl", "resource", "pwd"),
        *("grp", "mmap", "select", "selectors", "socket", "_socket", "ssl", "_ssl", "socketserver"),
        *("http", "urllib", "ftplib", "smtplib", "poplib", "imaplib", "xmlrpc", "webbrowser"),
        *("io", "_io", "pathlib", "shutil", "tempfile", "glob", "fileinput", "linecache", "tokenize"),
        *("zipfile", "tarfile", "sqlite3", "_sqlite3", "dbm", "shelve", "logging"),
        *("pickle", "_pickle", "copyreg", "marshal", "importlib", "_imp", "imp", "zipimport"),
        *("pkgutil", "runpy", "site", "sysconfig", "platform", "ctypes", "_ctypes", "cffi"),
        *("code", "codeop", "pdb", "bdb", "trace", "profile", "cProfile", "timeit", "doctest"),
        *("pydoc", "inspect", "types", "typing", "gc", "atexit", "faulthandler", "operator"),
        *("_operator", "string", "unittest", "venv", "ensurepip", "distutils", "setuptools", "pip"),
        *("_winapi", "msvcrt", "winreg", "grpc", "splice_module_server"),
    }
)

#: Public functions of pandas that evaluate expression strings with attribute access and calls
#: (which would go around the name rule) or unpickle what they read, by the path they are known by.
#: They are refused by identity once their package is loaded, under whatever name they are reached.
FORBIDDEN_FUNCTIONS: tuple[str, ...] = (
    "pandas.eval",
    "pandas.DataFrame.eval",
    "pandas.DataFrame.query",
    "pandas.read_pickle",
)

_CODE_TYPES = (types.FrameType, types.CodeType, types.TracebackType, types.CellType)
_FUNCTION_TYPES = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
)
_SCALARS = frozenset({type(None), bool, int, float, str, bytes, complex})
#: The codec's own value types: what a decoded argument may be, so a module may hand them back,
#: although their code lives in this server (exact types: a subclass is the module's own).
_CODEC_VALUES = frozenset(
    {BigInt, Undefined, RegExp, TypedArray, NDArray, MapEntries, SetItems, DateValue, RemoteError}
)
#: This package's objects a caller may hold a reference to: a stream argument's pipe (its methods,
#: being this package's code, stay out of reach; only the pipe and push operations use them).
_HELD_OWN_OBJECTS = _CODEC_VALUES | {Pipe}
#: How deep :meth:`Guard.check_deep` looks into containers.
DEEP_LIMIT = 64


class Guard:
    """The rule for one served package: ``package`` is its top-level name (``numpy`` when serving
    ``numpy.linalg``), whose own tree of modules may be reached."""

    def __init__(self, package: str) -> None:
        self.package = package.split(".", 1)[0]

    def check_segment(self, owner: object, name: str, path: tuple[str, ...]) -> None:
        """Refuses a path segment by name (rule 1) before it is read from ``owner``."""
        if name in FORBIDDEN_NAMES:
            raise _denied_name(name, path)
        if name.startswith("_") and name not in SAFE_DUNDERS and not self._exported(owner, name):
            raise _denied_name(name, path)

    def check_value(self, value: object, path: tuple[str, ...]) -> None:
        """Refuses a value that is a door out of the package (rule 2)."""
        if type(value) in _SCALARS:
            return
        why = self.why_refused(value)
        if why is not None:
            raise SpliceError(
                Code.PERMISSION_DENIED,
                f"{format_path(path)} leads to {why}, which invocations may not reach",
            )

    def check_deep(self, value: object, path: tuple[str, ...]) -> None:
        """:meth:`check_value` on a value and everything inside its lists, tuples, dicts, sets and
        keyword arguments, down to :data:`DEEP_LIMIT` levels."""
        stack: list[tuple[object, int]] = [(value, 0)]
        seen: set[int] = set()
        while stack:
            item, depth = stack.pop()
            if type(item) in _SCALARS:
                continue
            self.check_value(item, path)
            children = _children(item)
            if children is None or depth >= DEEP_LIMIT or id(item) in seen:
                continue
            seen.add(id(item))
            stack.extend((child, depth + 1) for child in children if type(child) not in _SCALARS)

    def export_names(self, root: object) -> list[str]:
        """The names a caller can reach on ``root``, sorted: its public names and the private ones
        its ``__all__`` exports, without those this guard refuses, and only identifiers (what
        ``import { name }`` links in a JavaScript client)."""
        exported = vars(root).get("__all__") if isinstance(root, types.ModuleType) else None
        candidates = set(dir(root)) | set(exported if isinstance(exported, (list, tuple)) else ())
        names: set[str] = set()
        for name in candidates:
            if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
                continue
            if name.startswith("_") and not self._exported(root, name):
                continue
            try:
                self.check_segment(root, name, (name,))
                with warnings.catch_warnings():
                    # A deprecated alias warns when read: listing it is not using it.
                    warnings.simplefilter("ignore")
                    value = getattr(root, name)
                self.check_value(value, (name,))
            except Exception:  # noqa: BLE001 - refused, or an attribute that raises: not reachable
                continue
            names.add(name)
        return sorted(names)

    def why_refused(self, value: object) -> str | None:
        """What makes ``value`` unreachable, or None when it may be held."""
        if id(value) in _FORBIDDEN_IDS:
            return f"the built-in {getattr(value, '__name__', value)!r}"
        if isinstance(value, types.ModuleType):
            name = getattr(value, "__name__", "?")
            return None if self._in_tree(name) else f"the module {name!r}, outside {self.package!r}"
        if isinstance(value, _CODE_TYPES):
            return f"a {type(value).__name__} object"
        if isinstance(value, (type, *_FUNCTION_TYPES)):
            return self._why_code_refused(value)
        module = getattr(type(value), "__module__", None)
        if (
            isinstance(module, str)
            and self._forbidden_module(module)
            and type(value) not in _HELD_OWN_OBJECTS
        ):
            return f"an object of {module}.{type(value).__qualname__}"
        return None

    def _why_code_refused(self, value: Any) -> str | None:
        """A function, method or class: refused by the module its code lives in, its name, or (for
        a bound method) the object it is bound to."""
        function = getattr(value, "__func__", value)
        module = getattr(function, "__module__", None)
        qualname = getattr(function, "__qualname__", None)
        if isinstance(module, str) and self._forbidden_module(module):
            return f"{module}.{qualname or '?'}"
        if id(function) in _forbidden_function_ids():
            return f"{module}.{qualname}, which evaluates or unpickles what it is given"
        bound_to = getattr(value, "__self__", None)
        if bound_to is not None and bound_to is not value and not isinstance(bound_to, type):
            if isinstance(bound_to, types.ModuleType) and bound_to.__name__ == "builtins":
                return None
            return self.why_refused(bound_to)
        return None

    def _in_tree(self, module: str) -> bool:
        return module == self.package or module.startswith(self.package + ".")

    def _forbidden_module(self, module: str) -> bool:
        if self._in_tree(module):
            return False
        top = module.split(".", 1)[0]
        return top in FORBIDDEN_MODULES or module in FORBIDDEN_MODULES

    @staticmethod
    def _exported(owner: object, name: str) -> bool:
        """A private name a module exports on purpose, in its ``__all__`` (never a dunder)."""
        if not isinstance(owner, types.ModuleType) or name.startswith("__"):
            return False
        exported = vars(owner).get("__all__")
        return isinstance(exported, (list, tuple)) and name in exported


def _forbidden_function_ids() -> frozenset[int]:
    """Ids of the loaded functions of :data:`FORBIDDEN_FUNCTIONS` (looked up, never imported),
    computed again only when one of their packages has been loaded since."""
    loaded = frozenset(d.split(".", 1)[0] for d in FORBIDDEN_FUNCTIONS if d.split(".", 1)[0] in sys.modules)
    cached = _FORBIDDEN_FUNCTION_IDS.get(loaded)
    if cached is None:
        cached = _FORBIDDEN_FUNCTION_IDS[loaded] = _resolve_forbidden_functions()
    return cached


_FORBIDDEN_FUNCTION_IDS: dict[frozenset[str], frozenset[int]] = {}


def _resolve_forbidden_functions() -> frozenset[int]:
    ids = set()
    for dotted in FORBIDDEN_FUNCTIONS:
        top, *rest = dotted.split(".")
        value: Any = sys.modules.get(top)
        for name in rest:
            value = None if value is None else inspect.getattr_static(value, name, None)
        if value is not None:
            ids.add(id(getattr(value, "__func__", value)))
    return frozenset(ids)


def _children(value: object) -> list[Any] | None:
    t = type(value)
    if t in (list, tuple, set, frozenset):
        return list(value)  # type: ignore[call-overload]
    if t is dict:
        return [*value.keys(), *value.values()]  # type: ignore[attr-defined]
    if t is Kwargs:
        return list(value.values.values())  # type: ignore[attr-defined]
    if t is MapEntries:
        return [x for entry in value.entries for x in entry]  # type: ignore[attr-defined]
    if t is SetItems:
        return list(value.items)  # type: ignore[attr-defined]
    return None


def _denied_name(name: str, path: tuple[str, ...]) -> SpliceError:
    return SpliceError(
        Code.PERMISSION_DENIED,
        f"access to {name!r} is not allowed (path {format_path(path)}): only what the module exports "
        "can be reached",
    )


def format_path(path: tuple[str, ...] | list[str]) -> str:
    """A path as a readable expression, for messages: ``a.b["x-y"]``."""
    if not path:
        return "(module)"
    if len(path) == 1 and path[0].startswith("("):
        return path[0]  # "(result)", "(argument)": what was checked, not a path
    out = []
    for i, key in enumerate(path):
        if key.isidentifier():
            out.append(key if i == 0 else f".{key}")
        else:
            out.append(f"[{key!r}]")
    return "".join(out)
