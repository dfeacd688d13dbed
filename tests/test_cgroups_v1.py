"""The cgroups plugin on this v1/hybrid host: limits in the files, update, pause, ps, events.

Every container gets an absolute cgroupsPath under /ocirt-test/<id>; delete
must leave no directory of it behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import OCIRT, Bundle, Ocirt, wait_for

V1 = "/sys/fs/cgroup"

pytestmark = pytest.mark.skipif(
    not os.path.isdir(f"{V1}/memory") or os.path.exists(f"{V1}/cgroup.controllers"),
    reason="needs a cgroup v1 (or hybrid) host",
)


def cg(controller: str, cid: str, name: str = "") -> Path:
    return Path(V1, controller, "ocirt-test", cid, name)


def read(controller: str, cid: str, name: str) -> str:
    return cg(controller, cid, name).read_text().strip()


@pytest.fixture
def cgbundle(ocirt: Ocirt, bundle: Bundle, cid: str) -> Iterator[Bundle]:
    """A bundle placed at /ocirt-test/<cid>; checks nothing of it remains afterwards."""
    bundle.config["linux"]["cgroupsPath"] = f"/ocirt-test/{cid}"
    bundle.write(args=["sleep", "60"])
    yield bundle
    ocirt("delete", "--force", cid)
    assert not cg("memory", cid).exists(), "cgroup left behind"


def start(ocirt: Ocirt, b: Bundle, cid: str, **resources: Any) -> None:
    b.config["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}], **resources}
    b.write()
    result = ocirt.detached("run", "--detach", "--bundle", str(b.path), cid)
    assert result.returncode == 0, result.stderr


def test_resources_written(ocirt: Ocirt, cgbundle: Bundle, cid: str) -> None:
    start(
        ocirt, cgbundle, cid,
        memory={"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20, "swappiness": 10},
        cpu={"shares": 512, "quota": 20000, "period": 100000, "cpus": "0", "mems": "0"},
        pids={"limit": 40},
    )  # fmt: skip
    assert read("memory", cid, "memory.limit_in_bytes") == str(64 << 20)
    assert read("memory", cid, "memory.soft_limit_in_bytes") == str(32 << 20)
    assert read("memory", cid, "memory.memsw.limit_in_bytes") == str(128 << 20)
    assert read("memory", cid, "memory.swappiness") == "10"
    assert read("cpu", cid, "cpu.shares") == "512"
    assert read("cpu", cid, "cpu.cfs_quota_us") == "20000"
    assert read("cpu", cid, "cpu.cfs_period_us") == "100000"
    assert read("cpuset", cid, "cpuset.cpus") == "0"
    assert read("pids", cid, "pids.max") == "40"
    pid = ocirt.state(cid)["pid"]
    assert str(pid) in read("freezer", cid, "cgroup.procs").split()
    ocirt("delete", "--force", cid, check=True)


def test_rejected_value_names_file(ocirt: Ocirt, cgbundle: Bundle, cid: str) -> None:
    cgbundle.config["linux"]["resources"] = {"cpu": {"cpus": "99999"}}
    cgbundle.write()
    result = ocirt.detached("create", "--bundle", str(cgbundle.path), cid)
    assert result.returncode != 0
    assert "cpuset.cpus" in result.stderr and "99999" in result.stderr
    assert ocirt.ids() == []


def test_missing_controller_asked_is_an_error(ocirt: Ocirt, cgbundle: Bundle, cid: str) -> None:
    cgbundle.config["linux"]["resources"] = {"network": {"classID": 7}}
    cgbundle.write()
    result = ocirt.detached("create", "--bundle", str(cgbundle.path), cid)
    if os.path.isdir(f"{V1}/net_cls"):
        pytest.skip("net_cls is mounted here")
    assert result.returncode != 0 and "net_cls" in result.stderr


def test_init_in_cgroup_before_it_runs(ocirt: Ocirt, cgbundle: Bundle, cid: str) -> None:
    cgbundle.config["linux"]["namespaces"] = [
        ns for ns in cgbundle.config["linux"]["namespaces"] if ns["type"] != "cgroup"
    ]
    cgbundle.write(args=["cat", "/proc/self/cgroup"])
    result = ocirt("run", "--bundle", str(cgbundle.path), cid)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 2)[1:] for line in result.stdout.splitlines())
    assert lines["memory"] == f"/ocirt-test/{cid}"
    assert lines["pids"] == f"/ocirt-test/{cid}"


def test_update_flags_and_docker_zeros(ocirt: Ocirt, cgbundle: Bundle, cid: str) -> None:
    start(ocirt, cgbundle, cid, memory={"limit": 64 << 20}, pids={"limit": 40}, cpu={"shares": 512})
    ocirt("update", "--memory", "100M", "--cpu-shares", "0", "--pids-limit", "60", cid, check=True)
    assert read("memory", cid, "memory.limit_in_bytes") == str(100 << 20)
    assert read("cpu", cid, "cpu.shares") == "512"
    assert read("pids", cid, "pids.max") == "60"
    docker = {
        "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0},
        "cpu": {"shares": 256, "quota": 0, "period": 0, "realtimeRuntime": 0, "realtimePeriod": 0,
                "cpus": "", "mems": ""},
        "pids": {"limit": 0},
        "blockIO": {"weight": 0},
    }  # fmt: skip
    ocirt("update", "--resources", "-", cid, input=json.dumps(docker), check=True)
    assert read("cpu", cid, "cpu.shares") == "256"
    assert read("memory", cid, "memory.limit_in_bytes") == str(100 << 20)
    assert read("pids", cid, "pids.max") == "60"
    podman = {"memory": {"limit": 80 << 20, "swap": 160 << 20}, "pids": {"limit": -1}}
    ocirt("update", "--resources=-", cid, input=json.dumps(podman), check=True)
    assert read("memory", cid, "memory.limit_in_bytes") == str(80 << 20)
    assert read("memory", cid, "memory.memsw.limit_in_bytes") == str(160 << 20)
    assert read("pids", cid, "pids.max") == "max"
    quota = ["--cpu-quota", "50000", "--cpu-period", "100000", "--cpu-burst", "20000"]
    ocirt("update", *quota, "--cpuset-cpus", "0", cid, check=True)
    assert read("cpu", cid, "cpu.cfs_quota_us") == "50000"
    assert read("cpu", cid, "cpu.cfs_burst_us") == "20000"
    assert read("cpuset", cid, "cpuset.cpus") == "0"
    ocirt("delete", "--force", cid, check=True)


def test_blkio_weight_missing_here_errors_only_when_asked(ocirt: Ocirt, cgbundle: Bundle, cid: str) -> None:
    if os.path.exists(f"{V1}/blkio/blkio.weight"):
        pytest.skip("this host has blkio weights")
    start(ocirt, cgbundle, cid, blockIO={"weight": 0})
    result = ocirt("update", "--blkio-weight", "300", cid)
    assert result.returncode != 0 and "blkio.weight" in result.stderr
    ocirt("delete", "--force", cid, check=True)


def test_pause_resume_and_kill_paused(ocirt: Ocirt, cgbundle: Bundle, cid: str) -> None:
    start(ocirt, cgbundle, cid)
    ocirt("pause", cid, check=True)
    assert read("freezer", cid, "freezer.state") == "FROZEN"
    assert ocirt.state(cid)["status"] == "paused"
    ocirt("resume", cid, check=True)
    assert read("freezer", cid, "freezer.state") == "THAWED"
    assert ocirt.state(cid)["status"] == "running"
    ocirt("pause", cid, check=True)
    ocirt("kill", cid, "9", check=True)
    assert wait_for(lambda: ocirt.state(cid)["status"] == "stopped")
    ocirt("delete", cid, check=True)


def test_state_sees_a_freeze_made_outside_ocirt(ocirt: Ocirt, cgbundle: Bundle, cid: str) -> None:
    """As runc's: the status comes from the freezer, not from ocirt's own record of pause."""
    start(ocirt, cgbundle, cid)
    freezer = f"{V1}/freezer/ocirt-test/{cid}/freezer.state"
    Path(freezer).write_text("FROZEN")
    try:
        assert wait_for(lambda: ocirt.state(cid)["status"] == "paused")
        listed = json.loads(ocirt("list", "--format", "json", check=True).stdout)
        assert [(c["id"], c["status"]) for c in listed] == [(cid, "paused")]
    finally:
        Path(freezer).write_text("THAWED")
    assert ocirt.state(cid)["status"] == "running"
    ocirt("delete", "--force", cid, check=True)


def test_delete_force_paused(ocirt: Ocirt, cgbundle: Bundle, cid: str) -> None:
    start(ocirt, cgbundle, cid)
    ocirt("pause", cid, check=True)
    ocirt("delete", "--force", cid, check=True)
    assert ocirt.ids() == []


def test_ps_json_matches_cgroup(ocirt: Ocirt, cgbundle: Bundle, cid: str) -> None:
    cgbundle.write(args=["sh", "-c", "sleep 60 & sleep 60 & wait"])
    start(ocirt, cgbundle, cid)
    assert wait_for(lambda: len(read("pids", cid, "cgroup.procs").split()) == 3)
    pids = json.loads(ocirt("ps", "--format", "json", cid, check=True).stdout)
    assert sorted(pids) == sorted(int(p) for p in read("pids", cid, "cgroup.procs").split())
    table = ocirt("ps", cid, check=True).stdout.splitlines()
    assert "PID" in table[0] and len(table) == 4
    ocirt("delete", "--force", cid, check=True)


def test_stats_match_files(ocirt: Ocirt, cgbundle: Bundle, cid: str) -> None:
    start(ocirt, cgbundle, cid, memory={"limit": 64 << 20}, pids={"limit": 30})
    line = ocirt("events", "--stats", cid, check=True).stdout.strip()
    event = json.loads(line)
    assert event["type"] == "stats" and event["id"] == cid
    data = event["data"]
    assert set(data) >= {"cpu", "memory", "pids", "blkio", "hugetlb"}
    assert data["memory"]["usage"]["limit"] == 64 << 20
    assert data["pids"] == {"current": 1, "limit": 30}
    assert data["cpu"]["usage"]["total"] <= int(read("cpuacct", cid, "cpuacct.usage"))
    ocirt("delete", "--force", cid, check=True)


def test_oom_event(ocirt: Ocirt, cgbundle: Bundle, cid: str) -> None:
    cgbundle.write(args=["sh", "-c", "sleep 1; head -c 104857600 /dev/zero | tail; sleep 60"])
    start(ocirt, cgbundle, cid, memory={"limit": 8 << 20, "swap": 8 << 20})
    cmd = [OCIRT, "--root", str(ocirt.root), "events", "--interval", "1s", cid]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as events:
        try:
            assert events.stdout is not None
            deadline = time.monotonic() + 20
            seen = []
            while time.monotonic() < deadline:
                event = json.loads(events.stdout.readline())
                seen.append(event["type"])
                if event["type"] == "oom":
                    break
            assert "oom" in seen
        finally:
            events.kill()
    assert "oom_kill 1" in read("memory", cid, "memory.oom_control")
    ocirt("delete", "--force", cid, check=True)


def test_fork_bomb_stopped_at_pids_max(ocirt: Ocirt, cgbundle: Bundle, cid: str) -> None:
    cgbundle.write(args=["sh", "-c", "for i in $(seq 100); do sleep 60 & done; wait"])
    start(ocirt, cgbundle, cid, pids={"limit": 20})
    assert wait_for(lambda: int(read("pids", cid, "pids.events").split()[1]) > 0)
    assert int(read("pids", cid, "pids.current")) <= 20
    ocirt("delete", "--force", cid, check=True)


def test_denied_device(ocirt: Ocirt, cgbundle: Bundle, cid: str) -> None:
    cgbundle.write(
        args=["sh", "-c", "head -c1 /dev/zero >/dev/null && echo zero-ok; head -c1 /dev/null; echo done"]
    )
    cgbundle.config["linux"]["resources"] = {
        "devices": [
            {"allow": False, "access": "rwm"},
            {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "rw"},
        ]
    }  # fmt: skip
    cgbundle.write()
    result = ocirt("run", "--bundle", str(cgbundle.path), cid)
    assert "zero-ok" not in result.stdout and "done" in result.stdout
    assert "not permitted" in result.stderr.lower()


def test_kill_all_without_pid_namespace(ocirt: Ocirt, cgbundle: Bundle, cid: str) -> None:
    cgbundle.config["linux"]["namespaces"] = [
        ns for ns in cgbundle.config["linux"]["namespaces"] if ns["type"] != "pid"
    ]
    cgbundle.write(args=["sh", "-c", "sleep 60 & sleep 60 & wait"])
    start(ocirt, cgbundle, cid)
    assert wait_for(lambda: len(read("pids", cid, "cgroup.procs").split()) == 3)
    ocirt("kill", "--all", cid, "9", check=True)
    assert wait_for(lambda: read("pids", cid, "cgroup.procs") == "")
    ocirt("delete", cid, check=True)


def test_relative_path_nests_under_own_cgroup(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    bundle.config["linux"].pop("cgroupsPath", None)
    bundle.write(args=["sleep", "60"])
    result = ocirt.detached("run", "--detach", "--bundle", str(bundle.path), cid)
    assert result.returncode == 0, result.stderr
    own = dict(line.split(":", 2)[1:] for line in Path("/proc/self/cgroup").read_text().splitlines())
    pid = ocirt.state(cid)["pid"]
    theirs = dict(line.split(":", 2)[1:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines())
    assert theirs["memory"] == os.path.join(own["memory"], cid)
    ocirt("delete", "--force", cid, check=True)
    assert not Path(V1, "memory", own["memory"].lstrip("/"), cid).exists()


def test_without_cgroups_plugin_not_supported(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    bundle.write(args=["sleep", "60"])
    result = ocirt.detached("--no-plugin", "cgroups", "run", "--detach", "--bundle", str(bundle.path), cid)
    assert result.returncode == 0, result.stderr
    for command in ("pause", "resume", "ps", "update", "events"):
        out = ocirt(command, cid)
        assert out.returncode != 0 and "no loaded plugin" in out.stderr, (command, out.stderr)
    ocirt("delete", "--force", cid, check=True)


def test_systemd_cgroup_path_maps_to_cgroupfs(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    """``--systemd-cgroup`` with runc's ``slice:prefix:name``: no systemd here, so cgroupfs paths."""
    bundle.config["linux"]["cgroupsPath"] = f"ocirt-test.slice:ocirt:{cid}"
    bundle.write(args=["sleep", "60"])
    result = ocirt.detached("--systemd-cgroup", "run", "--detach", "--bundle", str(bundle.path), cid)
    assert result.returncode == 0, result.stderr
    # systemd nests slices by their dashes: ocirt-test.slice lives in ocirt.slice.
    scope = Path(V1, "pids", "ocirt.slice", "ocirt-test.slice", f"ocirt-{cid}.scope")
    try:
        assert str(ocirt.state(cid)["pid"]) in (scope / "cgroup.procs").read_text().split()
    finally:
        ocirt("delete", "--force", cid, check=True)
    assert not scope.exists() and not scope.parent.parent.exists()


def test_third_party_driver_chosen_by_annotation(
    ocirt: Ocirt, cgbundle: Bundle, cid: str, tmp_path: Path
) -> None:
    log = tmp_path / "driver.log"
    cgbundle.config["annotations"] = {
        "org.ocirt.cgroup-driver": "counting",
        "org.ocirt.test.driver-log": str(log),
    }
    cgbundle.write()
    plugin = ["-p", "tests.plugins_fixture.cgroup_driver"]
    result = ocirt.detached(*plugin, "run", "--detach", "--bundle", str(cgbundle.path), cid)
    assert result.returncode == 0, result.stderr
    state = json.loads((ocirt.root / cid / "state.json").read_text())
    assert state["plugin_data"]["cgroups"]["driver"] == "counting"
    assert log.read_text() == f"create {cid}\n"
    assert cg("pids", cid).is_dir()
    ocirt("delete", "--force", cid, check=True)
    assert not cg("pids", cid).exists()
