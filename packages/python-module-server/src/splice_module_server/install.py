"""``python -m splice_module_server.install``: installs a module's requirements into a folder, as the
init container of a module pod does (the Node image's ``SERVICE_TYPE=module_install`` counterpart).

| variable | meaning | default |
| --- | --- | --- |
| MODULE_PACKAGE | the module's pip requirement (``numpy>=2,<3``) | required |
| MODULE_DEPENDENCIES | a JSON array of further requirements | ``[]`` |
| MODULE_RESOLVE_FROM | the folder to install into (``pip install --target``); the server imports from it | required |
| MODULE_INSTALL_SCRIPTS | ``1``: source distributions may be built (their setup code runs) | wheels only |
| SPLICE_INSTALL_TIMEOUT_MS | longest the install may take | 300000 |

pip runs with no input, no version check and no cache (a pod's install is made once); an image
built on this one may configure it (an index mirror in /etc/pip.conf). A failure exits 1 with pip's
own last lines on stderr, which the pod's termination message shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping

#: Lines of pip's output a failure reports.
TAIL_LINES = 20


class InstallError(Exception):
    """The install could not be made; the message says why."""


def pip_command(env: Mapping[str, str]) -> list[str]:
    """The pip command the variables ask for; raises InstallError naming a bad variable."""
    package = env.get("MODULE_PACKAGE", "").strip()
    if not package:
        raise InstallError("MODULE_PACKAGE is not set: name the pip requirement to install")
    target = env.get("MODULE_RESOLVE_FROM", "").strip()
    if not target:
        raise InstallError("MODULE_RESOLVE_FROM is not set: name the folder to install into")
    try:
        dependencies = json.loads(env.get("MODULE_DEPENDENCIES") or "[]")
    except json.JSONDecodeError as error:
        raise InstallError(f"MODULE_DEPENDENCIES is not JSON: {error}") from None
    if not isinstance(dependencies, list) or not all(isinstance(d, str) and d for d in dependencies):
        raise InstallError("MODULE_DEPENDENCIES must be a JSON array of requirement strings")
    for requirement in [package, *dependencies]:
        # An option in a requirement's place would change what pip does (--index-url, -r file, ...).
        if requirement.startswith("-"):
            raise InstallError(f"requirement {requirement!r} is an option, not a requirement")
    only_binary = [] if env.get("MODULE_INSTALL_SCRIPTS") == "1" else ["--only-binary=:all:"]
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-input",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--no-cache-dir",
        "--target",
        target,
        *only_binary,
        "--",
        package,
        *dependencies,
    ]


def timeout_s(env: Mapping[str, str]) -> float:
    raw = env.get("SPLICE_INSTALL_TIMEOUT_MS", "") or "300000"
    try:
        value = int(raw)
    except ValueError:
        raise InstallError(f"SPLICE_INSTALL_TIMEOUT_MS must be a whole number of ms, got {raw!r}") from None
    if value <= 0:
        raise InstallError(f"SPLICE_INSTALL_TIMEOUT_MS must be positive, got {raw!r}")
    return value / 1000


def install(env: Mapping[str, str]) -> None:
    """Installs, or raises InstallError with pip's last lines."""
    command = pip_command(env)
    limit = timeout_s(env)
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=limit,
            env={**env, "PIP_NO_INPUT": "1"},
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InstallError(f"pip did not finish within {limit:g} s") from None
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()[-TAIL_LINES:]
        raise InstallError(f"pip install failed (exit {result.returncode}):\n" + "\n".join(lines))


def main() -> None:
    try:
        install(os.environ)
    except InstallError as error:
        print(f"splice-orc: {error}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"level": 30, "msg": "installed", "target": os.environ["MODULE_RESOLVE_FROM"]}))


if __name__ == "__main__":
    main()
