"""The engine's commands import only what they use (each is a new process)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import OCIRT, REPO, Bundle, Ocirt

PYTHON = str(REPO / ".venv" / "bin" / "python")
ENTRY = "import sys; from ocirt.cli import main; sys.exit(main())"

#: Never on the engine path: CLI framework, plugin framework (a fresh hook plan is
#: used instead), netlink, seccomp, and json's pure-Python machinery (re, enum).
HEAVY = ("typer", "click", "rich", "pluggy", "pyroute2", "seccomp", "pyseccomp", "re", "enum", "json")


def imported(ocirt: Ocirt, *args: str, cwd: Path | None = None) -> set[str]:
    """Modules one ocirt command imports, as ``python -X importtime`` reports them."""
    cmd = [PYTHON, "-I", "-X", "importtime", "-c", ENTRY, "--root", str(ocirt.root), *args]
    # Files, not pipes: a created container inherits them and keeps pipes open.
    with tempfile.TemporaryFile("w+") as err:
        code = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err, timeout=30, cwd=cwd).returncode
        err.seek(0)
        report = err.read()
    assert code == 0, report
    return {
        line.rsplit("|", 1)[1].strip()
        for line in report.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


@pytest.fixture
def warm(ocirt: Ocirt, bundle: Bundle) -> Bundle:
    """A bundle whose plugin set has a fresh hook plan (the first create makes it)."""
    bundle.write(args=["sleep", "30"])
    result = ocirt.detached("run", "--detach", "--bundle", str(bundle.path), "warmup")
    assert result.returncode == 0, result.stderr
    ocirt("delete", "--force", "warmup", check=True)
    return bundle


def test_engine_sequence_imports(ocirt: Ocirt, warm: Bundle, tmp_path: Path) -> None:
    seen = {"create": imported(ocirt, "create", "--bundle", str(warm.path), "imp1")}
    seen["start"] = imported(ocirt, "start", "imp1")
    seen["state"] = imported(ocirt, "state", "imp1")
    # What engines do to a live container: exec (podman and docker healthchecks), pause, update.
    seen["exec"] = imported(ocirt, "exec", "imp1", "true")
    seen["pause"] = imported(ocirt, "pause", "imp1")
    seen["resume"] = imported(ocirt, "resume", "imp1")
    seen["update"] = imported(ocirt, "update", "--memory", "64m", "imp1")
    seen["kill"] = imported(ocirt, "kill", "imp1", "9")
    seen["delete"] = imported(ocirt, "delete", "--force", "imp1")
    assert {command: heavy(modules) for command, modules in seen.items()} == {
        "create": set(),
        "start": set(),
        "state": set(),
        "exec": set(),
        "pause": set(),
        "resume": set(),
        "update": set(),
        "kill": set(),
        "delete": set(),
    }
    # A spec without hooks: the hooks plugin withdrew from start and delete, so
    # `start` loads no plugin at all, and `delete` only those with something to undo.
    assert not {m for m in seen["start"] if m.startswith("ocirt.plugins.")}
    assert "ocirt.plugins.hooks.plugin" not in seen["delete"]
    assert "ocirt.plugins.mounts.plugin" not in seen["delete"]
    # Only create and exec fork: the other commands import neither lifecycle nor
    # ctypes. state and kill load no plugin: the cgroup driver named its freezer
    # file at create (Container.show_status), and state reads it itself.
    for command in ("start", "state", "kill", "pause", "resume", "delete"):
        assert not {"ocirt.core.lifecycle", "ctypes"} & seen[command], command
    for command in ("state", "kill"):
        assert not {m for m in seen[command] if m.startswith("ocirt.plugins")}, command
        assert "ocirt.core.plugins" not in seen[command], command
    # The loopback of a new network namespace comes up through a bare socket fd.
    assert "_socket" not in seen["create"]
    # Syscalls go through ctypes' C core (ocirt.core.libc), not the ctypes package,
    # for a spec without seccomp; struct is not needed either (not even in the child).
    assert "_ctypes" in seen["create"]
    assert not {"ctypes", "struct"} & (seen["create"] | seen["exec"])


def test_state_and_kill_do_not_read_the_config(ocirt: Ocirt, warm: Bundle, tmp_path: Path) -> None:
    """Later commands read config.json only when a plugin asks for it (none does for these)."""
    warm.config["linux"]["cgroupsPath"] = f"/ocirt-test/{warm.path.parent.name}"
    warm.write(args=["sleep", "30"])
    assert ocirt.detached("run", "-d", "--bundle", str(warm.path), "imp3").returncode == 0
    try:
        for command in (["state", "imp3"], ["kill", "imp3", "CONT"]):
            trace = tmp_path / f"{command[0]}.strace"
            cmd = ["strace", "-f", "-qq", "-e", "trace=open,openat", "-o", str(trace), OCIRT,
                   "--root", str(ocirt.root), *command]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            opened = trace.read_text()
            assert "state.json" in opened  # the trace sees the files the command reads
            assert "config.json" not in opened, command
    finally:
        ocirt("delete", "--force", "imp3")


def test_run_imports(ocirt: Ocirt, warm: Bundle) -> None:
    warm.write(args=["true"])
    assert heavy(imported(ocirt, "run", "--bundle", str(warm.path), "imp2")) == set()


def test_help_uses_typer(ocirt: Ocirt) -> None:
    """The check above can fail: --help goes through the typer app."""
    assert "typer" in heavy(imported(ocirt, "--help"))


#: Modules of the namespaces plugin for features a spec may not use.
NAMESPACE_EXTRAS = {
    "ocirt.plugins.namespaces.userns",
    "ocirt.plugins.namespaces.timens",
    "ocirt.plugins.namespaces.sysctl",
}


def test_namespace_features_cost_nothing_unused(ocirt: Ocirt, warm: Bundle) -> None:
    warm.write(args=["true"])
    assert imported(ocirt, "run", "--bundle", str(warm.path), "imp3") & NAMESPACE_EXTRAS == set()


def test_namespace_features_imported_when_used(ocirt: Ocirt, warm: Bundle) -> None:
    """The check above can fail: a spec with sysctls and time offsets imports their modules."""
    warm.config["linux"]["namespaces"].append({"type": "time"})
    warm.config["linux"]["timeOffsets"] = {"boottime": {"secs": 5, "nanosecs": 0}}
    warm.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    warm.write(args=["true"])
    found = imported(ocirt, "run", "--bundle", str(warm.path), "imp4") & NAMESPACE_EXTRAS
    assert found == {"ocirt.plugins.namespaces.timens", "ocirt.plugins.namespaces.sysctl"}


#: Modules of the process and security plugins for features a spec may not use.
PROCESS_EXTRAS = {"ocirt.plugins.process.attrs", "ocirt.plugins.security.lsm"}


def test_process_features_cost_nothing_unused(ocirt: Ocirt, warm: Bundle) -> None:
    warm.write(args=["true"])
    assert imported(ocirt, "run", "--bundle", str(warm.path), "imp5") & PROCESS_EXTRAS == set()


def test_process_features_imported_when_used(ocirt: Ocirt, warm: Bundle) -> None:
    """The check above can fail: a spec with an OOM score (docker writes one) imports ``attrs``."""
    warm.config["process"]["oomScoreAdj"] = 0
    warm.config["process"]["apparmorProfile"] = ""  # empty: nothing asked, nothing imported
    warm.write(args=["true"])
    found = imported(ocirt, "run", "--bundle", str(warm.path), "imp6") & PROCESS_EXTRAS
    assert found == {"ocirt.plugins.process.attrs"}


def test_plain_container_never_imports_pyroute2(ocirt: Ocirt, warm: Bundle) -> None:
    """The network plugin is loaded for every container, but netlink only for one that asks."""
    warm.write(args=["sleep", "30"])
    created = imported(ocirt, "create", "--bundle", str(warm.path), "imp7")
    deleted = imported(ocirt, "delete", "--force", "imp7")
    assert "ocirt.plugins.network.plugin" in created
    assert not {m for m in created | deleted if m.split(".")[0] == "pyroute2"}
    assert not {m for m in created if m.startswith("ocirt.plugins.network.") and not m.endswith(".plugin")}
    # It withdrew from delete: not even its module is loaded there.
    assert "ocirt.plugins.network.plugin" not in deleted


def test_bridge_container_imports_pyroute2(ocirt: Ocirt, warm: Bundle) -> None:
    """The check above can fail: ``run --network bridge`` imports pyroute2 (and cleans up)."""
    warm.config["annotations"] = {
        "org.ocirt.network.bridge": "ocirtt90",
        "org.ocirt.network.subnet": "10.231.90.0/24",
    }
    warm.write(args=["true"])
    found = imported(ocirt, "run", "--network", "bridge", "--bundle", str(warm.path), "imp8")
    assert "pyroute2" in found
    assert not Path("/sys/class/net/ocirtt90").exists()
