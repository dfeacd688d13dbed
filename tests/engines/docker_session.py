"""A private dockerd (Debian's docker.io 20.10) that drives ocirt, or runc as the reference.

``DockerSession`` is a context manager used by ``test_docker.py`` and usable by
a benchmark script: it starts dockerd with a private ``daemon.json`` (data and
exec roots, socket, pid file in one short directory; cgroupfs below
``harness.CGROUP_PREFIX``; no iptables; a default bridge on a private subnet),
imports the busybox image, and on exit leaves nothing behind: containers,
daemons (dockerd and the containerd it supervises), mounts, cgroups, the bridge
link it created and any veth.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path
from types import TracebackType

import harness

DOCKERD = "/usr/sbin/dockerd"
#: The real docker client (``/usr/local/bin/docker`` is something else).
DOCKER = "/usr/bin/docker"

#: The default bridge: a private subnet no other network here uses.
BRIDGE = "docker0"
BRIDGE_IP = "10.213.47.1"
BRIDGE_CIDR = f"{BRIDGE_IP}/24"

#: dockerd's runtime names: ``ocirt`` is configured, ``runc`` is dockerd's built-in default.
RUNTIME_NAMES = {"ocirt": "ocirt", "runc": "runc"}


def links() -> set[str]:
    """Names of the network links on the host."""
    return {p.name for p in Path("/sys/class/net").iterdir()}


def bridge_ports(bridge: str = BRIDGE) -> set[str]:
    """Links enslaved to ``bridge`` (dockerd's veths), none if it does not exist."""
    brif = Path("/sys/class/net") / bridge / "brif"
    return {p.name for p in brif.iterdir()} if brif.is_dir() else set()


def docker_rules() -> list[str]:
    """Lines of ``iptables-save`` that mention docker."""
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
    return [line for line in out.splitlines() if "docker" in line.lower()]


class DockerSession:
    """dockerd with private roots; ``docker(...)`` talks to it only."""

    def __init__(self, image_tar: Path, debug: bool = False) -> None:
        self.image_tar = image_tar
        self.debug = debug
        self.dir = Path()
        self.sock = ""
        self.daemon: harness.Daemon | None = None
        self._cleanup: contextlib.ExitStack | None = None
        self._bridge_existed = False
        self._ports: set[str] = set()
        self._rules_before: list[str] = []

    # ------------------------------------------------------------------ config

    def config(self) -> dict[str, object]:
        """The private daemon.json."""
        return {
            "data-root": str(self.dir / "data"),
            "exec-root": str(self.dir / "exec"),
            "pidfile": str(self.dir / "dockerd.pid"),
            "hosts": [f"unix://{self.sock}"],
            "exec-opts": ["native.cgroupdriver=cgroupfs"],
            "cgroup-parent": f"/{harness.CGROUP_PREFIX}/docker",
            "storage-driver": "overlay2",
            "runtimes": {"ocirt": {"path": harness.OCIRT}},
            "iptables": False,
            "ip-forward": False,
            "ip-masq": False,
            "userland-proxy": False,
            "bip": BRIDGE_CIDR,
            "live-restore": False,
            "features": {"buildkit": False},
            "debug": self.debug,
        }

    def env(self) -> dict[str, str]:
        """The client's and the daemon's environment: nothing of the caller's docker setup."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["PATH"] = harness.PATH
        env["DOCKER_CONFIG"] = str(self.dir / "client")
        return env

    # ------------------------------------------------------------------ client

    def docker(
        self, *args: str, runtime: str | None = None, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker client against this daemon; ``runtime`` adds ``--runtime`` to run/create."""
        argv = [DOCKER, "-H", f"unix://{self.sock}", *args]
        if runtime is not None and args and args[0] in ("run", "create"):
            argv[4:4] = ["--runtime", RUNTIME_NAMES.get(runtime, runtime)]
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, env=self.env(), input=input
        )

    def argv(self, *args: str) -> list[str]:
        """The client's command line (for callers that run it themselves, e.g. under a pty)."""
        return [DOCKER, "-H", f"unix://{self.sock}", *args]

    def ok(self, *args: str, runtime: str | None = None, timeout: float = 60) -> str:
        """``docker(...)`` asserting success; its stdout, stripped."""
        return harness.ok(self.docker(*args, runtime=runtime, timeout=timeout)).stdout.strip()

    def pid(self, container: str) -> int:
        """The host pid of a running container's process."""
        return int(self.ok("inspect", "-f", "{{.State.Pid}}", container))

    def runtime_binary(self, container: str) -> str:
        """The runtime binary the containerd shim was told to use for a container (its options.json)."""
        cid = self.ok("inspect", "-f", "{{.Id}}", container)
        tasks = self.dir / "exec/containerd/daemon/io.containerd.runtime.v2.task/moby"
        options = tasks / cid / "options.json"
        return str(json.loads(options.read_text()).get("binary_name", ""))

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> DockerSession:
        harness.need(DOCKERD, DOCKER, "containerd", "containerd-shim-runc-v2", harness.RUNC)
        self._bridge_existed = BRIDGE in links()
        if self._bridge_existed:
            raise RuntimeError(f"{BRIDGE} exists already: another dockerd would share it")
        self._rules_before = docker_rules()
        self.dir = harness.workdir("dk")
        self.sock = str(self.dir / "docker.sock")
        stack = contextlib.ExitStack()
        # Only our part of the engines' cgroups: podman and containerd may be tested meanwhile.
        stack.enter_context(harness.cleanup_after(self.dir, cgroups_below="docker"))
        stack.callback(self._stop)
        self._cleanup = stack
        try:
            (self.dir / "client").mkdir()
            config = self.dir / "daemon.json"
            config.write_text(json.dumps(self.config(), indent=2))
            self.daemon = harness.Daemon(
                [DOCKERD, "--config-file", str(config)], self.dir / "dockerd.log", env=self.env()
            )
            self.daemon.wait_for(lambda: self.docker("info", timeout=10).returncode == 0)
            harness.ok(self.docker("import", str(self.image_tar), harness.IMAGE, timeout=120))
        except BaseException:
            stack.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._cleanup is not None
        self._cleanup.close()
        if kind is None:  # an earlier failure is the one to report
            self.check_clean()

    def _stop(self) -> None:
        """Remove the containers, stop dockerd (it stops its containerd), kill leftovers, drop the bridge."""
        if self.daemon is not None and self.daemon.proc.poll() is None:
            ids = self.docker("ps", "-aq", timeout=30).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, timeout=60)
            self.daemon.stop()
        # The containerd dockerd supervised, and its shims, carry the exec root in their argv.
        deadline = time.monotonic() + 10
        while harness.processes_under(str(self.dir)) and time.monotonic() < deadline:
            time.sleep(0.1)
        harness.kill_pids(harness.processes_under(str(self.dir)))
        # Only links on our bridge are ours: other engines' veths sit on their own bridges.
        self._ports = bridge_ports()
        for port in self._ports:
            subprocess.run(["ip", "link", "del", port], check=False, stderr=subprocess.DEVNULL)
        if not self._bridge_existed and BRIDGE in links():
            subprocess.run(["ip", "link", "del", BRIDGE], check=False)

    def check_clean(self) -> None:
        """Nothing of the session in the network: no bridge of ours, no new veth, no docker rule."""
        assert self._bridge_existed or BRIDGE not in links(), f"{BRIDGE} left behind"
        assert not self._ports, f"veths were left on {BRIDGE} after dockerd stopped: {self._ports}"
        left = self._ports & links()
        assert not left, f"veth left behind: {left}"
        rules = [r for r in docker_rules() if r not in self._rules_before]
        assert not rules, f"iptables rules left behind: {rules}"

    def log_tail(self, lines: int = 60) -> str:
        """The end of dockerd's log (it holds containerd's too)."""
        return self.daemon.log_tail(lines) if self.daemon else ""
