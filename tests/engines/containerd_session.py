"""A private containerd for the engine tests and benchmarks, driven through ``ctr``.

containerd 1.6 (Debian's package) runs with its own root, state, sockets and
plugin directory under one short private directory; the CRI plugin is
disabled (it wants CNI and its own cgroup handling, none of which ``ctr``
needs). Every container gets an absolute cgroup below ``CGROUP_PREFIX`` and its
runtime state in a private ``--runc-root``, so nothing lands in the host's
``/run/containerd``.

The shim (``containerd-shim-runc-v2``) is what calls the runtime: it passes
``--root``, ``--log <bundle>/log.json --log-format json`` and, for terminals,
``--console-socket``. :meth:`ContainerdSession.shim_log` reads that log.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import harness

NAMESPACE = "ocirt-test"

#: The containers' cgroups are ``CGROUP_PREFIX/containerd/ID``; cleanup touches only these.
CGROUP_PARENT = "containerd"

#: Plugins the tests do not need, disabled so the daemon starts quickly and cleanly here.
DISABLED_PLUGINS = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
]

CONFIG = """\
version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = {disabled}

[grpc]
  address = "{d}/c.sock"

[ttrpc]
  address = "{d}/c.sock.ttrpc"

[debug]
  level = "{level}"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d}/opt"
"""


class ContainerdSession:
    """A containerd daemon of one's own, with the busybox image imported.

    ``with ContainerdSession(oci_archive) as ctd: ctd.run("ocirt", "id1", "echo", "hi")``.
    On exit every task and container is removed, the daemon stopped by its pid,
    leftover shims killed by pid and the private directory removed.
    """

    def __init__(self, archive: Path, debug: bool = False) -> None:
        self.archive = archive
        self.debug = debug
        self.dir = Path()
        self.sock = ""
        self.daemon: harness.Daemon | None = None
        self._cleanup: contextlib.ExitStack | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> ContainerdSession:
        harness.need("containerd", "ctr", "containerd-shim-runc-v2")
        self.dir = harness.workdir("ctd")
        stack = contextlib.ExitStack()
        stack.enter_context(harness.cleanup_after(self.dir, cgroups_below=CGROUP_PARENT))
        stack.callback(self._stop)
        self._cleanup = stack
        try:
            self._start()
        except BaseException:
            self._cleanup = None
            stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._cleanup is not None:
            self._cleanup.close()
            self._cleanup = None

    def _start(self) -> None:
        d = self.dir
        for sub in ("root", "state", "opt", "fifo", "runc-root", "mnt"):
            (d / sub).mkdir()
        self.sock = str(d / "c.sock")
        config = d / "config.toml"
        disabled = "[" + ", ".join(f'"{p}"' for p in DISABLED_PLUGINS) + "]"
        level = "debug" if self.debug else "info"
        config.write_text(CONFIG.format(d=d, disabled=disabled, level=level))
        self.daemon = harness.Daemon(["containerd", "--config", str(config)], d / "containerd.log")
        self.daemon.wait_for(self._ready, timeout=30)
        self.import_image()

    def _ready(self) -> bool:
        if not os.path.exists(self.sock):
            return False
        return self.ctr("version").returncode == 0

    def import_image(self) -> None:
        """Import the OCI archive and check containerd names the image ``harness.IMAGE``."""
        harness.ok(self.ctr("image", "import", str(self.archive), timeout=120))
        names = self.ctr("image", "ls", "-q").stdout.split()
        assert harness.IMAGE in names, f"import named the image {names}, not {harness.IMAGE}"

    def _stop(self) -> None:
        """Remove every task and container, stop the daemon, kill leftover shims."""
        if self.daemon is not None and self.daemon.proc.poll() is None:
            for cid in self.tasks():
                self.ctr("task", "kill", "-a", "-s", "SIGKILL", cid, timeout=20)
            for cid in self.containers():
                self.remove(cid)
            self.daemon.stop()
        shims = [pid for pid in harness.processes_under(str(self.dir)) if _is_shim(pid)]
        harness.kill_pids(shims)
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in shims) and time.monotonic() < deadline:
            time.sleep(0.05)

    # ------------------------------------------------------------------ client

    def ctr(self, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        """``ctr -a SOCK -n NAMESPACE ARGS...``, output captured as text."""
        return harness.run(["ctr", "-a", self.sock, "-n", NAMESPACE, *args], timeout=timeout, **kw)

    @property
    def runtime_root(self) -> Path:
        """The runtime's ``--root`` (``ctr run --runc-root``); the shim adds the namespace."""
        return self.dir / "runc-root"

    def cgroup(self, cid: str) -> str:
        """The cgroup path given to container ``cid`` (absolute, below ``CGROUP_PREFIX``)."""
        return f"/{harness.CGROUP_PREFIX}/{CGROUP_PARENT}/{cid}"

    def run_argv(
        self,
        runtime: str,
        cid: str,
        *command: str,
        options: tuple[str, ...] = (),
        image: str = harness.IMAGE,
    ) -> list[str]:
        """The full ``ctr run`` command line (for callers that run it themselves, e.g. on a pty)."""
        return [
            "ctr",
            "-a",
            self.sock,
            "-n",
            NAMESPACE,
            "run",
            "--runc-binary",
            harness.RUNTIMES.get(runtime, runtime),
            "--runc-root",
            str(self.runtime_root),
            "--fifo-dir",
            str(self.dir / "fifo"),
            "--cgroup",
            self.cgroup(cid),
            *options,
            image,
            cid,
            *command,
        ]

    def run(
        self,
        runtime: str,
        cid: str,
        *command: str,
        options: tuple[str, ...] = (),
        timeout: float = 60,
        **kw: Any,
    ) -> subprocess.CompletedProcess[str]:
        """``ctr run`` with ``runtime`` (a name in ``harness.RUNTIMES`` or a path) and a test cgroup."""
        return harness.run(self.run_argv(runtime, cid, *command, options=options), timeout=timeout, **kw)

    def exec_argv(self, cid: str, exec_id: str, *command: str, options: tuple[str, ...] = ()) -> list[str]:
        """The ``ctr task exec`` command line."""
        return [
            "ctr",
            "-a",
            self.sock,
            "-n",
            NAMESPACE,
            "task",
            "exec",
            "--fifo-dir",
            str(self.dir / "fifo"),
            "--exec-id",
            exec_id,
            *options,
            cid,
            *command,
        ]

    def exec(
        self, cid: str, exec_id: str, *command: str, options: tuple[str, ...] = (), **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        return harness.run(self.exec_argv(cid, exec_id, *command, options=options), **kw)

    def tasks(self) -> dict[str, tuple[int, str]]:
        """``ctr task ls``: container id -> (pid, status)."""
        out = self.ctr("task", "ls").stdout.splitlines()[1:]
        return {f[0]: (int(f[1]), f[2]) for f in (line.split() for line in out) if len(f) >= 3}

    def containers(self) -> list[str]:
        return self.ctr("container", "ls", "-q").stdout.split()

    def remove(self, cid: str) -> None:
        """Delete the task (forcing it) and the container with its snapshot; quiet if absent."""
        self.ctr("task", "delete", "-f", cid, timeout=30)
        self.ctr("container", "delete", cid, timeout=30)

    def bundle(self, cid: str) -> Path:
        """The container's bundle directory in containerd's state (config.json, log.json)."""
        return self.dir / "state" / "io.containerd.runtime.v2.task" / NAMESPACE / cid

    def shim_log(self, cid: str) -> str:
        """The runtime's ``--log`` file the shim passes (``log.json`` in the bundle)."""
        try:
            return (self.bundle(cid) / "log.json").read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return self.daemon.log_tail(lines) if self.daemon else ""


def _is_shim(pid: int) -> bool:
    try:
        return b"containerd-shim" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
