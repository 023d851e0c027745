"""Loads the module a server serves and gives the executor its root: the module object, from which
every path starts."""

from __future__ import annotations

import importlib
import os
import sys
import types


def load_module(name: str, resolve_from: str | None = None) -> types.ModuleType:
    """Imports ``name``. ``resolve_from`` (a folder an install made with ``pip install --target``)
    is put first on ``sys.path``, so that the module and its dependencies are found there before
    anywhere else."""
    if resolve_from:
        folder = os.path.abspath(resolve_from)
        if folder not in sys.path:
            sys.path.insert(0, folder)
    return importlib.import_module(name)
