"""Checkpoint and restore with CRIU: real containers, real criu, side by side with runc.

criu comes from ``scripts/install-criu.sh`` (criu 4.2 from Debian unstable, or
trixie's 4.1.1, unpacked into /opt/ocirt-criu: Debian 12's fails on this kernel); the fixture runs it if
needed, as ``scripts/setup.sh`` does. A checkpointed container's stdio must be
pipes, so containers here are started with pipes the test holds.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import OCIRT, REPO, Bundle, Ocirt, unique_id, wait_for

CRIU = "/opt/ocirt-criu/bin/criu"
CGROUP_PREFIX = "/ocirt-test"
COUNTER = "i=0; while true; do i=$((i+1)); echo $i; echo $i > /data/count; sleep 0.05; done"


@pytest.fixture(scope="module")
def criu() -> str:
    """A working criu: the project's private install (made here if missing)."""
    done = subprocess.run([str(REPO / "scripts" / "install-criu.sh")], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"scripts/install-criu.sh failed: {done.stderr}")
    reason = subprocess.run([CRIU, "check"], capture_output=True, text=True)
    if reason.returncode != 0:
        pytest.skip(f"criu check fails on this kernel: {reason.stdout}{reason.stderr}")
    return CRIU


class Piped:
    """A container started detached with stdio pipes whose far ends the test holds."""

    def __init__(self, cmd: list[str], cwd: Path | None = None) -> None:
        stdin_r, self.stdin = os.pipe()
        self.stdout, stdout_w = os.pipe()
        self.stderr_r, stderr_w = os.pipe()
        started = time.monotonic()
        self.result = subprocess.run(
            cmd, stdin=stdin_r, stdout=stdout_w, stderr=stderr_w, cwd=cwd, timeout=60
        )
        self.seconds = time.monotonic() - started
        for fd in (stdin_r, stdout_w, stderr_w):
            os.close(fd)
        os.set_blocking(self.stdout, False)
        os.set_blocking(self.stderr_r, False)
        self.buffer = b""

    def error(self) -> str:
        try:
            return os.read(self.stderr_r, 65536).decode()
        except BlockingIOError:
            return ""

    def lines(self, at_least: int = 1, timeout: float = 10.0) -> list[str]:
        """Every line the container printed so far (waiting for ``at_least`` new ones)."""
        deadline = time.monotonic() + timeout
        wanted = self.buffer.count(b"\n") + at_least
        while time.monotonic() < deadline:
            select.select([self.stdout], [], [], 0.05)
            try:
                chunk = os.read(self.stdout, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                break
            self.buffer += chunk
            if self.buffer.count(b"\n") >= wanted:
                break
        return self.buffer.decode().splitlines()

    def rest(self, timeout: float = 10.0) -> list[str]:
        """Lines until end-of-file (the container's processes are gone)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            select.select([self.stdout], [], [], 0.05)
            try:
                chunk = os.read(self.stdout, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                return self.buffer.decode().splitlines()
            self.buffer += chunk
        raise AssertionError("the container's stdout stayed open")

    def close(self) -> None:
        for fd in (self.stdin, self.stdout, self.stderr_r):
            os.close(fd)


def ocirt_cmd(ocirt: Ocirt, *args: str) -> list[str]:
    return [OCIRT, "--root", str(ocirt.root), "--log", str(ocirt.log), "--log-format", "json", *args]


def cgroup_dir(controller: str, container_id: str) -> Path:
    return Path("/sys/fs/cgroup") / controller / CGROUP_PREFIX.lstrip("/") / container_id


@pytest.fixture
def counting(ocirt: Ocirt, bundle: Bundle, tmp_path: Path, cid: str) -> Iterator[Bundle]:
    """A busybox counter printing to stdout and writing /data/count (a bind mount)."""
    data = tmp_path / "data"
    data.mkdir()
    bundle.config["process"]["args"] = ["sh", "-c", COUNTER]
    bundle.config["mounts"].append(
        {"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind", "rw"]}
    )
    bundle.config["linux"]["cgroupsPath"] = f"{CGROUP_PREFIX}/{cid}"
    bundle.config["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
    bundle.write()
    yield bundle
    for container_id in ocirt.ids():  # a failed test's containers, before looking for leftovers
        ocirt("delete", "--force", container_id)
    for controller in ("memory", "pids", "cpu"):
        assert not cgroup_dir(controller, cid).exists(), "cgroup left behind"


def start(ocirt: Ocirt, bundle: Bundle, container_id: str) -> Piped:
    piped = Piped(ocirt_cmd(ocirt, "run", "-d", "--bundle", str(bundle.path), container_id))
    assert piped.result.returncode == 0, piped.error()
    return piped


def numbers(lines: list[str]) -> list[int]:
    return [int(line) for line in lines if line.strip().isdigit()]


def assert_continues(before: list[int], after: list[int]) -> None:
    """The restored counter goes on from the dumped one: no restart, no gap."""
    assert after, "the restored container printed nothing"
    assert after[0] == before[-1] + 1, (before[-3:], after[:3])
    assert after == list(range(after[0], after[0] + len(after)))


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] in "ZX"
    except OSError:
        return True


def test_checkpoint_then_restore_continues_the_counter(
    ocirt: Ocirt, counting: Bundle, cid: str, criu: str, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    first = start(ocirt, counting, cid)
    first.lines(5)
    old_pid = ocirt.state(cid)["pid"]
    started = time.monotonic()
    ocirt("checkpoint", "--image-path", str(images), cid, check=True)
    dump_seconds = time.monotonic() - started
    assert wait_for(lambda: gone(old_pid)), "the checkpointed process still runs"
    assert cid not in ocirt.ids(), "checkpoint leaves the container deleted, as runc"
    assert not cgroup_dir("memory", cid).exists()
    before = numbers(first.rest())
    first.close()
    assert (images / "inventory.img").exists() and (images / "descriptors.json").exists()

    second = Piped(ocirt_cmd(ocirt, "restore", "-d", "--image-path", str(images), "--bundle",
                             str(counting.path), cid))  # fmt: skip
    assert second.result.returncode == 0, second.error()
    state = ocirt.state(cid)
    assert state["status"] == "running" and state["pid"] != old_pid
    assert_continues(before, numbers(second.lines(5)))
    pid = state["pid"]
    # In its cgroup, with its memory limit (made by the cgroups plugin before criu ran).
    memory = cgroup_dir("memory", cid)
    assert (memory / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    assert str(pid) in (memory / "cgroup.procs").read_text().split()
    assert f"memory:{CGROUP_PREFIX}/{cid}" in Path(f"/proc/{pid}/cgroup").read_text()

    # The bind mount works, exec joins it, kill and delete end it.
    def count() -> int:  # the counter truncates, then writes: an empty read is a moment
        shown = ocirt("exec", cid, "cat", "/data/count", check=True).stdout.strip()
        return int(shown) if shown.isdigit() else 0

    assert wait_for(lambda: count() > before[-1])
    ocirt("kill", cid, "KILL", check=True)
    assert wait_for(lambda: ocirt.state(cid)["status"] == "stopped")
    ocirt("delete", cid, check=True)
    second.close()
    print(
        f"\nocirt: run -d {first.seconds:.2f}s, checkpoint {dump_seconds:.2f}s, restore {second.seconds:.2f}s"
    )


def test_leave_running_and_restore_under_a_new_id(
    ocirt: Ocirt, counting: Bundle, cid: str, criu: str, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    first = start(ocirt, counting, cid)
    first.lines(3)
    pid = ocirt.state(cid)["pid"]
    # Go-style single-dash flags, as containerd sends them.
    ocirt("checkpoint", "-leave-running", "-image-path", str(images), cid, check=True)
    assert ocirt.state(cid) == {**ocirt.state(cid), "status": "running", "pid": pid}
    assert len(first.lines(3)) > 0  # still counting
    other = unique_id("restored")
    counting.config["linux"]["cgroupsPath"] = f"{CGROUP_PREFIX}/{other}"
    counting.write()
    second = Piped(ocirt_cmd(ocirt, "restore", "-detach", "-no-subreaper", "-image-path", str(images),
                             "-pid-file", str(tmp_path / "pid"), other), cwd=counting.path)  # fmt: skip
    try:
        assert second.result.returncode == 0, second.error()
        state = ocirt.state(other)
        assert state["status"] == "running"
        assert (tmp_path / "pid").read_text() == str(state["pid"])
        assert numbers(second.lines(3))
        assert str(state["pid"]) in (cgroup_dir("memory", other) / "cgroup.procs").read_text().split()
        assert ocirt.state(cid)["status"] == "running"
    finally:
        for container_id in (cid, other):
            ocirt("delete", "--force", container_id, check=True)
        first.close()
        second.close()
    assert not cgroup_dir("memory", other).exists()


def test_tmpfs_and_bind_mounts(ocirt: Ocirt, bundle: Bundle, cid: str, criu: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in").write_text("from the host\n")
    bundle.config["process"]["args"] = [
        "sh", "-c", "echo $$ > /scratch/pid; cat /data/in > /scratch/copy; echo ready; "
        "while true; do sleep 0.05; done",
    ]  # fmt: skip
    bundle.config["mounts"] += [
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
        {"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind", "ro"]},
    ]
    bundle.write()
    images = tmp_path / "images"
    first = start(ocirt, bundle, cid)
    assert first.lines(1) == ["ready"]
    ocirt("checkpoint", "--image-path", str(images), cid, check=True)
    first.rest()
    first.close()
    second = Piped(ocirt_cmd(ocirt, "restore", "-d", "--image-path", str(images), cid), cwd=bundle.path)
    try:
        assert second.result.returncode == 0, second.error()
        # The tmpfs came back with its content; the bind mount is the host directory again.
        assert ocirt("exec", cid, "cat", "/scratch/copy", check=True).stdout == "from the host\n"
        (data / "later").write_text("new\n")
        assert ocirt("exec", cid, "cat", "/data/later", check=True).stdout == "new\n"
        mounts = ocirt("exec", cid, "cat", "/proc/mounts", check=True).stdout
        assert any(" /scratch tmpfs " in line for line in mounts.splitlines())
        assert any(" /data " in line and " ro," in line for line in mounts.splitlines())
    finally:
        ocirt("delete", "--force", cid, check=True)
        second.close()


def test_established_tcp_connection_survives(
    ocirt: Ocirt, bundle: Bundle, cid: str, criu: str, tmp_path: Path
) -> None:
    """A server and a client in the container's network namespace, over loopback."""
    bundle.config["process"]["args"] = [
        "sh", "-c", "sleep 100000 | nc -l -p 7000 > /work/received & sleep 0.3; "
        "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done | nc 127.0.0.1 7000",
    ]  # fmt: skip
    bundle.config["mounts"].append({"destination": "/work", "type": "tmpfs", "source": "tmpfs"})
    bundle.write()
    images = tmp_path / "images"
    first = start(ocirt, bundle, cid)

    def received() -> list[int]:
        out = ocirt("exec", cid, "cat", "/work/received").stdout
        return numbers(out.splitlines())

    assert wait_for(lambda: len(received()) > 5)
    plain = ocirt("checkpoint", "--image-path", str(tmp_path / "refused"), "--leave-running", cid)
    assert plain.returncode != 0 and len(plain.stderr.splitlines()) == 1, plain.stderr
    assert "tcp" in plain.stderr.lower() or "established" in plain.stderr.lower(), plain.stderr
    dumped = ocirt("checkpoint", "--tcp-established", "--image-path", str(images), cid)
    if dumped.returncode != 0 and "Can't get 1:16 opt" in dumped.stderr:
        assert ocirt.state(cid)["status"] == "running", "a failed checkpoint must leave the container alone"
        ocirt("delete", "--force", cid, check=True)
        first.close()
        reason = (
            "criu < 4.2 cannot dump inet sockets on kernels >= 6.16 (SO_PASSCRED is refused on "
            "them; fixed in criu 4.2, checkpoint-restore/criu#2705): " + dumped.stderr.strip()
        )
        print("\n" + reason)
        pytest.skip(reason)
    assert dumped.returncode == 0, dumped.stderr
    first.close()
    second = Piped(ocirt_cmd(ocirt, "restore", "-d", "--tcp-established", "--image-path", str(images), cid),
                   cwd=bundle.path)  # fmt: skip
    try:
        assert second.result.returncode == 0, second.error()
        count = len(received())
        assert wait_for(lambda: len(received()) > count + 5), "the connection did not carry on"
        got = received()
        assert got == list(range(1, len(got) + 1)), "bytes lost or repeated across the checkpoint"
    finally:
        ocirt("delete", "--force", cid, check=True)
        second.close()


# --------------------------------------------------------------------- failures


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def assert_nothing_left(ocirt: Ocirt, container_id: str) -> None:
    assert container_id not in ocirt.ids(), "state directory left behind"
    for controller in ("memory", "pids", "cpu", "freezer"):
        assert not cgroup_dir(controller, container_id).exists(), f"{controller} cgroup left behind"
    with open("/proc/self/mountinfo") as f:
        assert "criu-root" not in f.read()


def test_restore_failures_leave_nothing(
    ocirt: Ocirt, counting: Bundle, cid: str, criu: str, tmp_path: Path
) -> None:
    missing = ocirt(
        "restore", "-d", "--image-path", str(tmp_path / "nowhere"), "--bundle", str(counting.path), cid
    )
    assert_one_line_error(missing, "nowhere", "no such file or directory")
    assert_nothing_left(ocirt, cid)

    images = tmp_path / "images"
    first = start(ocirt, counting, cid)
    first.lines(2)
    ocirt("checkpoint", "--leave-running", "--image-path", str(images), cid, check=True)
    taken = ocirt("restore", "-d", "--image-path", str(images), "--bundle", str(counting.path), cid)
    assert_one_line_error(taken, "already exists")
    assert ocirt.state(cid)["status"] == "running"

    other = unique_id("broken")
    broken = Piped([OCIRT, "--root", str(ocirt.root), "--criu", "/bin/false", "restore", "-d", "--image-path",
                    str(images), "--bundle", str(counting.path), other])  # fmt: skip
    assert broken.result.returncode != 0
    assert len(broken.error().splitlines()) == 1
    broken.close()
    assert_nothing_left(ocirt, other)
    ocirt("delete", "--force", cid, check=True)
    first.close()


def test_checkpoint_failures(ocirt: Ocirt, counting: Bundle, cid: str, criu: str, tmp_path: Path) -> None:
    first = start(ocirt, counting, cid)
    try:
        broken = subprocess.run(
            [OCIRT, "--root", str(ocirt.root), "--criu", "/bin/false", "checkpoint", "--image-path",
             str(tmp_path / "images"), cid], capture_output=True, text=True,
        )  # fmt: skip
        assert_one_line_error(broken, "/bin/false", "does not work")
        missing = subprocess.run(
            [OCIRT, "--root", str(ocirt.root), "--criu", str(tmp_path / "no-criu"), "checkpoint", cid],
            capture_output=True, text=True,
        )  # fmt: skip
        assert_one_line_error(missing, "no-criu", "install-criu.sh")
        assert ocirt.state(cid)["status"] == "running", "a failed checkpoint must leave the container alone"
        unknown = ocirt("checkpoint", "no-such-container")
        assert_one_line_error(unknown, "does not exist")
        mode = ocirt("checkpoint", "--manage-cgroups-mode", "bogus", cid)
        assert_one_line_error(mode, "--manage-cgroups-mode")
    finally:
        ocirt("delete", "--force", cid, check=True)
        first.close()


def test_pre_dump_needs_soft_dirty_tracking(
    ocirt: Ocirt, counting: Bundle, cid: str, criu: str, tmp_path: Path
) -> None:
    first = start(ocirt, counting, cid)
    try:
        tracked = subprocess.run([criu, "check", "--feature", "mem_dirty_track"], capture_output=True)
        result = ocirt("checkpoint", "--pre-dump", "--image-path", str(tmp_path / "pre"), cid)
        if tracked.returncode == 0:
            assert result.returncode == 0, result.stderr
        else:
            print("\nthis kernel has no soft-dirty tracking: pre-dump must fail clearly, and does")
            assert_one_line_error(result, "soft-dirty", "--pre-dump")
        assert ocirt.state(cid)["status"] == "running"
    finally:
        ocirt("delete", "--force", cid, check=True)
        first.close()


def test_features_reports_checkpoint(ocirt: Ocirt, criu: str) -> None:
    features = json.loads(ocirt("features", check=True).stdout)
    assert features["annotations"]["org.ocirt.checkpoint"].startswith("supported (criu 4.")


# --------------------------------------------------------------------- runc, side by side


def test_same_bundle_with_runc(ocirt: Ocirt, counting: Bundle, cid: str, criu: str, tmp_path: Path) -> None:
    """runc checkpoint/restore on the same bundle: both continue the counter; times compared."""
    if shutil.which("runc") is None:
        pytest.fail("runc is missing: scripts/setup.sh installs it")
    times: dict[str, list[float]] = {}
    for runtime in ("runc", "ocirt"):
        images = tmp_path / f"images-{runtime}"
        run_id = f"{cid}-{runtime}"
        counting.config["linux"]["cgroupsPath"] = f"{CGROUP_PREFIX}/{run_id}"
        counting.write()
        if runtime == "runc":
            base = ["runc", "--root", str(tmp_path / "runc-state"), "--criu", criu]
        else:
            base = ocirt_cmd(ocirt)
        first = Piped([*base, "run", "-d", "--bundle", str(counting.path), run_id])
        assert first.result.returncode == 0, first.error()
        first.lines(5)
        started = time.monotonic()
        dumped = subprocess.run([*base, "checkpoint", "--image-path", str(images), run_id],
                                capture_output=True, text=True, cwd=counting.path)  # fmt: skip
        dump_seconds = time.monotonic() - started
        assert dumped.returncode == 0, (runtime, dumped.stderr)
        before = numbers(first.rest())
        first.close()
        second = Piped(
            [*base, "restore", "-d", "--image-path", str(images), "--bundle", str(counting.path), run_id]
        )
        try:
            assert second.result.returncode == 0, (runtime, second.error())
            assert_continues(before, numbers(second.lines(5)))
            times[runtime] = [dump_seconds, second.seconds]
        finally:
            subprocess.run([*base, "delete", "--force", run_id], capture_output=True)
            second.close()
        assert not cgroup_dir("memory", run_id).exists()
    # runc leaves the empty parent (/ocirt-test) in every hierarchy, systemd's and
    # the unified one too; ocirt removes what it made. Empty ones go (busy ones stay).
    for parent in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PREFIX.lstrip('/')}"):
        try:
            parent.rmdir()
        except OSError:
            pass
    print(
        "\ncheckpoint / restore seconds: "
        + ", ".join(f"{name} {dump:.2f} / {restore:.2f}" for name, (dump, restore) in times.items())
    )


def test_pre_dump_then_dump_continues_the_counter(
    ocirt: Ocirt, counting: Bundle, cid: str, criu: str, tmp_path: Path
) -> None:
    """Iterative migration: a pre-dump (memory only, the container keeps running), then a
    dump against it (--parent-path), then a restore. Needs soft-dirty tracking, which this
    project's host lacks; tests/test_v2vm.py runs it in the cgroup v2 guest, which has it."""
    tracked = subprocess.run([criu, "check", "--feature", "mem_dirty_track"], capture_output=True)
    if tracked.returncode != 0:
        reason = "this kernel has no soft-dirty memory tracking (criu check --feature mem_dirty_track)"
        print("\n" + reason)
        pytest.skip(reason)
    pre, final = tmp_path / "pre", tmp_path / "final"
    first = start(ocirt, counting, cid)
    first.lines(3)
    ocirt("checkpoint", "--pre-dump", "--image-path", str(pre), cid, check=True)
    assert ocirt.state(cid)["status"] == "running"  # a pre-dump leaves it running
    assert (pre / "inventory.img").exists()
    first.lines(2)
    ocirt("checkpoint", "--parent-path", "../pre", "--image-path", str(final), cid, check=True)
    assert (final / "parent").resolve() == pre.resolve()
    before = numbers(first.rest())
    first.close()
    second = Piped(ocirt_cmd(ocirt, "restore", "-d", "--image-path", str(final), "--bundle",
                             str(counting.path), cid))  # fmt: skip
    try:
        assert second.result.returncode == 0, second.error()
        assert ocirt.state(cid)["status"] == "running"
        assert_continues(before, numbers(second.lines(3)))
    finally:
        ocirt("delete", "--force", cid)
        second.close()
