"""One JSON object a line on stdout, in the shape the Node servers' logger (pino) writes, so that the
pod-manager and the tests read both alike: ``{"level":30,"time":...,"pid":...,"msg":"listening",...}``."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TextIO

INFO = 30
ERROR = 50
FATAL = 60


class JsonLog:
    """Writes log lines with fixed ``base`` fields (the process id, the module)."""

    def __init__(self, stream: TextIO | None = None, **base: Any) -> None:
        self._stream = stream or sys.stdout
        self._base = {"pid": os.getpid(), "name": "python-module-server", **base}

    def write(self, level: int, msg: str, **fields: Any) -> None:
        line = {"level": level, "time": int(time.time() * 1000), **self._base, **fields, "msg": msg}
        try:
            self._stream.write(json.dumps(line, separators=(",", ":"), default=str) + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # stdout closed: nothing to tell

    def info(self, msg: str, **fields: Any) -> None:
        self.write(INFO, msg, **fields)

    def error(self, msg: str, **fields: Any) -> None:
        self.write(ERROR, msg, **fields)

    def fatal(self, msg: str, **fields: Any) -> None:
        self.write(FATAL, msg, **fields)
