"""The server as a process (``python -m splice_module_server``), as the pod-manager starts it: the
environment, the "listening" line, SIGTERM, and the IPC channel of a Node parent (played here by a
socketpair, and once by a real ``node``)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from .support import SECRET, Client, call, child_server, server_environment


def start_failure(**variables: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of a server that must refuse to start."""
    process = subprocess.run(
        [sys.executable, "-m", "splice_module_server"],
        env=server_environment(**variables),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return process.returncode, process.stdout, process.stderr


def test_prints_listening_serves_and_stops_on_sigterm() -> None:
    env = server_environment(MODULE_NAME="hostile", SPLICE_SERVER_SECRET=SECRET, SPLICE_SERVER_ID="pod-7")
    with child_server(env) as (process, line):
        assert line is not None and line["msg"] == "listening" and line["serverId"] == "pod-7"
        with Client(line["port"]) as client:
            assert client.invoke([call(["environment_variable"], "MODULE_NAME")])["value"] == "hostile"
            secret_seen = client.invoke([call(["environment_variable"], "SPLICE_SERVER_SECRET")])["value"]
            assert secret_seen is None, "the secret is not left in the environment"
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        assert '"msg":"stopping"' in process.stdout.read()


def test_sigterm_lets_calls_in_flight_finish_within_the_grace_period() -> None:
    env = server_environment(MODULE_NAME="calc", SPLICE_SERVER_SECRET=SECRET, SPLICE_GRACE_MS="3000")
    with child_server(env) as (process, line), Client(line["port"]) as client, ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(lambda: client.invoke([call(["sleep"], 0.5)]))
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert in_flight.result(5)["value"] == 0.5
        assert process.wait(5) == 0


def test_sigterm_does_not_wait_past_the_grace_period_for_a_hung_call() -> None:
    env = server_environment(MODULE_NAME="calc", SPLICE_SERVER_SECRET=SECRET, SPLICE_GRACE_MS="200")
    with child_server(env) as (process, line), Client(line["port"]) as client, ThreadPoolExecutor(1) as pool:
        hung = pool.submit(lambda: client.invoke([call(["hang"], 30)], timeout=20))
        time.sleep(0.2)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(5) == 0
        assert time.monotonic() - started < 3, "the worker thread stuck in the module is left behind"
        with pytest.raises(grpc.RpcError):
            hung.result(5)


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"SPLICE_SERVER_SECRET": SECRET}, "MODULE_NAME"),
        ({"MODULE_NAME": "calc"}, "SPLICE_SERVER_SECRET"),
        ({"MODULE_NAME": "calc", "SPLICE_SERVER_SECRET": "short"}, "SPLICE_SERVER_SECRET"),
        ({"MODULE_NAME": "calc", "SPLICE_SERVER_SECRET": SECRET, "PORT": "x"}, "PORT"),
        (
            {"MODULE_NAME": "calc", "SPLICE_SERVER_SECRET": SECRET, "SPLICE_PY_WORKERS": "0"},
            "SPLICE_PY_WORKERS",
        ),
        ({"MODULE_NAME": "calc", "SPLICE_SERVER_SECRET": SECRET, "SPLICE_ISOLATE": "yes"}, "SPLICE_ISOLATE"),
        ({"MODULE_NAME": "calc", "SPLICE_SERVER_SECRET": SECRET, "SPLICE_LEASE_MS": "-1"}, "SPLICE_LEASE_MS"),
        (
            {"MODULE_NAME": "calc", "SPLICE_SERVER_SECRET": SECRET, "MODULE_RESOLVE_FROM": "/nowhere"},
            "MODULE_RESOLVE_FROM",
        ),
        ({"MODULE_NAME": "no_such_module", "SPLICE_SERVER_SECRET": SECRET}, "ModuleNotFoundError"),
        ({"MODULE_NAME": "calc", "SPLICE_SECRET_FROM_PARENT": "1"}, "NODE_CHANNEL_FD"),
    ],
)
def test_refuses_to_start_naming_what_is_wrong(variables: dict[str, str], named: str) -> None:
    code, stdout, stderr = start_failure(**variables)
    assert code == 1
    line = json.loads(stdout.strip().splitlines()[-1])
    assert line["msg"] == "module-server failed to start" and named in line["err"]["message"]
    assert named in stderr


class FakeNodeParent:
    """The parent's end of a Node IPC channel: newline-delimited JSON over a socketpair."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.ours.settimeout(20)
        self.lines = self.ours.makefile("r", encoding="utf-8")

    def environment(self, **variables: str) -> dict[str, str]:
        return server_environment(NODE_CHANNEL_FD=str(self.theirs.fileno()), **variables)

    def receive(self) -> dict[str, Any]:
        return json.loads(self.lines.readline())

    def send(self, message: dict[str, Any]) -> None:
        self.ours.sendall(json.dumps(message).encode() + b"\n")

    def close(self) -> None:
        self.lines.close()
        self.ours.close()
        self.theirs.close()


@pytest.fixture
def parent() -> Any:
    fake = FakeNodeParent()
    yield fake
    fake.close()


def test_asks_the_parent_for_its_secret_says_it_listens_and_stops_when_the_parent_goes(
    parent: FakeNodeParent,
) -> None:
    env = parent.environment(MODULE_NAME="calc", SPLICE_SECRET_FROM_PARENT="1", SPLICE_SERVER_ID="ipc")
    with child_server(env, pass_fds=(parent.theirs.fileno(),), wait=False) as (process, _):
        parent.theirs.close()
        assert parent.receive() == {"type": "secret-request"}
        parent.send({"type": "hello"})
        parent.send({"type": "secret", "secret": SECRET})
        listening = parent.receive()
        assert listening["type"] == "listening" and listening["serverId"] == "ipc"
        with Client(listening["port"]) as client:
            assert client.invoke([call(["add"], 2, 2)])["value"] == 4
        parent.close()  # the parent died
        assert process.wait(10) == 0
        assert '"reason":"parent went away"' in process.stdout.read()


def test_tells_the_parent_when_it_cannot_start(parent: FakeNodeParent) -> None:
    env = parent.environment(MODULE_NAME="no_such_module", SPLICE_SERVER_SECRET=SECRET)
    with child_server(env, pass_fds=(parent.theirs.fileno(),), wait=False) as (process, _):
        parent.theirs.close()
        failed = parent.receive()
        assert failed["type"] == "failed" and "no_such_module" in failed["message"]
        assert process.wait(10) == 1


NODE_PARENT = r"""
const { spawn } = require('node:child_process');
const child = spawn(process.argv[1], ['-m', 'splice_module_server'], {
  stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  env: { ...process.env, SPLICE_SECRET_FROM_PARENT: '1' },
});
child.on('message', (m) => {
  if (m.type === 'secret-request') child.send({ type: 'secret', secret: process.argv[2] });
  if (m.type === 'listening') { console.log(JSON.stringify(m)); child.kill('SIGTERM'); }
});
child.on('exit', (code) => console.log(JSON.stringify({ type: 'exit', code })));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_a_real_node_parent_speaks_the_same_channel() -> None:
    out = subprocess.run(
        ["node", "-e", NODE_PARENT, sys.executable, SECRET],
        env=server_environment(MODULE_NAME="calc"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    messages = [json.loads(line) for line in out.stdout.splitlines()]
    assert messages[0]["type"] == "listening" and messages[0]["port"] > 0
    assert messages[1] == {"type": "exit", "code": 0}
