"""The init container's installer (``python -m splice_module_server.install``), with a real pip
installing a real wheel made here, from no index: nothing leaves the machine."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from splice_module_server.install import InstallError, install, pip_command

SRC = str(Path(__file__).resolve().parent.parent / "src")


def make_wheel(
    folder: Path, name: str = "splicefixture", source: str = "def add(a, b):\n    return a + b\n"
) -> Path:
    """A pure-Python wheel holding one module ``name`` (PEP 427: a zip with METADATA, WHEEL, RECORD)."""
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": source.encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: splice-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def offline(**env: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PIP_NO_INDEX": "1",
        **env,
    }


def test_installs_the_package_into_the_folder_the_server_imports_from(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    target = tmp_path / "install"
    install(offline(MODULE_PACKAGE=str(wheel), MODULE_RESOLVE_FROM=str(target)))
    found = subprocess.run(
        [sys.executable, "-c", "import splicefixture; print(splicefixture.add(2, 3))"],
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "5"


def test_a_failed_install_says_what_pip_said(tmp_path: Path) -> None:
    with pytest.raises(InstallError) as failed:
        install(offline(MODULE_PACKAGE="dateutil", MODULE_RESOLVE_FROM=str(tmp_path / "install")))
    message = str(failed.value)
    assert message.startswith("pip install failed (exit 1)")
    # pip's own words: the requirement it could not find.
    assert "dateutil" in message.splitlines()[-1] or "dateutil" in message


def test_as_the_init_container_runs_it_a_failure_exits_1_naming_the_problem(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "splice_module_server.install"],
        env={**offline(MODULE_RESOLVE_FROM=str(tmp_path)), "PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "MODULE_PACKAGE is not set" in result.stderr


def test_wheels_only_unless_install_scripts(tmp_path: Path) -> None:
    env = {"MODULE_PACKAGE": "numpy>=2", "MODULE_RESOLVE_FROM": str(tmp_path)}
    assert "--only-binary=:all:" in pip_command(env)
    assert "--only-binary=:all:" not in pip_command({**env, "MODULE_INSTALL_SCRIPTS": "1"})
    # Requirements come after `--`: none can be read as an option.
    command = pip_command({**env, "MODULE_DEPENDENCIES": '["pandas", "scipy<2"]'})
    assert command[command.index("--") + 1 :] == ["numpy>=2", "pandas", "scipy<2"]


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"MODULE_RESOLVE_FROM": "/x"}, "MODULE_PACKAGE is not set"),
        ({"MODULE_PACKAGE": "numpy"}, "MODULE_RESOLVE_FROM is not set"),
        (
            {"MODULE_PACKAGE": "numpy", "MODULE_RESOLVE_FROM": "/x", "MODULE_DEPENDENCIES": "[1]"},
            "JSON array",
        ),
        ({"MODULE_PACKAGE": "numpy", "MODULE_RESOLVE_FROM": "/x", "MODULE_DEPENDENCIES": "{"}, "not JSON"),
        ({"MODULE_PACKAGE": "--index-url=http://127.0.0.1:9/", "MODULE_RESOLVE_FROM": "/x"}, "is an option"),
        (
            {
                "MODULE_PACKAGE": "numpy",
                "MODULE_RESOLVE_FROM": "/x",
                "MODULE_DEPENDENCIES": '["-r/etc/passwd"]',
            },
            "is an option",
        ),
    ],
)
def test_bad_variables_are_named(env: dict[str, str], problem: str) -> None:
    with pytest.raises(InstallError, match=problem):
        pip_command(env)


def test_a_bad_timeout_is_named(tmp_path: Path) -> None:
    env = offline(MODULE_PACKAGE="x", MODULE_RESOLVE_FROM=str(tmp_path), SPLICE_INSTALL_TIMEOUT_MS="soon")
    with pytest.raises(InstallError, match="SPLICE_INSTALL_TIMEOUT_MS"):
        install(env)
