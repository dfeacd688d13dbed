"""podman (with conmon) drives ocirt unchanged: the container cycle, with runc as the reference.

Every test runs once per runtime in one private podman session (see
``podman_session``). A step that fails with runc too is podman's or the
machine's; one that fails only with ocirt is an ocirt bug.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import harness
import pytest
from harness import busybox_image  # noqa: F401
from podman_session import CGROUP_PARENT, PodmanSession

pytestmark = pytest.mark.engines

IMAGE = harness.IMAGE

#: A container that logs, answers USR1 and exits 0 on TERM (so stop and restart are quick).
SERVICE = 'trap "echo got-usr1" USR1; trap "exit 0" TERM; echo started; while :; do sleep 0.1; done'
#: A container that counts on its stdout, one number a line from 0.
COUNTER = "i=0; while :; do echo $i; i=$((i+1)); sleep 0.1; done"


@pytest.fixture(scope="session")
def no_leftover_mounts() -> Iterator[None]:
    """Overrides the suite's check: only podman's mounts, as other engines' tests may run meanwhile."""

    def ours() -> list[str]:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        return [line for line in mounts if "/ocirt-podman-" in line]

    before = ours()
    yield
    assert ours() == before, "podman's mounts left on the host"


@pytest.fixture(scope="module")
def podman(busybox_image: dict[str, Path]) -> Iterator[PodmanSession]:  # noqa: F811
    with PodmanSession(busybox_image["tar"]) as session:
        yield session


def wait_until(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def check_cgroup(pid: int, cid: str) -> str:
    """The container's v1 cgroup path, asserting it is the one podman asked for."""
    path = harness.v1_cgroup_of(pid, "memory")
    assert path.startswith(f"{CGROUP_PARENT}/"), f"container {cid} in {path}, not below {CGROUP_PARENT}"
    assert cid in path
    return path


@pytest.mark.parametrize("runtime", harness.runtime_params())
def test_run_output_and_exit_codes(podman: PodmanSession, runtime: str) -> None:
    result = harness.ok(podman.podman("run", "--rm", IMAGE, "echo", "hi", runtime=runtime))
    assert result.stdout == "hi\n"
    assert podman.podman("run", "--rm", IMAGE, "true", runtime=runtime).returncode == 0
    assert podman.podman("run", "--rm", IMAGE, "sh", "-c", "exit 42", runtime=runtime).returncode == 42

    missing = podman.podman("run", "--rm", IMAGE, "/no/such/binary", runtime=runtime)
    assert missing.returncode == 127, missing.stderr
    assert "no such file or directory" in missing.stderr.lower()

    not_executable = podman.podman("run", "--rm", IMAGE, "/etc/passwd", runtime=runtime)
    assert not_executable.returncode == 126, not_executable.stderr
    assert "permission denied" in not_executable.stderr.lower()

    # --rm removed every one of them, the failed ones too.
    assert podman.out("ps", "-aq", runtime=runtime) == ""


@pytest.mark.parametrize("runtime", harness.runtime_params())
def test_exec(podman: PodmanSession, runtime: str) -> None:
    cid = podman.out("run", "-d", IMAGE, "sleep", "600", runtime=runtime)
    try:
        assert podman.status(cid) == "running"
        assert podman.out("exec", cid, "echo", "from-exec", runtime=runtime) == "from-exec"
        assert podman.podman("exec", cid, "sh", "-c", "exit 3", runtime=runtime).returncode == 3
        assert podman.podman("exec", cid, "/no/such/binary", runtime=runtime).returncode == 127

        # The exec joins the container: same pid namespace (its pid 1 is sleep).
        assert podman.out("exec", cid, "cat", "/proc/1/comm", runtime=runtime) == "sleep"

        # -i: stdin piped through conmon to the process.
        piped = harness.ok(
            podman.podman("exec", "-i", cid, "cat", runtime=runtime, input="line one\nline two\n")
        )
        assert piped.stdout == "line one\nline two\n"

        # -t: podman passes --tty --console-socket to the runtime; the process gets a pts.
        code, output = podman.podman_tty("exec", "-t", cid, "tty", runtime=runtime)
        assert code == 0, output
        assert re.search(r"^/dev/pts/\d+\r?$", output, re.MULTILINE), output
        code, output = podman.podman_tty("exec", "-t", cid, "sh", "-c", "stty size; exit 5", runtime=runtime)
        assert code == 5, output
    finally:
        harness.ok(podman.podman("rm", "-f", "-t", "0", cid, runtime=runtime))
    assert podman.podman("inspect", cid, runtime=runtime).returncode != 0


@pytest.mark.parametrize("runtime", harness.runtime_params())
def test_lifecycle(podman: PodmanSession, runtime: str) -> None:
    """logs, ps, top, pause/unpause, update, kill -s, restart, rm -f on one container."""
    cid = podman.out("run", "-d", IMAGE, "sh", "-c", SERVICE, runtime=runtime)
    try:
        assert podman.out("inspect", "-f", "{{.OCIRuntime}}", cid) == runtime
        pid = podman.pid(cid)
        assert pid > 0
        check_cgroup(pid, cid)
        assert wait_until(lambda: "started" in podman.out("logs", cid, runtime=runtime))

        listed = podman.out("ps", "--no-trunc", "--format", "{{.ID}} {{.Status}}", runtime=runtime)
        assert re.search(rf"^{cid} Up", listed, re.MULTILINE), listed
        top = podman.out("top", cid, "pid", "args", runtime=runtime)
        assert "while :; do sleep 0.1; done" in top, top

        # pause / unpause: podman's state and the freezer of the container's cgroup.
        freezer = harness.v1_cgroup_of(pid, "freezer")
        harness.ok(podman.podman("pause", cid, runtime=runtime))
        assert podman.status(cid) == "paused"
        assert harness.cgroup_file(freezer, "freezer", "freezer.state") == "FROZEN"
        harness.ok(podman.podman("unpause", cid, runtime=runtime))
        assert podman.status(cid) == "running"
        assert harness.cgroup_file(freezer, "freezer", "freezer.state") == "THAWED"

        # update: new limits in the container's v1 cgroup files.
        harness.ok(podman.podman("update", "--memory", "64m", "--cpu-shares", "512", cid, runtime=runtime))
        memory = harness.v1_cgroup_of(pid, "memory")
        assert harness.cgroup_file(memory, "memory", "memory.limit_in_bytes") == str(64 * 1024 * 1024)
        assert harness.cgroup_file(harness.v1_cgroup_of(pid, "cpu"), "cpu", "cpu.shares") == "512"

        # kill -s USR1 reaches the container's trap.
        harness.ok(podman.podman("kill", "-s", "USR1", cid, runtime=runtime))
        assert wait_until(lambda: "got-usr1" in podman.out("logs", cid, runtime=runtime)), podman.out(
            "logs", cid
        )
        assert podman.status(cid) == "running"

        # restart: stopped (TERM -> exit 0) and started again as a new process.
        harness.ok(podman.podman("restart", "-t", "5", cid, runtime=runtime))
        assert podman.status(cid) == "running"
        new_pid = podman.pid(cid)
        assert new_pid > 0
        assert new_pid != pid
        assert Path(f"/proc/{new_pid}").exists()
        check_cgroup(new_pid, cid)
        assert podman.out("exec", cid, "echo", "after-restart", runtime=runtime) == "after-restart"
    finally:
        harness.ok(podman.podman("rm", "-f", "-t", "0", cid, runtime=runtime))
    assert podman.podman("inspect", cid, runtime=runtime).returncode != 0
    assert wait_until(lambda: not Path(f"/proc/{new_pid}").exists(), timeout=5)


@pytest.mark.parametrize("runtime", harness.runtime_params())
def test_stop(podman: PodmanSession, runtime: str) -> None:
    """stop sends SIGTERM, then SIGKILL once the timeout passes."""
    polite = podman.out(
        "run", "-d", IMAGE, "sh", "-c", 'trap "exit 7" TERM; while :; do sleep 0.1; done', runtime=runtime
    )
    stubborn = podman.out(
        "run", "-d", IMAGE, "sh", "-c", 'trap "" TERM; while :; do sleep 0.1; done', runtime=runtime
    )
    try:
        stubborn_pid = podman.pid(stubborn)

        start = time.monotonic()
        harness.ok(podman.podman("stop", "-t", "10", polite, runtime=runtime))
        assert time.monotonic() - start < 5, "a container that exits on TERM waited for the timeout"
        assert podman.status(polite) == "exited"
        assert podman.out("inspect", "-f", "{{.State.ExitCode}}", polite) == "7"

        start = time.monotonic()
        harness.ok(podman.podman("stop", "-t", "1", stubborn, runtime=runtime))
        elapsed = time.monotonic() - start
        assert 1 <= elapsed < 10, f"stop -t 1 of a container ignoring TERM took {elapsed:.1f} s"
        assert podman.status(stubborn) == "exited"
        assert podman.out("inspect", "-f", "{{.State.ExitCode}}", stubborn) == "137"
        assert wait_until(lambda: not Path(f"/proc/{stubborn_pid}").exists(), timeout=5)

        # A stopped container starts again.
        harness.ok(podman.podman("start", polite, runtime=runtime))
        assert podman.status(polite) == "running"
    finally:
        harness.ok(podman.podman("rm", "-f", "-t", "0", polite, stubborn, runtime=runtime))
    assert podman.out("ps", "-aq", runtime=runtime) == ""


@pytest.mark.parametrize("runtime", harness.runtime_params())
def test_checkpoint_and_restore(podman: PodmanSession, runtime: str) -> None:
    """checkpoint stops the container into an image, restore brings its processes back.

    conmon gives the container the host's /dev/null as stdin, a file on a mount
    outside the container: the runtime must dump and restore it all the same.
    The log goes on from where it stopped: the counter is not restarted.
    """
    cid = podman.out("run", "-d", IMAGE, "sh", "-c", COUNTER, runtime=runtime)

    def counted() -> list[int]:
        return [int(n) for n in podman.out("logs", cid, runtime=runtime).split()]

    try:
        pid = podman.pid(cid)
        assert wait_until(lambda: len(counted()) >= 3)
        harness.ok(podman.podman("container", "checkpoint", cid, runtime=runtime))
        assert podman.out("inspect", "-f", "{{.State.Status}} {{.State.Checkpointed}}", cid) == "exited true"
        assert wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=5)
        before = counted()

        harness.ok(podman.podman("container", "restore", cid, runtime=runtime))
        assert podman.status(cid) == "running"
        new_pid = podman.pid(cid)
        assert new_pid > 0 and new_pid != pid
        assert wait_until(lambda: len(counted()) >= len(before) + 3)
        after = counted()
        assert after == list(range(len(after))), f"the counter did not go on from {before[-1]}: {after}"
    finally:
        harness.ok(podman.podman("rm", "-f", "-t", "0", cid, runtime=runtime))
