"""A private podman: its own configuration, storage, state and cgroups, for tests and benchmarks.

podman has no daemon: every ``podman`` call reads ``CONTAINERS_CONF`` and
``CONTAINERS_STORAGE_CONF``, which point into one private directory, so the
machine's ``/var/lib/containers``, ``/run/containers`` and ``/run/libpod`` are
never touched (file locks instead of the shared ``/dev/shm/libpod_lock``, no
network namespace setup; what remains is a read of ``/etc/containers/policy.json``
on import and a stat of netavark's fixed ``/run/containers/networks``). Global
podman options given to ``podman()`` must use the ``--flag=value`` form (the
subcommand is found as the first word without a dash). Both runtimes are configured by name: ``ocirt`` and
``runc``, the reference. Usage::

    with PodmanSession(image_tar) as session:
        session.podman("run", "--rm", harness.IMAGE, "echo", "hi", runtime="ocirt")
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import harness

#: Subcommands that take ``--cgroup-parent`` (podman 4.3: run and create; pods too).
CGROUP_PARENT_COMMANDS = {"run", "create"}

#: Where podman puts its containers' cgroups (and conmon's), below the engines' prefix.
CGROUP_PARENT = f"/{harness.CGROUP_PREFIX}/podman"

#: criu 4.x from ``scripts/install-criu.sh`` (Debian 12's fails on this kernel). ``podman
#: container checkpoint/restore`` look criu up on PATH, and so does runc (ocirt finds it
#: there by itself): first on podman's and conmon's PATH, as conmon runs the runtime's restore.
CRIU_BIN = "/opt/ocirt-criu/bin"
PATH = f"{CRIU_BIN}:{harness.PATH}"


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


class PodmanSession:
    """Private podman configuration and storage with the busybox image imported.

    ``podman(*args, runtime=NAME)`` runs one podman command with that runtime;
    on exit every container is removed and everything podman made (processes,
    mounts, cgroups, files) is gone.
    """

    def __init__(self, image_tar: Path, *, network: str = "none") -> None:
        self.image_tar = image_tar
        self.network = network
        self.dir = Path()
        self.env: dict[str, str] = {}
        self._stack = contextlib.ExitStack()

    # ------------------------------------------------------------------ setup

    def __enter__(self) -> PodmanSession:
        harness.need("podman", "conmon", harness.RUNC, harness.OCIRT)
        self.dir = harness.workdir("podman")
        self._stack.enter_context(harness.cleanup_after(self.dir, cgroups_below="podman"))
        try:
            self._configure()
            self._import_image()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _configure(self) -> None:
        d = self.dir
        for sub in ("tmp", "run", "root", "networks", "volumes", "imagetmp", "home"):
            (d / sub).mkdir()
        conf_env = {
            "CONTAINERS_CONF": str(d / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(d / "storage.conf"),
        }
        runtimes = "\n".join(f"{name} = {_toml_list([path])}" for name, path in harness.RUNTIMES.items())
        (d / "containers.conf").write_text(
            f"""\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"
netns = "{self.network}"

[network]
network_backend = "netavark"
network_config_dir = "{d}/networks"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
lock_type = "file"
tmp_dir = "{d}/tmp"
# static_dir (the database) stays at its default, graphroot/libpod: the exit command
# gets --root and would look there whatever static_dir says.
volume_path = "{d}/volumes"
image_copy_tmp_dir = "{d}/imagetmp"
runtime = "ocirt"
runtime_supports_json = {_toml_list(list(harness.RUNTIMES))}
# conmon runs the exit command (``podman container cleanup``) with only these: without
# the private configuration it would use the machine's locks and state, and ``run --rm``
# would wait 20 s for a cleanup that never comes.
conmon_env_vars = {_toml_list([f"PATH={PATH}", *(f"{k}={v}" for k, v in conf_env.items())])}

[engine.runtimes]
{runtimes}
"""
        )
        (d / "storage.conf").write_text(
            f"""\
[storage]
driver = "overlay"
runroot = "{d}/run"
graphroot = "{d}/root"
"""
        )
        self.env = {
            **os.environ,
            **conf_env,
            # No registry lookups, no user configuration, image copies' temporary files in here.
            "CONTAINERS_REGISTRIES_CONF": str(d / "registries.conf"),
            "TMPDIR": str(d / "imagetmp"),
            "XDG_RUNTIME_DIR": str(d / "run"),
            "XDG_CONFIG_HOME": str(d / "home"),
            "HOME": str(d / "home"),
            "PATH": PATH,
        }
        (d / "registries.conf").write_text("unqualified-search-registries = []\n")

    def _import_image(self) -> None:
        """``podman import`` the rootfs tar as ``harness.IMAGE``.

        Every image copy opens a blob-info cache that, for root, is always
        ``/var/lib/containers/cache`` (podman 4.3 has no setting for it): the import
        runs in a private mount namespace with a tmpfs there, so the machine's
        copy is neither read nor written. Storage itself is the private graphroot.
        """
        hide = "/var/lib/containers" if os.path.isdir("/var/lib/containers") else "/var/lib"
        script = 'mount -t tmpfs ocirt-podman-cache "$0" && exec "$@"'
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, hide]
        argv += self.argv("import", str(self.image_tar), harness.IMAGE)
        harness.ok(harness.run(argv, timeout=120, env=self.env))

    # ------------------------------------------------------------------ commands

    def argv(self, *args: str, runtime: str = "ocirt") -> list[str]:
        """The podman command line: ``--runtime NAME`` and the test cgroup parent where it applies."""
        argv = ["podman", "--runtime", runtime, *args]
        command = next((i for i, arg in enumerate(argv) if i > 2 and not arg.startswith("-")), None)
        if command is not None and argv[command] in CGROUP_PARENT_COMMANDS:
            argv.insert(command + 1, f"--cgroup-parent={CGROUP_PARENT}")
        return argv

    def podman(
        self, *args: str, runtime: str = "ocirt", timeout: float = 60, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run one podman command with ``runtime`` (a name in ``harness.RUNTIMES``)."""
        return harness.run(self.argv(*args, runtime=runtime), timeout=timeout, env=self.env, **kw)

    def out(self, *args: str, runtime: str = "ocirt", timeout: float = 60) -> str:
        """A podman command's stdout, stripped, asserting it succeeded."""
        return harness.ok(self.podman(*args, runtime=runtime, timeout=timeout)).stdout.strip()

    def podman_tty(self, *args: str, runtime: str = "ocirt", timeout: float = 30) -> tuple[int, str]:
        """Run podman with a new pty as its stdin, stdout and stderr: (exit code, all it wrote)."""
        return harness.run_in_pty(self.argv(*args, runtime=runtime), env=self.env, timeout=timeout)

    def pid(self, cid: str) -> int:
        """The container's init pid on the host (0 when it is not running)."""
        return int(self.out("inspect", "-f", "{{.State.Pid}}", cid))

    def status(self, cid: str) -> str:
        return self.out("inspect", "-f", "{{.State.Status}}", cid)

    # ------------------------------------------------------------------ teardown

    def container_pids(self) -> list[int]:
        """Processes in podman's test cgroups (containers and conmon), from every hierarchy."""
        pids: set[int] = set()
        for hierarchy in harness.CGROUP_ROOT.iterdir():
            top = hierarchy / harness.CGROUP_PREFIX / "podman"
            if not top.is_dir():
                continue
            for procs in top.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in procs.read_text().split())
        return sorted(pids)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.env:
                self.podman("rm", "-af", "-t", "0", timeout=120)
                # Anything podman lost track of: thaw it (a frozen process ignores SIGKILL) and kill it.
                for hierarchy in harness.CGROUP_ROOT.iterdir():
                    top = hierarchy / harness.CGROUP_PREFIX / "podman"
                    for state in top.rglob("freezer.state") if top.is_dir() else []:
                        with contextlib.suppress(OSError):
                            state.write_text("THAWED")
                harness.kill_pids(self.container_pids())
                deadline = time.monotonic() + 5
                while self.container_pids() and time.monotonic() < deadline:
                    time.sleep(0.1)
        finally:
            self._stack.close()
