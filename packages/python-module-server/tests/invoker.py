"""Test support: programs run through an InvocationHandler in this process (no gRPC)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from splice_module_server.codec import decode, encode
from splice_module_server.guard import Guard
from splice_module_server.invocation import InvocationHandler
from splice_module_server.object_table import ObjectTable, ObjectTableOptions

#: Modules the tests serve.
FIXTURES = Path(__file__).parent / "fixtures"


class Invoker:
    """Runs programs against a module for one session; ``threw`` tells whether the last one raised."""

    def __init__(self, module: str = "calc", session: str = "s", **limits: int) -> None:
        if str(FIXTURES) not in sys.path:
            sys.path.insert(0, str(FIXTURES))
        self.table = ObjectTable(ObjectTableOptions(**limits))
        self.handler = InvocationHandler(importlib.import_module(module), self.table, "srv", Guard(module))
        self.session = session
        self.threw = False

    def run(self, *ops: dict[str, Any], session: str | None = None) -> dict[str, Any]:
        payload = encode({"v": 1, "session": session or self.session, "ops": list(ops)})
        result = self.handler(payload)
        self.threw = result.threw
        return decode(result.payload)

    def value(self, *ops: dict[str, Any]) -> Any:
        response = self.run(*ops)
        assert response["ok"], response.get("error")
        return response["value"]

    def error(self, *ops: dict[str, Any]) -> Any:
        response = self.run(*ops)
        assert not response["ok"], response
        return response["error"]


def call(path: list[str], *args: Any, target: Any = None) -> dict[str, Any]:
    """A call operation."""
    return {"op": "call", "target": target, "path": path, "args": list(args)}


def get(path: list[str], target: Any = None) -> dict[str, Any]:
    """A get operation."""
    return {"op": "get", "target": target, "path": path}
