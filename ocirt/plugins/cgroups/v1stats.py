"""``events --stats`` data from v1 files, in runc's JSON shape (libcontainer's types).

Imported only by ``events``: nothing on the create path needs it.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _read(directory: str | None, name: str) -> str | None:
    if directory is None:
        return None
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read()
    except OSError:
        return None


def _int(directory: str | None, name: str) -> int:
    text = _read(directory, name)
    try:
        return int(text.split()[0]) if text else 0
    except ValueError:
        return 0  # "max"


def _keyed(directory: str | None, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read(directory, name) or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def _entry(directory: str | None, prefix: str) -> dict[str, int]:
    return {
        "limit": _int(directory, f"{prefix}.limit_in_bytes"),
        "usage": _int(directory, f"{prefix}.usage_in_bytes"),
        "max": _int(directory, f"{prefix}.max_usage_in_bytes"),
        "failcnt": _int(directory, f"{prefix}.failcnt"),
    }


def _blkio_list(directory: str | None, name: str) -> list[dict[str, Any]]:
    out = []
    for line in (_read(directory, name) or "").splitlines():
        fields = line.split()
        if len(fields) == 3 and ":" in fields[0]:
            major, minor = fields[0].split(":")
            out.append({"major": int(major), "minor": int(minor), "op": fields[1], "value": int(fields[2])})
        elif len(fields) == 2 and ":" in fields[0]:
            major, minor = fields[0].split(":")
            out.append({"major": int(major), "minor": int(minor), "op": "", "value": int(fields[1])})
    return out


def collect(dirs: dict[str, str]) -> dict[str, Any]:
    cpuacct = dirs.get("cpuacct")
    cpu_stat = _keyed(dirs.get("cpu"), "cpu.stat")
    ticks = os.sysconf("SC_CLK_TCK")
    times = _keyed(cpuacct, "cpuacct.stat")
    cpu = {
        "usage": {
            "total": _int(cpuacct, "cpuacct.usage"),
            "percpu": [int(v) for v in (_read(cpuacct, "cpuacct.usage_percpu") or "").split()],
            "kernel": times.get("system", 0) * 1_000_000_000 // ticks,
            "user": times.get("user", 0) * 1_000_000_000 // ticks,
        },
        "throttling": {
            "periods": cpu_stat.get("nr_periods", 0),
            "throttledPeriods": cpu_stat.get("nr_throttled", 0),
            "throttledTime": cpu_stat.get("throttled_time", 0),
        },
    }
    mem = dirs.get("memory")
    raw = _keyed(mem, "memory.stat")
    memory = {
        "cache": raw.get("total_cache", raw.get("cache", 0)),
        "usage": _entry(mem, "memory"),
        "swap": _entry(mem, "memory.memsw"),
        "kernel": _entry(mem, "memory.kmem"),
        "kernelTCP": _entry(mem, "memory.kmem.tcp"),
        "raw": raw,
    }
    pids_dir = dirs.get("pids")
    pids = {"current": _int(pids_dir, "pids.current"), "limit": _int(pids_dir, "pids.max")}
    blk = dirs.get("blkio")
    blkio = {
        "ioServiceBytesRecursive": _blkio_list(blk, "blkio.throttle.io_service_bytes_recursive"),
        "ioServicedRecursive": _blkio_list(blk, "blkio.throttle.io_serviced_recursive"),
    }
    hugetlb: dict[str, Any] = {}
    huge = dirs.get("hugetlb")
    if huge:
        for name in sorted(os.listdir(huge)):
            if name.endswith(".usage_in_bytes"):
                size = name.split(".")[1]
                hugetlb[size] = {
                    "usage": _int(huge, name),
                    "max": _int(huge, f"hugetlb.{size}.max_usage_in_bytes"),
                    "failcnt": _int(huge, f"hugetlb.{size}.failcnt"),
                }
    return {"cpu": cpu, "memory": memory, "pids": pids, "blkio": blkio, "hugetlb": hugetlb}
