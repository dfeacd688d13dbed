"""Process attributes beyond identity: OOM score, scheduler, I/O priority, personality.

Imported (in ``ocirt_validate``, in the runtime) only when the spec sets one
of them, so a plain container pays nothing. ``check`` turns the spec's fields
into numbers, raising a SpecError naming the field; the init applies them in
``apply`` while it is still root with every capability (before the setuid and
the capability drop), since raising a priority needs CAP_SYS_NICE.

* ``oomScoreAdj`` is written by the runtime into its own
  ``/proc/self/oom_score_adj`` just before the fork and restored just after:
  the child inherits it. The init's own file is out of reach from inside: the
  init is not dumpable, so its /proc files belong to the host's root, which
  the root of a user namespace is not.
* ``execCPUAffinity`` is checked but not applied: the runtime spec makes it
  the affinity of processes ``exec``'d into the container, not of its init.
"""

from __future__ import annotations

import errno
import os

from ocirt.core import fileio, syscalls
from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.spec import Spec

POLICIES = {
    "SCHED_OTHER": 0,
    "SCHED_FIFO": 1,
    "SCHED_RR": 2,
    "SCHED_BATCH": 3,
    "SCHED_ISO": 4,  # reserved by Linux, never implemented
    "SCHED_IDLE": 5,
    "SCHED_DEADLINE": 6,
}
REALTIME = ("SCHED_FIFO", "SCHED_RR")
SCHED_FLAGS = {
    "SCHED_FLAG_RESET_ON_FORK": 0x01,
    "SCHED_FLAG_RECLAIM": 0x02,
    "SCHED_FLAG_DL_OVERRUN": 0x04,
    "SCHED_FLAG_KEEP_POLICY": 0x08,
    "SCHED_FLAG_KEEP_PARAMS": 0x10,
    "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
    "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40,
}
#: Clamps need values (sched_util_min/max) that the spec has no field for.
UNSUPPORTED_FLAGS = ("SCHED_FLAG_UTIL_CLAMP_MIN", "SCHED_FLAG_UTIL_CLAMP_MAX")

IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
IOPRIO_CLASS_SHIFT = 13
IOPRIO_WHO_PROCESS = 1

PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}
PERSONALITY_FLAGS = {
    "UNAME26": 0x0020000,
    "ADDR_NO_RANDOMIZE": 0x0040000,
    "FDPIC_FUNCPTRS": 0x0080000,
    "MMAP_PAGE_ZERO": 0x0100000,
    "ADDR_COMPAT_LAYOUT": 0x0200000,
    "READ_IMPLIES_EXEC": 0x0400000,
    "ADDR_LIMIT_32BIT": 0x0800000,
    "SHORT_INODE": 0x1000000,
    "WHOLE_SECONDS": 0x2000000,
    "STICKY_TIMEOUTS": 0x4000000,
    "ADDR_LIMIT_3GB": 0x8000000,
}

U64_MAX = 2**64 - 1
CAP_SYS_RESOURCE = 24


def check(spec: Spec) -> dict[str, Any]:
    """The spec's attributes as numbers, ready for ``apply`` and ``set_oom_score_adj``."""
    process = spec.process or {}
    result: dict[str, Any] = {}
    oom = process.get("oomScoreAdj")
    if oom is not None:
        if not _is_int(oom) or not -1000 <= oom <= 1000:
            raise spec.error("process.oomScoreAdj", f"must be an integer from -1000 to 1000, not {oom!r}")
        result["oom"] = oom
    if process.get("scheduler") is not None:
        result["scheduler"] = _check_scheduler(spec, process["scheduler"])
    if process.get("ioPriority") is not None:
        result["ioprio"] = _check_ioprio(spec, process["ioPriority"])
    persona = spec.section("linux.personality")
    if persona is not None:
        result["personality"] = _check_personality(spec, persona)
    affinity = process.get("execCPUAffinity")
    if affinity is not None:
        if not isinstance(affinity, dict):
            raise spec.error("process.execCPUAffinity", "must be an object with initial and final")
        for key in ("initial", "final"):
            if affinity.get(key):
                parse_cpus(spec, f"process.execCPUAffinity.{key}", affinity[key])
    return result


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_scheduler(spec: Spec, sched: Any) -> dict[str, int]:
    field = "process.scheduler"
    if not isinstance(sched, dict):
        raise spec.error(field, "must be an object with a policy")
    policy = sched.get("policy")
    if policy not in POLICIES:
        raise spec.error(f"{field}.policy", f"unknown policy {policy!r} (known: {', '.join(POLICIES)})")
    if policy == "SCHED_ISO":
        raise spec.error(f"{field}.policy", "SCHED_ISO is reserved by Linux and not implemented")
    nice, priority = sched.get("nice", 0), sched.get("priority", 0)
    if not _is_int(nice) or not -20 <= nice <= 19:
        raise spec.error(f"{field}.nice", f"must be an integer from -20 to 19, not {nice!r}")
    if policy in REALTIME:
        if not _is_int(priority) or not 1 <= priority <= 99:
            raise spec.error(f"{field}.priority", f"{policy} needs a priority from 1 to 99, not {priority!r}")
    elif priority != 0:
        raise spec.error(f"{field}.priority", f"must be 0 for {policy} (only SCHED_FIFO and SCHED_RR use it)")
    flags = 0
    names = sched.get("flags") or []
    if not isinstance(names, list):
        raise spec.error(f"{field}.flags", "must be a list of SCHED_FLAG_* names")
    for i, name in enumerate(names):
        if name not in SCHED_FLAGS:
            raise spec.error(
                f"{field}.flags[{i}]", f"unknown flag {name!r} (known: {', '.join(SCHED_FLAGS)})"
            )
        if name in UNSUPPORTED_FLAGS:
            raise spec.error(f"{field}.flags[{i}]", f"{name} needs a clamp value the spec cannot give")
        flags |= SCHED_FLAGS[name]
    times = {}
    for key in ("runtime", "deadline", "period"):
        value = sched.get(key, 0)
        if not _is_int(value) or not 0 <= value <= U64_MAX:
            raise spec.error(f"{field}.{key}", f"must be a number of nanoseconds, not {value!r}")
        if value and policy != "SCHED_DEADLINE":
            raise spec.error(f"{field}.{key}", f"applies to SCHED_DEADLINE only, not {policy}")
        times[key] = value
    if policy == "SCHED_DEADLINE":
        runtime, deadline, period = times["runtime"], times["deadline"], times["period"]
        if not 0 < runtime <= deadline or (period and deadline > period):
            raise spec.error(
                field, "SCHED_DEADLINE needs 0 < runtime <= deadline <= period (period 0: deadline)"
            )
    return {"policy": POLICIES[policy], "flags": flags, "nice": nice, "priority": priority, **times}


def _check_ioprio(spec: Spec, ioprio: Any) -> int:
    field = "process.ioPriority"
    if not isinstance(ioprio, dict):
        raise spec.error(field, "must be an object with class and priority")
    klass = ioprio.get("class")
    if klass not in IOPRIO_CLASSES:
        raise spec.error(f"{field}.class", f"unknown class {klass!r} (known: {', '.join(IOPRIO_CLASSES)})")
    level = ioprio.get("priority", 0)
    if not _is_int(level) or not 0 <= level <= 7:
        raise spec.error(f"{field}.priority", f"must be an integer from 0 (highest) to 7, not {level!r}")
    return IOPRIO_CLASSES[klass] << IOPRIO_CLASS_SHIFT | level


def _check_personality(spec: Spec, persona: Any) -> int:
    field = "linux.personality"
    domain = persona.get("domain")
    if domain not in PERSONALITY_DOMAINS:
        raise spec.error(f"{field}.domain", f"must be LINUX or LINUX32, not {domain!r}")
    value = PERSONALITY_DOMAINS[domain]
    flags = persona.get("flags") or []
    if not isinstance(flags, list):
        raise spec.error(f"{field}.flags", "must be a list of personality flag names")
    for i, name in enumerate(flags):
        if name not in PERSONALITY_FLAGS:
            raise spec.error(
                f"{field}.flags[{i}]", f"unknown flag {name!r} (known: {', '.join(PERSONALITY_FLAGS)})"
            )
        value |= PERSONALITY_FLAGS[name]
    return value


def parse_cpus(spec: Spec, field: str, text: Any) -> set[int]:
    """A CPU list such as ``0-3,7`` as a set, refusing CPUs this machine cannot have."""
    if not isinstance(text, str):
        raise spec.error(field, f"must be a CPU list such as '0-3,7', not {text!r}")
    cpus: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise spec.error(field, f"{text!r} is not a CPU list such as '0-3,7'")
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            raise spec.error(field, f"{text!r}: the range {part.strip()} is backwards")
        cpus.update(range(low, high + 1))
    possible = _possible_cpus()
    beyond = sorted(c for c in cpus if c > possible)
    if beyond:
        raise spec.error(field, f"{text!r}: this machine has CPUs 0-{possible}, not {beyond[0]}")
    return cpus


def _possible_cpus() -> int:
    """The highest CPU number this kernel can ever bring online."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            return int(f.read().strip().replace(",", "-").rsplit("-", 1)[-1])
    except (OSError, ValueError):
        return (os.cpu_count() or 1) - 1


# ---------------------------------------------------------------------- applying


def set_oom_score_adj(value: int) -> int:
    """Runtime: set its own oom_score_adj (the init inherits it at fork); return the old one."""
    path = "/proc/self/oom_score_adj"
    old = int(fileio.read_bytes(path))
    try:
        fileio.write_bytes(path, str(value).encode())
    except PermissionError:
        raise OcirtError(
            f"process.oomScoreAdj: setting {value} (the runtime has {old}): permission denied; "
            "a score below the runtime's own floor needs CAP_SYS_RESOURCE"
            f"{'' if _effective(24) else ', which this runtime does not have'}"
        ) from None
    return old


def _effective(cap: int) -> bool:
    return bool(syscalls.capget()[0] >> cap & 1)


def restore_oom_score_adj(value: int) -> None:
    """Runtime, after the fork: back to its own score.

    Raising a score never needs a privilege, and the old one is at or above the
    floor, so this succeeds; the runtime exits soon anyway, hence no error.
    """
    try:
        fileio.write_bytes("/proc/self/oom_score_adj", str(value).encode())
    except OSError:
        pass


def apply(attrs: dict[str, Any]) -> None:
    """Init, still root: scheduler, I/O priority and personality, each with an error naming its field."""
    sched = attrs.get("scheduler")
    if sched is not None:
        try:
            syscalls.sched_setattr(**sched)
        except OSError as e:
            raise OcirtError(f"process.scheduler: sched_setattr: {_sched_reason(e)}") from None
    ioprio = attrs.get("ioprio")
    if ioprio is not None:
        try:
            syscalls.ioprio_set(IOPRIO_WHO_PROCESS, 0, ioprio)
        except OSError as e:
            hint = " (the real-time class needs CAP_SYS_NICE or CAP_SYS_ADMIN outside any user namespace)"
            raise OcirtError(
                f"process.ioPriority: ioprio_set: {_reason(e)}{hint if e.errno == errno.EPERM else ''}"
            ) from None
    persona = attrs.get("personality")
    if persona is not None:
        try:
            syscalls.personality(persona)
        except OSError as e:
            raise OcirtError(f"linux.personality: personality({persona:#x}): {_reason(e)}") from None


def _sched_reason(e: OSError) -> str:
    if e.errno == errno.EPERM:
        return (
            "operation not permitted (real-time and deadline policies, and a lower nice value, need "
            "CAP_SYS_NICE outside any user namespace, or RLIMIT_RTPRIO/RLIMIT_NICE in process.rlimits)"
        )
    if e.errno == errno.EBUSY:
        return "device or resource busy (not enough SCHED_DEADLINE bandwidth left on these CPUs)"
    return _reason(e)


def _reason(e: OSError) -> str:
    return (e.strerror or str(e)).lower()
