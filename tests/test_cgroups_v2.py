"""The cgroup v2 driver and its eBPF device filter.

The translation and the filter's bytes are checked anywhere. The live tests
need a cgroup2 hierarchy: freeze, kill and removal work on this host's
(controller-less) ``/sys/fs/cgroup/unified``; limits and devices need the pure
v2 kernel, where ``tests/test_v2vm.py`` runs this file (``OCIRT_TEST_V2VM=1``).
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import BUSYBOX, unique_id, wait_for

from ocirt.core.errors import SpecError
from ocirt.plugins.cgroups import bpf, v2
from ocirt.plugins.cgroups.v2 import CgroupV2

PURE_V2 = CgroupV2.available()
IN_VM = os.environ.get("OCIRT_TEST_V2VM") == "1"
needs_v2 = pytest.mark.skipif(
    not PURE_V2, reason="needs a pure cgroup v2 host (tests/test_v2vm.py boots one)"
)


# -- translation, without a kernel ---------------------------------------------


def test_runc_conversions() -> None:
    assert [v2.cpu_weight(s) for s in (2, 1024, 262144)] == [1, 39, 10000]
    assert [v2.io_weight(w) for w in (10, 500, 1000)] == [1, 4950, 10000]
    assert v2.swap_max(None, -1) == -1
    assert v2.swap_max(-1, 1 << 20) == -1
    assert v2.swap_max(3 << 20, 1 << 20) == 2 << 20
    assert v2.swap_max(None, 1 << 20) is None
    with pytest.raises(SpecError, match="at least"):
        v2.swap_max(1, 2)


def test_translate_in_runc_order() -> None:
    resources = {
        "memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": -1},
        "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "rdma": {"mlx5_1": {"hcaHandles": 3}},
        "unified": {"memory.high": "max"},
    }
    assert v2.translate(resources, lambda name: name != "io.bfq.weight") == [
        ("memory.swap.max", str(32 << 20)),
        ("memory.max", str(64 << 20)),
        ("memory.low", str(32 << 20)),
        ("cpu.weight", "39"),
        ("cpu.max", "50000 100000"),
        ("cpuset.cpus", "0"),
        ("cpuset.mems", "0"),
        ("pids.max", "max"),
        ("io.weight", "4950"),
        ("io.max", "8:0 rbps=1000"),
        ("hugetlb.2MB.max", "0"),
        ("rdma.max", "mlx5_1 hca_handle=3"),
        ("memory.high", "max"),
    ]
    assert v2.needed_controllers(resources).keys() == {
        "memory", "cpu", "cpuset", "pids", "io", "hugetlb", "rdma"
    }  # fmt: skip


def test_paths_as_runc() -> None:
    assert v2.resolve_path("/a/b", "id", own="/user/shell") == "/a/b"
    assert v2.resolve_path("x/y", "id", own="/user/shell") == "/user/x/y"
    assert v2.resolve_path(None, "id", own="/user/shell") == "/user/id"
    assert v2.resolve_path("/../../etc", "id", own="/") == "/etc"
    for root in ("/", "//", "/a/.."):
        with pytest.raises(SpecError, match="does not name a cgroup of its own"):
            v2.resolve_path(root, "id", own="/")


# -- the device program's bytes ------------------------------------------------


def decode(program: bytes) -> list[tuple[int, int, int, int, int]]:
    """(opcode, dst, src, off, imm) per instruction."""
    out = []
    for i in range(0, len(program), 8):
        code, regs, off, imm = struct.unpack_from("<BBhi", program, i)
        out.append((code, regs & 0xF, regs >> 4, off, imm))
    return out


PROLOGUE = [(0x61, 2, 1, 0, 0), (0x54, 2, 0, 0, 0xFFFF), (0x61, 3, 1, 0, 0), (0x74, 3, 0, 0, 16),
            (0x61, 4, 1, 4, 0), (0x61, 5, 1, 8, 0)]  # fmt: skip


def test_device_program_last_rule_first() -> None:
    rules = [
        {"allow": False, "access": "rwm"},  # type a: default deny
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},  # /dev/null
        {"allow": False, "type": "c", "major": 1, "access": "w"},  # no writes to any c 1:*
    ]
    assert decode(bpf.assemble(rules)) == [
        *PROLOGUE,
        # the last rule, tested first: c, access within "w", major 1 -> deny
        (0x55, 2, 0, 6, bpf.DEV_CHAR),
        (0xBC, 1, 3, 0, 0),
        (0x54, 1, 0, 0, bpf.ACC_WRITE),
        (0x5D, 1, 3, 3, 0),
        (0x55, 4, 0, 2, 1),
        (0xB4, 0, 0, 0, 0),
        (0x95, 0, 0, 0, 0),
        # c 1:3 rwm -> allow (rwm needs no access test)
        (0x55, 2, 0, 4, bpf.DEV_CHAR),
        (0x55, 4, 0, 3, 1),
        (0x55, 5, 0, 2, 3),
        (0xB4, 0, 0, 0, 1),
        (0x95, 0, 0, 0, 0),
        # nothing matched: the default
        (0xB4, 0, 0, 0, 0),
        (0x95, 0, 0, 0, 0),
    ]


def test_device_rules_reset_and_errors() -> None:
    allow_all_then_deny = [{"allow": True}, {"allow": False, "type": "b", "major": 8}]
    assert bpf.clean_rules(allow_all_then_deny) == (True, [(bpf.DEV_BLOCK, 8, -1, bpf.ACC_ALL, False)])
    assert bpf.clean_rules([{"allow": True, "type": "c"}, {"allow": False}]) == (False, [])
    with pytest.raises(bpf.DeviceRuleError, match=r"devices\[0\]\.access"):
        bpf.clean_rules([{"allow": True, "type": "c", "access": "x"}])
    with pytest.raises(bpf.DeviceRuleError, match=r"devices\[0\]\.type"):
        bpf.clean_rules([{"allow": True, "type": "p"}])


# -- live: a cgroup of our own -----------------------------------------------------


class UnifiedV2(CgroupV2):
    """The driver on this hybrid host's controller-less cgroup2."""

    mountpoint = "/sys/fs/cgroup/unified"


def _driver_class() -> type[CgroupV2] | None:
    if PURE_V2:
        return CgroupV2
    if UnifiedV2.available():
        return UnifiedV2
    return None


@pytest.fixture
def drv() -> Iterator[CgroupV2]:
    cls = _driver_class()
    if cls is None:
        pytest.skip("no cgroup2 hierarchy on this host")
    container: Any = SimpleNamespace(id=unique_id(), spec=None, options={})
    driver = cls(container, path=f"/ocirt-test/{container.id}")
    yield driver
    driver.destroy()
    assert not os.path.exists(driver.dir)


def in_cgroup(drv: CgroupV2, script: str) -> subprocess.Popen[str]:
    """A shell joined to the cgroup that runs ``script`` once sent a line."""
    proc = subprocess.Popen(
        [BUSYBOX, "sh", "-c", f"read go; {script}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    drv.join(proc.pid)
    return proc


def run_in(drv: CgroupV2, script: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = in_cgroup(drv, script)
    out, err = proc.communicate("go\n", timeout=timeout)
    return proc.returncode, out, err


def test_freeze_thaw_kill_and_delete(drv: CgroupV2) -> None:
    drv.create({})
    assert drv.made and os.path.isdir(drv.dir)
    proc = in_cgroup(drv, "sleep 60")
    assert drv.pids() == [proc.pid]
    drv.freeze()
    assert drv.frozen()
    drv.thaw()
    assert not drv.frozen()
    drv.kill_all(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert wait_for(lambda: drv.pids() == [])
    record = drv.record()
    again = type(drv)(drv.container, path="/elsewhere")
    again.restore(record)
    again.destroy()
    again.destroy()  # idempotent
    assert not os.path.exists(drv.dir)
    assert not any(os.path.exists(made) for made in record["made"])


def test_unified_keys_checked(drv: CgroupV2) -> None:
    for key in ("../cgroup.procs", "memory", "a/b.c"):
        with pytest.raises(SpecError, match="not a cgroup file name"):
            drv.validate({"unified": {key: "1"}})
    if "misc" not in drv._available_controllers():
        with pytest.raises(SpecError, match="not available"):
            drv.validate({"unified": {"misc.max": "1"}})


def test_rejected_value_names_file_and_value(drv: CgroupV2) -> None:
    drv.create({})
    with pytest.raises(v2.CgroupError, match=r"cgroup\.freeze: the kernel refused 'bogus'"):
        drv.update({"unified": {"cgroup.freeze": "bogus"}})


# -- live, pure v2 only (in the VM) ------------------------------------------------


LIMITS = {
    "memory": {"limit": 64 << 20, "reservation": 16 << 20},
    "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0"},
    "pids": {"limit": 10},
    "unified": {"memory.high": str(48 << 20)},
    "devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        # runc's default devices (zero among them) stay allowed unless denied.
        {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    ],
}


@needs_v2
def test_limits_in_files(drv: CgroupV2) -> None:
    drv.validate(LIMITS)
    drv.create(LIMITS)
    files = {
        name: drv.read(name).strip()
        for name in (
            "memory.max",
            "memory.low",
            "memory.high",
            "cpu.weight",
            "cpu.max",
            "cpuset.cpus",
            "pids.max",
        )
    }
    assert files == {
        "memory.max": str(64 << 20),
        "memory.low": str(16 << 20),
        "memory.high": str(48 << 20),
        "cpu.weight": "39",
        "cpu.max": "50000 100000",
        "cpuset.cpus": "0",
        "pids.max": "10",
    }
    code, _, err = run_in(drv, "true")
    assert code == 0, err
    stats = drv.stats()
    assert stats["memory"]["usage"]["limit"] == 64 << 20 and stats["pids"]["limit"] == 10
    assert drv.oom_kills() == 0


@needs_v2
def test_device_filter(drv: CgroupV2) -> None:
    drv.create(LIMITS)
    code, out, err = run_in(drv, "echo x >/dev/null && echo null-ok; head -c1 /dev/zero >/dev/null")
    assert "null-ok" in out
    assert code != 0 and "Operation not permitted" in err
    first = list(drv.bpf_ids)
    assert len(first) == 1
    drv.update({"devices": [{"allow": True, "type": "c", "major": 1, "access": "rw"}]})
    assert len(drv.bpf_ids) == 1 and drv.bpf_ids != first  # the old program detached
    code, _, err = run_in(drv, "head -c1 /dev/zero >/dev/null")
    assert code == 0, err


@needs_v2
def test_pids_max_stops_a_fork_bomb(drv: CgroupV2) -> None:
    drv.create({"pids": {"limit": 8}})
    _, out, err = run_in(drv, "for i in $(seq 30); do sleep 30 </dev/null >/dev/null 2>&1 & done")
    try:
        assert int(drv.read("pids.current")) <= 8
        assert "fork" in (out + err).lower() or "temporarily unavailable" in (out + err).lower(), err
    finally:
        drv.kill_all(signal.SIGKILL)
        assert wait_for(lambda: drv.pids() == [])


# -- through the CLI, as engines call it ------------------------------------------


def _v2_file(cid: str, name: str) -> str:
    with open(f"/sys/fs/cgroup/ocirt-test/{cid}/{name}") as f:
        return f.read().strip()


@needs_v2
def test_cli_limits_update_pause_ps_events_kill(ocirt: Any, bundle: Any) -> None:
    """A container with memory, cpu, pids and device limits, driven by the commands."""
    import json

    cid = unique_id("v2cli")
    bundle.config["linux"]["cgroupsPath"] = f"/ocirt-test/{cid}"
    bundle.config["linux"]["resources"] = {
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 96 << 20},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 10000, "cpus": "0"},
        "pids": {"limit": 40},
        "blockIO": {"weight": 500},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
        "devices": [
            {"allow": False, "access": "rwm"},
            {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        ],
    }
    bundle.write(args=["sh", "-c", "head -c1 /dev/zero >/dev/null || echo zero-denied >/tmp/seen; sleep 600"])
    result = ocirt.detached("run", "--detach", "--bundle", str(bundle.path), cid)
    assert result.returncode == 0, result.stderr
    try:
        assert _v2_file(cid, "memory.max") == str(64 << 20)
        assert _v2_file(cid, "cpu.max") == "50000 100000"
        assert _v2_file(cid, "pids.max") == "40"
        assert _v2_file(cid, "memory.low") == str(32 << 20)
        assert _v2_file(cid, "memory.swap.max") == str(32 << 20)  # memsw minus the limit
        assert _v2_file(cid, "cpu.weight") == "39"  # runc's conversion of 1024 shares
        assert _v2_file(cid, "cpu.max.burst") == "10000"
        assert _v2_file(cid, "cpuset.cpus") == "0"
        assert _v2_file(cid, "hugetlb.2MB.max") == str(4 << 20)
        weight = (
            "io.bfq.weight"
            if os.path.exists(f"/sys/fs/cgroup/ocirt-test/{cid}/io.bfq.weight")
            else "io.weight"
        )
        assert _v2_file(cid, weight).split()[-1] in ("500", "4950")  # bfq as is; io.weight 1+(w-10)*9999/990
        ocirt(
            "update", "--memory", str(128 << 20), "--pids-limit", "50", "--cpu-shares", "0", cid, check=True
        )
        assert _v2_file(cid, "memory.max") == str(128 << 20)
        assert _v2_file(cid, "pids.max") == "50"
        ocirt("pause", cid, check=True)
        assert "frozen 1" in _v2_file(cid, "cgroup.events")
        assert ocirt.state(cid)["status"] == "paused"
        ocirt("resume", cid, check=True)
        assert ocirt.state(cid)["status"] == "running"
        pid_file = bundle.path / "exec.pid"
        ocirt.detached("exec", "-d", "--pid-file", str(pid_file), cid, "sleep", "600")
        exec_pid = pid_file.read_text()
        assert exec_pid in _v2_file(cid, "cgroup.procs").split()  # exec joins the container's cgroup
        joined = ocirt("exec", cid, "cat", "/proc/self/cgroup", check=True).stdout
        assert joined == f"0::/ocirt-test/{cid}\n"  # no cgroup namespace in this config: the full path
        pids = json.loads(ocirt("ps", "--format", "json", cid, check=True).stdout)
        assert sorted(pids) == sorted(int(p) for p in _v2_file(cid, "cgroup.procs").split())
        stats = json.loads(ocirt("events", "--stats", cid, check=True).stdout)
        assert stats["data"]["pids"]["limit"] == 50
        ocirt("kill", "--all", cid, "9", check=True)
        assert wait_for(lambda: ocirt.state(cid)["status"] == "stopped")
    finally:
        ocirt("delete", "--force", cid)
    assert not os.path.exists(f"/sys/fs/cgroup/ocirt-test/{cid}")


@needs_v2
def test_cli_memory_hog_is_oom_killed_and_device_denied(ocirt: Any, bundle: Any) -> None:
    cid = unique_id("v2oom")
    bundle.config["linux"]["cgroupsPath"] = f"/ocirt-test/{cid}"
    bundle.config["linux"]["resources"] = {
        "memory": {"limit": 16 << 20, "swap": 16 << 20},
        "devices": [{"allow": False, "type": "c", "major": 1, "minor": 7, "access": "rwm"}],
    }
    script = "echo x >/dev/full; echo full=$?; head -c 200000000 /dev/zero | tail >/dev/null"
    bundle.write(args=["sh", "-c", script])
    result = ocirt("run", "--bundle", str(bundle.path), cid, timeout=120)
    assert "full=1" in result.stdout and "not permitted" in result.stderr.lower()  # denied /dev/full
    assert result.returncode == 137, (result.returncode, result.stderr)  # OOM-killed
    assert not os.path.exists(f"/sys/fs/cgroup/ocirt-test/{cid}")
