"""File system isolation of the server process with Linux Landlock (SPLICE_ISOLATE=1), through the
three system calls, by ctypes: no dependency.

Applied before the module is imported, and before any other thread starts (a Landlock domain binds
the calling thread and the threads it starts afterwards), it leaves the process able to read only:

- its Python: ``sys.prefix``, ``sys.base_prefix``, their exec prefixes, every ``sys.path`` entry
  (the standard library, site-packages, an editable install's source) and the folder this server is
  installed in;
- ``MODULE_RESOLVE_FROM``, the module's own install folder;
- :data:`SYSTEM_READ`: shared libraries and the dynamic loader's cache, time zones and locales, and
  the CPU topology that numeric libraries read to size their thread pools;
- the paths of SPLICE_ISOLATE_READ.

It may write nothing but ``/dev/null`` (:data:`SYSTEM_WRITE`), execute nothing, and create, remove
or rename no file. A module then can read neither ``/proc/<pid>/environ`` of its parent nor the
pod-manager's configuration nor other modules' folders. With Landlock ABI 6 and later, the process
also may not send signals to processes outside its domain (the pod-manager, other servers).

Run as a script, it confines a Node module-server the same way (the pod-manager starts isolated
Node servers through it, under Node's permission model as well): ``python3 isolation.py --read PATH
... --execute FILE -- PROGRAM ARGS...`` restricts itself, then executes PROGRAM, which stays in the
domain, as does every thread and process it starts; a thread that escaped Node's permission model
still reads, writes, executes and signals only what the domain allows. It needs nothing but the
standard library.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_TRUNCATE = 1 << 14
_FS_IOCTL_DEV = 1 << 15
#: Every file system right each ABI knows: all of them are handled, so all are denied unless a rule
#: grants them (ABI 2 adds REFER, 3 TRUNCATE, 5 IOCTL_DEV).
_HANDLED_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
#: Rights a rule on a file (not a folder) may carry.
_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
_SCOPE_SIGNAL = 1 << 1

READ = _FS_READ_FILE | _FS_READ_DIR
WRITE = _FS_WRITE_FILE

#: What a Python process and numpy/pandas read outside their own folders (found by tracing their
#: import and use): shared libraries and the loader's cache, locales, time zones (pandas, datetime),
#: the CPU topology (OpenBLAS sizes its threads from it) and the random device.
SYSTEM_READ: tuple[str, ...] = (
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/timezone",
    "/usr/share/zoneinfo",
    "/usr/share/locale",
    "/etc/locale.alias",
    "/sys/devices/system/cpu",
    "/proc/cpuinfo",
    "/dev/urandom",
)
#: Written by libraries that discard output by opening /dev/null: the only writable path.
SYSTEM_WRITE: tuple[str, ...] = ("/dev/null",)


class IsolationError(RuntimeError):
    """Isolation was asked for and cannot be had; the server must not start."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


@dataclass(frozen=True)
class IsolationReport:
    """What :func:`isolate` did: the Landlock ABI and the paths it granted."""

    abi: int
    readable: tuple[str, ...]
    writable: tuple[str, ...]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when it has none (or it is disabled)."""
    if not sys.platform.startswith("linux"):
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(
        _SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION)
    )
    return max(abi, 0)


def python_paths() -> list[str]:
    """The folders this Python reads its code from."""
    # The folder this server is installed in: an editable install reaches it through an import
    # finder, not through sys.path, and the server imports more of itself after isolating.
    own = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, own]
    cwd = os.getcwd()
    # "" and the current folder are not code folders (python -m puts the latter first).
    paths += [p for p in sys.path if p and os.path.abspath(p) != cwd]
    return paths


def isolate(resolve_from: str | None, extra_read: Iterable[str] = ()) -> IsolationReport:
    """Restricts this process for good. Raises IsolationError when the kernel has no Landlock or the
    restriction fails; it must then not start."""
    abi = landlock_abi()
    if abi < 1:
        raise IsolationError(
            "SPLICE_ISOLATE=1 needs Linux Landlock, which this kernel does not offer (ABI < 1): "
            "run on Linux 5.13+ with Landlock enabled, or start without SPLICE_ISOLATE"
        )
    if threading.active_count() > 1:
        raise IsolationError("isolation must be applied before any other thread starts")
    return restrict(
        [*python_paths(), *([resolve_from] if resolve_from else []), *SYSTEM_READ, *extra_read], abi
    )


def restrict(readable: Iterable[str], abi: int, executable: Iterable[str] = ()) -> IsolationReport:
    """Enters a Landlock domain that reads only ``readable``, writes only :data:`SYSTEM_WRITE`,
    executes only the files ``executable`` and, with ABI 6+, signals and reaches abstract Unix
    sockets only inside the domain."""
    libc = ctypes.CDLL(None, use_errno=True)
    handled = _HANDLED_BY_ABI[min(abi, 5)]
    attr = _RulesetAttr(handled, 0, _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), 0)
    if ruleset < 0:
        raise IsolationError(f"landlock_create_ruleset failed: {os.strerror(ctypes.get_errno())}")
    try:
        granted_read = _add_rules(libc, ruleset, readable, READ & handled)
        granted_write = _add_rules(libc, ruleset, SYSTEM_WRITE, (READ | WRITE) & handled)
        _add_rules(libc, ruleset, executable, (_FS_READ_FILE | _FS_EXECUTE) & handled)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise IsolationError(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) != 0:
            raise IsolationError(f"landlock_restrict_self failed: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)
    return IsolationReport(abi, tuple(granted_read), tuple(granted_write))


def _add_rules(libc: ctypes.CDLL, ruleset: int, paths: Iterable[str], rights: int) -> list[str]:
    """Grants ``rights`` beneath each existing path; returns the paths granted."""
    granted: list[str] = []
    for path in dict.fromkeys(os.path.abspath(p) for p in paths):
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # absent here (/lib64 on some systems): nothing to grant
        try:
            allowed = rights if stat.S_ISDIR(os.fstat(fd).st_mode) else rights & _FILE_RIGHTS
            rule = _PathBeneathAttr(allowed, fd)
            if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
                raise IsolationError(
                    f"landlock_add_rule failed for {path}: {os.strerror(ctypes.get_errno())}"
                )
            granted.append(path)
        finally:
            os.close(fd)
    return granted


#: What a Node module-server reads besides its own folders: :data:`SYSTEM_READ` and what name
#: resolution and TLS read, for modules that use the network, the cgroup limits Node sizes its
#: heap by, and the system-wide CPU and memory figures of `os.cpus()` and `os.freemem()`.
NODE_SYSTEM_READ: tuple[str, ...] = (
    *SYSTEM_READ,
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/usr/share/ca-certificates",
    "/sys/fs/cgroup",
    "/proc/stat",
    "/proc/meminfo",
)


def main(argv: Sequence[str]) -> int:
    """``isolation.py --abi`` prints the kernel's Landlock ABI version (0: none).

    ``isolation.py [--best-effort] --read PATH... --execute FILE... -- PROGRAM ARGS...``: enters the
    domain, then replaces this process by PROGRAM (same pid, same open descriptors: a parent's IPC
    channel carries over). Without Landlock it refuses (exit 70), or with ``--best-effort`` says so on
    stderr and runs PROGRAM unconfined."""
    if list(argv) == ["--abi"]:
        print(landlock_abi())
        return 0
    parsed = _parse(argv)
    if isinstance(parsed, str):
        print(f"isolation.py: {parsed}", file=sys.stderr)
        return 64
    readable, executable, best_effort, program = parsed
    abi = landlock_abi()
    # Executing an ELF program also opens its interpreter (the dynamic loader) for execution.
    executable += [program[0], *_interpreter(program[0])]
    if abi < 1:
        message = "Linux Landlock is not available here (kernel, or a seccomp filter)"
        if not best_effort:
            print(f"isolation.py: {message}: refusing to run {program[0]}", file=sys.stderr)
            return 70
        print(f"isolation.py: {message}: {program[0]} runs without it", file=sys.stderr)
    else:
        try:
            restrict(readable, abi, executable)
        except IsolationError as error:
            print(f"isolation.py: {error}", file=sys.stderr)
            if not best_effort:
                return 70
    os.execv(program[0], program)
    return 0  # not reached


def _parse(argv: Sequence[str]) -> tuple[list[str], list[str], bool, list[str]] | str:
    """The launcher's arguments (readable paths, executable files, best effort, the program), or
    what is wrong with them."""
    usage = "usage: isolation.py [--best-effort] --read PATH... --execute FILE... -- PROGRAM ARGS..."
    if "--" not in argv:
        return usage
    split = list(argv).index("--")
    options, program = list(argv[:split]), list(argv[split + 1 :])
    readable: list[str] = [*NODE_SYSTEM_READ, f"/proc/{os.getpid()}"]
    executable: list[str] = []
    best_effort = False
    while options:
        option = options.pop(0)
        if option == "--best-effort":
            best_effort = True
        elif option in ("--read", "--execute") and options:
            (readable if option == "--read" else executable).append(options.pop(0))
        else:
            return f"unknown or incomplete option {option}; {usage}"
    if not program:
        return f"no program to run after --; {usage}"
    return readable, executable, best_effort, program


def _interpreter(path: str) -> list[str]:
    """The ELF interpreter a 64-bit little-endian executable names (PT_INTERP), if any."""
    try:
        with open(path, "rb") as file:
            header = file.read(64)
            if header[:6] != b"\x7fELF\x02\x01":
                return []
            phoff = int.from_bytes(header[32:40], "little")
            phentsize = int.from_bytes(header[54:56], "little")
            phnum = int.from_bytes(header[56:58], "little")
            for index in range(phnum):
                file.seek(phoff + index * phentsize)
                entry = file.read(phentsize)
                if int.from_bytes(entry[0:4], "little") == 3:  # PT_INTERP
                    file.seek(int.from_bytes(entry[8:16], "little"))
                    size = int.from_bytes(entry[32:40], "little")
                    return [file.read(size).rstrip(b"\0").decode()]
    except OSError:
        return []
    return []


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
