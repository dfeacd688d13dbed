"""``linux.timeOffsets``: the monotonic and boottime clocks of a new time namespace.

The offsets of a time namespace can be written only until a process enters
it, so they are written right after unshare(CLONE_NEWTIME) and before the init
is forked into it: by the runtime in ``ocirt_before_fork``, or by the setup
child when a user namespace must own the time namespace. ``/proc/self/timens_offsets``
names the caller's ``time_for_children`` namespace, the one just made.

Imported only when the spec has ``linux.timeOffsets``.
"""

from __future__ import annotations

from ocirt.plugins.namespaces.procfs import write_proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.spec import Spec

CLOCKS = ("monotonic", "boottime")
NANOS = 1_000_000_000


def validate(spec: Spec, time_ns: dict[str, Any] | None) -> None:
    offsets = spec.section("linux.timeOffsets")
    if not offsets:
        return
    if time_ns is None or time_ns.get("path"):
        raise spec.error("linux.timeOffsets", "needs a new time namespace in linux.namespaces")
    for clock, offset in offsets.items():
        field = f"linux.timeOffsets.{clock}"
        if clock not in CLOCKS:
            raise spec.error(field, f"unknown clock (known: {', '.join(CLOCKS)})")
        if not isinstance(offset, dict):
            raise spec.error(field, "must be an object with secs and nanosecs")
        secs, nanos = offset.get("secs", 0), offset.get("nanosecs", 0)
        if not isinstance(secs, int) or isinstance(secs, bool):
            raise spec.error(f"{field}.secs", f"must be an integer, not {secs!r}")
        if not isinstance(nanos, int) or isinstance(nanos, bool) or not 0 <= nanos < NANOS:
            raise spec.error(f"{field}.nanosecs", f"must be an integer from 0 to {NANOS - 1}, not {nanos!r}")


def write_offsets(spec: Spec) -> None:
    """Set the offsets of the time namespace our children will enter."""
    offsets = spec.section("linux.timeOffsets") or {}
    text = "".join(f"{clock} {o.get('secs', 0)} {o.get('nanosecs', 0)}\n" for clock, o in offsets.items())
    if not text:
        return
    write_proc("/proc/self/timens_offsets", text, f"linux.timeOffsets: writing {text.strip()!r}")
