"""Configs shaped like the ones engines write run the same container as runc.

``tests/data/*-config.json`` are config.json files podman, containerd and docker wrote
for a busybox image here, with paths made portable (docker's prestart network
hook is left out until the hooks plugin exists; containerd's seccomp profile is
the one ``ctr run --seccomp`` adds). Each runs under ocirt and under runc on the
same bundle; what the container sees (mounts, /dev, limits, identity, the five
capability sets and no_new_privs, seccomp mode and filter count) must match. The
cgroup mount is compared once its plugin exists (it differs by design today: see
the README).
"""

from __future__ import annotations

import difflib
import json
import re
import resource
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import OCIRT, Bundle, Ocirt, default_config, unique_id

DATA = Path(__file__).parent / "data"

VIEW = (
    "cat /proc/self/mountinfo; echo =====; ls -ln /dev /dev/pts /dev/mqueue; echo =====; "
    "cat /proc/self/limits; echo =====; id; hostname; umask; ls -ld /dev/shm; "
    "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/net/ipv4/ping_group_range; "
    "grep -E '^(Cap|NoNewPrivs)' /proc/self/status; "
    "grep -E '^Seccomp(_filters)?:' /proc/self/status"
)


def engine_config(name: str, bundle: Path) -> dict[str, Any]:
    if name == "ocirt-spec":
        return default_config()
    text = (DATA / f"{name}-config.json").read_text().replace("{bundle}", str(bundle))
    config: dict[str, Any] = json.loads(text)
    engine_files = bundle / "engine"
    engine_files.mkdir(exist_ok=True)
    for mount in config["mounts"]:
        source = mount.get("source", "")
        if source.startswith(str(engine_files)):
            target = Path(source)
            if mount["destination"] == "/dev/shm":
                target.mkdir(exist_ok=True)
            else:
                target.write_text(f"{mount['destination']} from the engine\n")
    hard_nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    for limit in config["process"].get("rlimits", []):
        if limit["type"] == "RLIMIT_NPROC":  # the engine read this machine's limit
            limit["soft"] = limit["hard"] = hard_nproc
    return config


def normalize(output: str) -> str:
    """Drop what legitimately differs between two runs or is owned by later issues."""
    lines = []
    for line in output.splitlines():
        line = re.sub(r"^\d+ \d+ \d+:\d+ ", "", line)  # mount ids and device numbers
        line = re.sub(r" (shared|master|propagate_from):\d+", "", line)
        if "/sys/fs/cgroup" in line:  # the cgroups plugin's business (issue 5)
            continue
        line = re.sub(r"^(total) \d+$", r"\1", line)
        line = re.sub(r"\s+\w{3} +\d+ +\d+:\d+ ", " DATE ", line)  # ls -l times
        lines.append(line)
    return "\n".join(lines)


def run_under(runtime: list[str], bundle: Path, container_id: str) -> str:
    result = subprocess.run(
        [*runtime, "run", "--bundle", str(bundle), container_id],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"{runtime[0]}: {result.stderr}"
    return result.stdout


@pytest.mark.skipif(
    shutil.which("runc") is None, reason="runc is not installed (scripts/setup.sh installs it)"
)
@pytest.mark.parametrize("shape", ["ocirt-spec", "podman", "containerd", "docker"])
def test_same_container_as_runc(ocirt: Ocirt, bundle: Bundle, tmp_path: Path, shape: str) -> None:
    config = engine_config(shape, bundle.path)
    config["process"]["args"] = ["sh", "-c", VIEW]
    config["process"]["terminal"] = False
    bundle.config = config
    bundle.write()
    runc_root = tmp_path / "runc-state"
    mine = run_under([OCIRT, "--root", str(ocirt.root)], bundle.path, unique_id())
    theirs = run_under(["runc", "--root", str(runc_root)], bundle.path, unique_id())
    assert "=====" in mine and "proc" in mine  # the view ran
    difference = "\n".join(
        difflib.unified_diff(
            normalize(theirs).splitlines(), normalize(mine).splitlines(), "runc", "ocirt", lineterm=""
        )
    )
    assert not difference, difference
