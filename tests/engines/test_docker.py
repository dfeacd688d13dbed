"""dockerd (Debian's docker.io 20.10) drives ocirt unchanged; runc is the reference.

One private dockerd serves the module. Every test runs once with ``--runtime
ocirt`` and once with dockerd's default ``runc``: a step that fails with runc too
is the engine's or the machine's, one that fails only with ocirt is ocirt's.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import harness
import pytest
from docker_session import BRIDGE_IP, DockerSession
from harness import busybox_image  # noqa: F401

pytestmark = pytest.mark.engines

IMAGE = harness.IMAGE

#: What the containerd shim is told to run for each runtime name (dockerd's runc is found on PATH).
RUNTIME_BINARY = {"ocirt": harness.OCIRT, "runc": "runc"}


@pytest.fixture(scope="module")
def dk(busybox_image: dict[str, Path]) -> Iterator[DockerSession]:  # noqa: F811
    with DockerSession(busybox_image["tar"]) as session:
        yield session


def wait_until(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def fail_text(dk: DockerSession, result: subprocess.CompletedProcess[str]) -> str:
    output = f"{result.stdout}{result.stderr}"
    return f"{result.args}: exit {result.returncode}\n{output}\n--- dockerd:\n{dk.log_tail()}"


def status(dk: DockerSession, name: str) -> str:
    return dk.ok("inspect", "-f", "{{.State.Status}}", name)


# ---------------------------------------------------------------------- run


@pytest.mark.parametrize("runtime", harness.runtime_params())
def test_run_and_exit_codes(dk: DockerSession, runtime: str) -> None:
    r = dk.docker("run", "--rm", IMAGE, "echo", "hi", runtime=runtime)
    assert r.returncode == 0 and r.stdout == "hi\n", fail_text(dk, r)

    r = dk.docker("run", "--rm", IMAGE, "sh", "-c", "exit 42", runtime=runtime)
    assert r.returncode == 42, fail_text(dk, r)

    r = dk.docker("run", "--rm", IMAGE, "/no/such/binary", runtime=runtime)
    assert r.returncode == 127, fail_text(dk, r)

    r = dk.docker("run", "--rm", IMAGE, "/etc/passwd", runtime=runtime)
    assert r.returncode == 126, fail_text(dk, r)

    assert dk.ok("ps", "-aq", "--filter", f"ancestor={IMAGE}", "--filter", "status=exited") == ""


# ---------------------------------------------------------------------- exec, logs, top


@pytest.mark.parametrize("runtime", harness.runtime_params())
def test_exec_logs_top(dk: DockerSession, runtime: str) -> None:
    name = f"exec-{runtime}"
    dk.ok("run", "-d", "--name", name, IMAGE, "sh", "-c", "echo started; exec sleep 600", runtime=runtime)
    try:
        wait_until(lambda: "started" in dk.docker("logs", name).stdout, "the container's first output")
        assert status(dk, name) == "running"
        assert dk.runtime_binary(name) == RUNTIME_BINARY[runtime]

        r = dk.docker("exec", name, "echo", "from-exec")
        assert r.returncode == 0 and r.stdout == "from-exec\n", fail_text(dk, r)

        r = dk.docker("exec", name, "sh", "-c", "exit 3")
        assert r.returncode == 3, fail_text(dk, r)

        # dockerd 20.10 gives 126 for any exec that fails to start; the runtime's message names why.
        r = dk.docker("exec", name, "/no/such/binary")
        assert r.returncode == 126 and "no such file or directory" in r.stdout + r.stderr, fail_text(dk, r)

        # -i: stdin reaches the process and the pipe's end closes it.
        r = dk.docker("exec", "-i", name, "cat", input="through stdin\nline two\n")
        assert r.returncode == 0 and r.stdout == "through stdin\nline two\n", fail_text(dk, r)

        # -t: dockerd asks the runtime for --tty --console-socket; the process gets a pty.
        code, out = harness.run_in_pty(dk.argv("exec", "-t", name, "tty"), dk.env())
        assert code == 0, out
        assert out.strip().startswith("/dev/pts/"), out

        code, out = harness.run_in_pty(
            dk.argv("exec", "-t", name, "sh", "-c", "test -t 0 && test -t 1 && exit 7"), dk.env()
        )
        assert code == 7, out

        r = dk.docker("top", name)
        assert r.returncode == 0 and "sleep 600" in r.stdout, fail_text(dk, r)
        assert str(dk.pid(name)) in r.stdout, r.stdout

        assert dk.docker("logs", name).stdout == "started\n"
    finally:
        dk.docker("rm", "-f", name)


# ---------------------------------------------------------------------- cgroups: pause, update


@pytest.mark.parametrize("runtime", harness.runtime_params())
def test_pause_and_update(dk: DockerSession, runtime: str) -> None:
    name = f"cg-{runtime}"
    dk.ok("run", "-d", "--name", name, IMAGE, "sleep", "600", runtime=runtime)
    try:
        assert dk.runtime_binary(name) == RUNTIME_BINARY[runtime]
        pid = dk.pid(name)
        freezer = harness.v1_cgroup_of(pid, "freezer")
        assert freezer.startswith(f"/{harness.CGROUP_PREFIX}/docker/"), freezer

        dk.ok("pause", name)
        assert status(dk, name) == "paused"
        assert harness.cgroup_file(freezer, "freezer", "freezer.state") == "FROZEN"

        dk.ok("unpause", name)
        assert status(dk, name) == "running"
        assert harness.cgroup_file(freezer, "freezer", "freezer.state") == "THAWED"

        r = dk.docker("update", "--memory", "64m", "--memory-swap", "128m", "--cpu-shares", "512", name)
        assert r.returncode == 0, fail_text(dk, r)
        memory = harness.v1_cgroup_of(pid, "memory")
        assert harness.cgroup_file(memory, "memory", "memory.limit_in_bytes") == str(64 << 20)
        memsw = harness.CGROUP_ROOT / "memory" / memory.lstrip("/") / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            assert memsw.read_text().strip() == str(128 << 20)
        else:
            print("no swap accounting on this kernel: memory.memsw.limit_in_bytes not checked")
        cpu = harness.v1_cgroup_of(pid, "cpu")
        assert harness.cgroup_file(cpu, "cpu", "cpu.shares") == "512"

        # The container is still the same process, and alive.
        assert dk.pid(name) == pid and status(dk, name) == "running"
        assert dk.ok("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.CpuShares}}", name) == (
            f"{64 << 20} 512"
        )
    finally:
        dk.docker("rm", "-f", name)


# ---------------------------------------------------------------------- signals, stop, restart, rm


TRAPS = 'trap "echo got-usr1" USR1; trap "" TERM; echo ready; while true; do sleep 0.1; done'


@pytest.mark.parametrize("runtime", harness.runtime_params())
def test_signals_stop_restart_rm(dk: DockerSession, runtime: str) -> None:
    name = f"sig-{runtime}"
    dk.ok("run", "-d", "--name", name, IMAGE, "sh", "-c", TRAPS, runtime=runtime)
    try:
        wait_until(lambda: "ready" in dk.docker("logs", name).stdout, "the traps to be set")

        dk.ok("kill", "-s", "USR1", name)
        wait_until(lambda: "got-usr1" in dk.docker("logs", name).stdout, "the USR1 trap")
        assert status(dk, name) == "running"

        # TERM is ignored: stop waits 1 s, then kills.
        started = time.monotonic()
        dk.ok("stop", "-t", "1", name, timeout=30)
        took = time.monotonic() - started
        assert status(dk, name) == "exited"
        assert dk.ok("inspect", "-f", "{{.State.ExitCode}}", name) == "137"
        assert 0.9 < took < 15, took

        # Start it again, then restart: a new process each time.
        dk.ok("start", name)
        first = dk.pid(name)
        wait_until(lambda: dk.docker("logs", name).stdout.count("ready") == 2, "the second start")
        dk.ok("restart", "-t", "1", name, timeout=30)
        second = dk.pid(name)
        assert status(dk, name) == "running"
        assert second != first and second > 0
        wait_until(lambda: not Path(f"/proc/{first}").exists(), "the first process to go")

        # rm -f of a running container: gone for docker, and the runtime's state too.
        cid = dk.ok("inspect", "-f", "{{.Id}}", name)
        state_dirs = list((dk.dir / "exec").glob(f"runtime-*/moby/{cid}"))
        assert state_dirs, "no runtime state for the running container"
        dk.ok("rm", "-f", name)
        assert dk.docker("inspect", name).returncode != 0
        wait_until(lambda: not Path(f"/proc/{second}").exists(), "the container's process to go")
        assert not [d for d in state_dirs if d.exists()], state_dirs
    finally:
        dk.docker("rm", "-f", name)


# ---------------------------------------------------------------------- the default bridge


@pytest.mark.parametrize("runtime", harness.runtime_params())
def test_bridge_network(dk: DockerSession, runtime: str) -> None:
    # dockerd joins the container to the bridge from a prestart hook (libnetwork-setkey).
    r = dk.docker("run", "--rm", IMAGE, "ip", "-4", "-o", "addr", "show", "eth0", runtime=runtime)
    assert r.returncode == 0, fail_text(dk, r)
    assert "inet 10.213.47." in r.stdout, r.stdout

    r = dk.docker("run", "--rm", IMAGE, "ping", "-c1", "-W2", BRIDGE_IP, runtime=runtime)
    assert r.returncode == 0, fail_text(dk, r)
    assert "1 packets received" in r.stdout, r.stdout

    # A TCP listener on the bridge address: the container connects and sends a line.
    received: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind((BRIDGE_IP, 0))
        server.listen(1)
        server.settimeout(20)
        port = server.getsockname()[1]

        def accept() -> None:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(10)
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
                received.append(data)

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        r = dk.docker(
            "run", "--rm", IMAGE, "sh", "-c", f"echo hello-{runtime} | nc {BRIDGE_IP} {port}", runtime=runtime
        )
        thread.join(20)
    assert r.returncode == 0, fail_text(dk, r)
    assert received == [f"hello-{runtime}\n".encode()]
