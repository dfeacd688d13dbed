"""Shared fixtures: a busybox bundle, a private state root, and an ``ocirt`` runner.

Tests run real containers, as root, through the installed ``.venv/bin/ocirt``.
Every test gets its own ``--root``; the session checks that no container
state, mount or process of ours is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
OCIRT = str(REPO / ".venv" / "bin" / "ocirt")
BUSYBOX = "/bin/busybox"


def pytest_configure(config: pytest.Config) -> None:
    if os.geteuid() != 0:
        pytest.exit("ocirt's tests run real containers and need root", returncode=2)
    if not os.path.exists(OCIRT):
        pytest.exit(f"{OCIRT} is missing: run scripts/setup.sh first", returncode=2)


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox rootfs built once per session (copied per test that writes to it)."""
    base = tmp_path_factory.mktemp("template")
    subprocess.run(
        [str(REPO / "scripts" / "make-busybox-bundle.sh"), str(base), "--no-config"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return base / "rootfs"


def default_config() -> dict[str, Any]:
    """``ocirt spec``'s config, non-interactive."""
    from ocirt.cli.template import default_spec

    config = default_spec()
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    return config


class Bundle:
    """A bundle directory: ``rootfs`` (a copy of busybox) and a config to edit."""

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        self.path = path
        self.config = config

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    def write(self, **changes: Any) -> Bundle:
        """Write config.json; ``args=[...]`` is a shortcut for process.args."""
        if "args" in changes:
            self.config["process"]["args"] = changes.pop("args")
        self.config.update(changes)
        (self.path / "config.json").write_text(json.dumps(self.config))
        return self


@pytest.fixture
def bundle(tmp_path: Path, rootfs_template: Path) -> Bundle:
    path = tmp_path / "bundle"
    path.mkdir()
    shutil.copytree(rootfs_template, path / "rootfs", symlinks=True)
    return Bundle(path, default_config()).write()


class Ocirt:
    """Runs ``ocirt --root <private root> ...`` and remembers ids for cleanup."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self.log = log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OCIRT_")}

    def __call__(
        self,
        *args: str,
        check: bool = False,
        timeout: float = 30,
        env: dict[str, str] | None = None,
        **kw: Any,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [OCIRT, "--root", str(self.root), "--log", str(self.log), "--log-format", "json", *args]
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
            **kw,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{cmd} failed ({result.returncode}): {result.stderr}")
        return result

    def detached(
        self,
        *args: str,
        cwd: Path | None = None,
        globals_: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``ocirt`` with stdout and stderr in files rather than pipes.

        A container created by the call inherits them (as with runc); with pipes,
        waiting for end-of-file would wait for the container to exit.
        """
        if globals_ is None:
            globals_ = ["--root", str(self.root), "--log", str(self.log), "--log-format", "json"]
        cmd = [OCIRT, *globals_, *args]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            returncode = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=30,
                cwd=cwd,
                env={**self.env, **(env or {})},
            ).returncode
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(cmd, returncode, out.read(), err.read())

    def state(self, container_id: str) -> dict[str, Any]:
        result = self("state", container_id, check=True)
        return json.loads(result.stdout)

    def ids(self) -> list[str]:
        if not self.root.exists():
            return []
        return [p.name for p in self.root.iterdir() if p.is_dir()]

    def log_lines(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


@pytest.fixture
def ocirt(tmp_path: Path) -> Iterator[Ocirt]:
    runner = Ocirt(tmp_path / "state", tmp_path / "ocirt.log")
    yield runner
    for container_id in runner.ids():
        runner("delete", "--force", container_id)
    assert runner.ids() == [], "container state left behind"


def unique_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cid() -> str:
    return unique_id()


def our_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if "/pytest-" in line or "ocirt" in line]


@pytest.fixture(autouse=True, scope="session")
def no_leftover_mounts() -> Iterator[None]:
    before = our_mounts()
    yield
    assert our_mounts() == before, "mounts left on the host"


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


sys.path.insert(0, str(REPO))
