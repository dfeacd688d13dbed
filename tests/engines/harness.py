"""What the engine tests share: the runtimes, a busybox image, daemons run by hand, cleanup.

The engines (podman with conmon, containerd, docker) are Debian packages that
``scripts/setup.sh`` installs. No registry is reachable, so the image is built
here from the same busybox rootfs as the other tests, as a plain rootfs tar
(``podman import``, ``docker import``) and as an OCI archive (``ctr image
import``). There is no systemd: daemons are started by the tests with private
configuration under one short directory and stopped by pid.

Every engine runs each cycle once with ocirt and once with runc, Debian's
reference runtime: a step that fails with runc is the engine's or the
machine's, one that fails only with ocirt is ocirt's.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import tarfile
import tempfile
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
OCIRT = str(REPO / ".venv" / "bin" / "ocirt")
RUNC = shutil.which("runc") or "/usr/sbin/runc"

#: The runtimes every cycle runs with: ocirt, and runc as the reference.
RUNTIMES = {"ocirt": OCIRT, "runc": RUNC}

#: Every cgroup the engines make for the tests' containers lies below this name
#: (podman's --cgroup-parent, dockerd's cgroup-parent, ctr's --cgroup).
CGROUP_PREFIX = "ocirt-engines"

CGROUP_ROOT = Path("/sys/fs/cgroup")

IMAGE = "localhost/ocirt-busybox:latest"

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def runtime_params() -> list[object]:
    """``pytest.mark.parametrize`` values: each runtime by name."""
    return [pytest.param(name, id=name) for name in RUNTIMES]


def need(*binaries: str) -> None:
    """Fail (not skip) when an engine binary is missing: setup.sh installs them all."""
    missing = [b for b in binaries if shutil.which(b) is None and not os.path.exists(b)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run scripts/setup.sh (it installs the engines)")


def workdir(name: str) -> Path:
    """A short private directory (unix socket paths hold 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix=f"ocirt-{name}-", dir="/tmp"))
    path.chmod(0o711)
    return path


# ---------------------------------------------------------------------- the image


def busybox_rootfs(dest: Path) -> Path:
    """Debian's busybox-static as a rootfs, by the script the other tests use."""
    subprocess.run(
        [str(REPO / "scripts" / "make-busybox-bundle.sh"), str(dest), "--no-config"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return dest / "rootfs"


def rootfs_tar(rootfs: Path, out: Path) -> Path:
    """The rootfs as a plain tar, as ``podman import`` and ``docker import`` take it."""
    with tarfile.open(out, "w") as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name)
    return out


def oci_archive(rootfs: Path, out: Path, name: str = IMAGE) -> Path:
    """The rootfs as a one-layer OCI image archive, as ``ctr image import`` takes it."""
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name)
    diff_id = "sha256:" + hashlib.sha256(layer_tar.getvalue()).hexdigest()
    layer = gzip.compress(layer_tar.getvalue(), mtime=0)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media_type: str) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    config_desc = blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
    layer_desc = blob(layer, "application/vnd.oci.image.layer.v1.tar+gzip")
    manifest = {"schemaVersion": 2, "config": config_desc, "layers": [layer_desc]}
    manifest_desc = blob(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    manifest_desc["annotations"] = {
        "io.containerd.image.name": name,
        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
    }
    index = {"schemaVersion": 2, "manifests": [manifest_desc]}
    with tarfile.open(out, "w") as tar:

        def add(path: str, data: bytes) -> None:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            add(f"blobs/sha256/{digest}", data)
    return out


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The busybox image in both forms: ``{"tar": rootfs tar, "oci": OCI archive}``."""
    base = tmp_path_factory.mktemp("engine-image")
    rootfs = busybox_rootfs(base / "bundle")
    return {"tar": rootfs_tar(rootfs, base / "rootfs.tar"), "oci": oci_archive(rootfs, base / "oci.tar")}


# ---------------------------------------------------------------------- daemons


class Daemon:
    """A daemon started by a test in its own session; stopped by its pid, never by name."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )

    def wait_for(self, ready: Callable[[], bool], timeout: float = 60) -> None:
        """Wait until ``ready()``; fail with the daemon's log if it exits or takes too long."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                pytest.fail(f"{self.argv[0]} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.argv[0]} not ready after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; reaped."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------- cleanup


def kill_pids(pids: list[int]) -> None:
    """SIGKILL processes by pid (those a test or its engine started)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def processes_under(path: str) -> list[int]:
    """Pids whose command line mentions ``path`` (a test's private directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if path.encode() in cmdline:
            found.append(int(entry.name))
    return found


def mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == path or point.startswith(path.rstrip("/") + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount_under(path: str) -> None:
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL, check=False)


def engine_cgroups(below: str = "") -> list[Path]:
    """Cgroup directories below CGROUP_PREFIX (or CGROUP_PREFIX/``below``), deepest first."""
    found: list[Path] = []
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / CGROUP_PREFIX / below if below else hierarchy / CGROUP_PREFIX
        if top.is_dir():
            found.extend(p for p in top.rglob("*") if p.is_dir())
            found.append(top)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_engine_cgroups(timeout: float = 10, below: str = "") -> list[Path]:
    """Remove the engines' test cgroups (their processes are gone by then); those left.

    With ``below``, only CGROUP_PREFIX/``below`` (one engine's part), so an engine
    tested at the same time keeps its cgroups; CGROUP_PREFIX itself goes once empty.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for path in engine_cgroups(below):
            try:
                path.rmdir()
            except OSError:
                left.append(path)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if below:
        for hierarchy in CGROUP_ROOT.iterdir():
            with contextlib.suppress(OSError):
                (hierarchy / CGROUP_PREFIX).rmdir()
    return left


def remove_tree(path: Path) -> None:
    """Unmount anything below ``path``, then remove it (staying on its file system)."""
    unmount_under(str(path))
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


@contextlib.contextmanager
def cleanup_after(path: Path, cgroups_below: str = "") -> Iterator[None]:
    """Leave nothing of an engine session behind: processes, mounts, cgroups, files.

    Processes are found by the session's private directory in their command
    line (conmon, shims, daemons), so only what the test started is killed.
    ``cgroups_below`` limits the cgroup cleanup to CGROUP_PREFIX/``cgroups_below``.
    """
    try:
        yield
    finally:
        kill_pids(processes_under(str(path)))
        left = remove_engine_cgroups(below=cgroups_below)
        remove_tree(path)
        assert not mounts_under(str(path)), f"mounts left under {path}"
        assert not left, f"cgroups left: {left}"


def run(argv: list[str], timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run an engine's client command, capturing its output as text."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kw)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """The result, asserting success with the command's stderr in the message."""
    assert result.returncode == 0, f"{result.args}: exit {result.returncode}\n{result.stderr}{result.stdout}"
    return result


def cgroup_file(container_cgroup: str, controller: str, name: str) -> str:
    """A control file of a container's v1 cgroup (``container_cgroup`` from /proc/PID/cgroup)."""
    return (CGROUP_ROOT / controller / container_cgroup.lstrip("/") / name).read_text().strip()


def v1_cgroup_of(pid: int, controller: str) -> str:
    """The path of ``pid`` in one v1 hierarchy, from /proc/PID/cgroup."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    raise AssertionError(f"pid {pid} has no {controller} cgroup")


def run_in_pty(
    argv: list[str],
    env: dict[str, str] | None = None,
    timeout: float = 30,
    size: tuple[int, int] | None = None,
) -> tuple[int, str]:
    """Run ``argv`` on a new pseudo-terminal, its controlling terminal, as a user at a
    shell would (``exec -t`` wants one): (exit code, what it wrote). Carriage returns
    are dropped: the container's terminal and this one both turn ``\n`` into ``\r\n``.

    ``size`` (rows, columns) is set on the terminal first: engines pass it on
    to the container's console.
    """
    master, slave = os.openpty()
    if size is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))

    def controlling_tty() -> None:  # in the child: a session whose terminal is the pty
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True, preexec_fn=controlling_tty
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every holder of the slave side closed it
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode(errors="replace").replace("\r", "")
