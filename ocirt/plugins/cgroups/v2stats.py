"""``events --stats`` data read from a cgroup v2 directory, in runc's shape.

Kept apart from the driver: only ``events`` needs it, so other commands never
import it.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_MAX_U64 = (1 << 64) - 1


def _read(directory: str, name: str) -> str | None:
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read()
    except (FileNotFoundError, OSError):
        return None


def _keyed(text: str | None) -> dict[str, int]:
    """A flat-keyed file (``key value`` per line) as a dict of ints."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def _number(text: str | None) -> int:
    text = (text or "").strip()
    if text == "max":
        return _MAX_U64
    return int(text) if text.isdigit() else 0


def _io(text: str | None) -> dict[str, list[dict[str, Any]]]:
    """io.stat lines ``MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=..`` as runc's blkio entries."""
    service_bytes: list[dict[str, Any]] = []
    serviced: list[dict[str, Any]] = []
    for line in (text or "").splitlines():
        dev, *pairs = line.split()
        major, _, minor = dev.partition(":")
        values = dict(p.split("=", 1) for p in pairs if "=" in p)
        for key, op, target in (
            ("rbytes", "Read", service_bytes),
            ("wbytes", "Write", service_bytes),
            ("rios", "Read", serviced),
            ("wios", "Write", serviced),
        ):
            if key in values:
                target.append({"major": int(major), "minor": int(minor), "op": op, "value": int(values[key])})
    return {"ioServiceBytesRecursive": service_bytes, "ioServicedRecursive": serviced}


def collect(directory: str) -> dict[str, Any]:
    cpu = _keyed(_read(directory, "cpu.stat"))
    memstat = _keyed(_read(directory, "memory.stat"))
    usage = _number(_read(directory, "memory.current"))
    swap = _number(_read(directory, "memory.swap.current"))
    events = _keyed(_read(directory, "memory.events"))
    hugetlb: dict[str, Any] = {}
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if name.startswith("hugetlb.") and name.endswith(".current"):
            size = name[len("hugetlb.") : -len(".current")]
            hugetlb[size] = {
                "usage": _number(_read(directory, name)),
                "failcnt": _keyed(_read(directory, f"hugetlb.{size}.events")).get("max", 0),
            }
    return {
        "cpu": {
            "usage": {
                "total": cpu.get("usage_usec", 0) * 1000,
                "kernel": cpu.get("system_usec", 0) * 1000,
                "user": cpu.get("user_usec", 0) * 1000,
            },
            "throttling": {
                "periods": cpu.get("nr_periods", 0),
                "throttledPeriods": cpu.get("nr_throttled", 0),
                "throttledTime": cpu.get("throttled_usec", 0) * 1000,
            },
        },
        "memory": {
            "cache": memstat.get("file", 0),
            "usage": {
                "usage": usage,
                "limit": _number(_read(directory, "memory.max")),
                "failcnt": events.get("max", 0),
            },
            "swap_usage": {"usage": swap + usage, "limit": _number(_read(directory, "memory.swap.max"))},
            "raw": memstat,
        },
        "pids": {
            "current": _number(_read(directory, "pids.current")),
            "limit": _number(_read(directory, "pids.max")),
        },
        "blkio": _io(_read(directory, "io.stat")),
        "hugetlb": hugetlb,
    }
