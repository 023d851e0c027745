"""SPLICE_ISOLATE=1: the server restricts its file system access with Landlock before the module
loads. A hostile module can then read neither its parent's environment nor files outside the
allowed set, nor write anything; numpy and pandas still import and compute."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from splice_module_server import isolation

from .support import SECRET, Client, call, child_server, server_environment

pytestmark = pytest.mark.skipif(isolation.landlock_abi() < 1, reason="this kernel has no Landlock")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("isolation")
    (root / "allowed").mkdir()
    (root / "allowed" / "data.txt").write_text("readable on purpose")
    (root / "secret.txt").write_text("not for modules")
    return {"root": root, "allowed": root / "allowed" / "data.txt", "secret": root / "secret.txt"}


@pytest.fixture(scope="module")
def isolated(files: dict[str, Path]) -> Iterator[tuple[Client, dict[str, Any]]]:
    env = server_environment(
        MODULE_NAME="hostile",
        SPLICE_SERVER_SECRET=SECRET,
        SPLICE_ISOLATE="1",
        SPLICE_ISOLATE_READ=str(files["allowed"].parent),
    )
    with child_server(env) as (process, line):
        assert line is not None, process.stderr.read()
        with Client(line["port"]) as client:
            yield client, line


def ask(client: Client, name: str, *args: Any) -> Any:
    response = client.invoke([call([name], *args)])
    assert response["ok"], response.get("error")
    return response["value"]


def test_the_module_cannot_read_its_parents_environment(isolated: tuple[Client, dict]) -> None:
    assert ask(isolated[0], "parent_environ") == {"error": "PermissionError"}


def test_the_module_cannot_read_files_outside_the_allowed_set(
    isolated: tuple[Client, dict], files: dict[str, Path]
) -> None:
    client = isolated[0]
    assert ask(client, "read", str(files["secret"])) == {"error": "PermissionError"}
    assert ask(client, "read", "/etc/passwd") == {"error": "PermissionError"}
    assert ask(client, "read", "/proc/self/environ") == {"error": "PermissionError"}
    assert ask(client, "read", str(Path(__file__).parents[3] / "package.json")) == {
        "error": "PermissionError"
    }


def test_extra_readable_paths_are_readable(isolated: tuple[Client, dict], files: dict[str, Path]) -> None:
    assert ask(isolated[0], "read", str(files["allowed"])) == {"read": "readable on purpose"}


def test_the_module_can_write_nothing(isolated: tuple[Client, dict], files: dict[str, Path]) -> None:
    client = isolated[0]
    assert ask(client, "write", str(files["root"] / "new.txt")) == {"error": "PermissionError"}
    assert ask(client, "write", str(files["allowed"])) == {"error": "PermissionError"}
    assert not (files["root"] / "new.txt").exists()
    assert ask(client, "write", "/dev/null") == {"written": "/dev/null"}


def test_numpy_and_pandas_import_and_compute_under_isolation(isolated: tuple[Client, dict]) -> None:
    assert ask(isolated[0], "numpy_det") == pytest.approx(4.0)
    assert ask(isolated[0], "pandas_mean") == {"a": {1: 3}}


def test_a_kernel_without_landlock_refuses_isolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation, "landlock_abi", lambda: 0)
    with pytest.raises(isolation.IsolationError, match="Landlock"):
        isolation.isolate(None)


def test_python_paths_leave_out_the_current_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", ["", str(tmp_path), "/usr/lib/python3/dist-packages"])
    paths = isolation.python_paths()
    assert str(tmp_path) not in paths and "" not in paths and "/usr/lib/python3/dist-packages" in paths


def launch(files: dict[str, Path], *program: str) -> subprocess.CompletedProcess[str]:
    """Runs ``program`` through the launcher, allowed to read the ``allowed`` file only."""
    script = Path(isolation.__file__)
    command = [sys.executable, "-I", "-S", str(script), "--read", str(files["allowed"]), "--", *program]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_the_launcher_confines_the_program_it_runs(files: dict[str, Path]) -> None:
    cat, sh = shutil.which("cat"), shutil.which("sh")
    assert cat and sh
    allowed = launch(files, cat, str(files["allowed"]))
    assert (allowed.returncode, allowed.stdout) == (0, "readable on purpose")
    refused = launch(files, cat, str(files["secret"]))
    assert refused.returncode != 0
    assert "Permission denied" in refused.stderr
    # The program itself may run; nothing it would execute in turn.
    nested = launch(files, sh, "-c", f"{cat} {files['allowed']}")
    assert nested.returncode != 0
    assert "Permission denied" in nested.stderr


def test_the_launcher_says_what_it_needs() -> None:
    script = Path(isolation.__file__)
    usage = subprocess.run(
        [sys.executable, str(script), "--read"], capture_output=True, text=True, check=False
    )
    assert usage.returncode == 64
    assert "usage: isolation.py" in usage.stderr
    abi = subprocess.run([sys.executable, str(script), "--abi"], capture_output=True, text=True, check=False)
    assert abi.stdout.strip() == str(isolation.landlock_abi())
