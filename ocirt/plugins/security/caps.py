"""Capabilities: the name table, checks against this host, and the transition in the init.

The five sets of ``process.capabilities`` are applied as runc applies them,
around the process plugin's setuid:

1. ``drop_bounding`` (root still): ``PR_CAPBSET_DROP`` for every capability not in
   ``bounding`` (this needs CAP_SETPCAP, so it must come before the setuid),
   then ``PR_SET_KEEPCAPS`` so that a setuid to a non-zero uid keeps the
   permitted set instead of clearing it;
2. the process plugin sets groups, gid and uid;
3. ``apply_sets``: keepcaps off, one capset(2) of effective, permitted and
   inheritable, then ``PR_CAP_AMBIENT_RAISE`` for each ambient capability
   (the kernel allows only those both permitted and inheritable).

With no ``capabilities`` object every set is empty: the container gets no
capability at all, as with runc.

Names are checked at validation, in the runtime: unknown names are refused
(runc only warns and drops them, so a typo silently weakens or breaks a
container), and so is a capability missing from the runtime's own bounding
set, which no process it starts can ever hold.
"""

from __future__ import annotations

from ocirt.core import fileio, syscalls
from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirt.core.spec import Spec

#: Capability numbers (linux/capability.h), up to CAP_CHECKPOINT_RESTORE (Linux 5.9).
NAMES: tuple[str, ...] = (
    "CAP_CHOWN",  # 0
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",  # 5
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",  # 10
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",  # 15
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",  # 20
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",  # 25
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",  # 30
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",  # 35
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",  # 40
)
NUMBERS = {name: number for number, name in enumerate(NAMES)}

#: The sets of ``process.capabilities``, in the order runc lists them.
SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


def masks(spec: Spec) -> dict[str, int]:
    """Check ``process.capabilities`` and return each set as a bit mask (0 when absent).

    ``last`` is the kernel's highest capability number, read here in the
    runtime: the init may have no /proc/sys to read it from.

    Raises SpecError naming the field for a malformed list, an unknown name, a
    capability this kernel or this runtime does not have, and combinations
    the kernel would refuse halfway through the container's setup.
    """
    process = spec.process or {}
    caps = process.get("capabilities")
    last = _kernel_last_cap()
    if caps is None:
        return {**dict.fromkeys(SETS, 0), "last": last, "ambient_skipped": 0}
    if not isinstance(caps, dict):
        raise spec.error("process.capabilities", "must be an object with the sets " + ", ".join(SETS))
    held = _runtime_bounding()
    result = {"last": last}
    for key in SETS:
        field = f"process.capabilities.{key}"
        names = caps.get(key) or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise spec.error(field, "must be a list of capability names such as CAP_KILL")
        mask = 0
        for i, name in enumerate(names):
            number = NUMBERS.get(name)
            if number is None:
                raise spec.error(f"{field}[{i}]", f"unknown capability {name!r} (names are like CAP_KILL)")
            if number > last:
                raise spec.error(
                    f"{field}[{i}]",
                    f"{NAMES[number]} is not known to this kernel (its last is {NAMES[last]})",
                )
            if not held >> number & 1:
                raise spec.error(
                    f"{field}[{i}]",
                    f"{NAMES[number]} is not in the runtime's own capability bounding set "
                    f"(CapBnd {held:016x} in /proc/self/status): no process it starts can hold it",
                )
            mask |= 1 << number
        result[key] = mask
    _check_combination(spec, result)
    # The kernel raises an ambient capability only if it is permitted and
    # inheritable. runc's own default config asks for ambient ones it does not
    # make inheritable and runc warns and goes on: so does ocirt.
    result["ambient_skipped"] = result["ambient"] & ~(result["permitted"] & result["inheritable"])
    result["ambient"] &= ~result["ambient_skipped"]
    return result


def _check_combination(spec: Spec, sets: dict[str, int]) -> None:
    """Refuse what capset(2) and PR_CAP_AMBIENT_RAISE would refuse, naming the capability."""
    rules = (
        ("effective", sets["permitted"], "permitted", "an effective capability must be permitted"),
        (
            "inheritable",
            sets["bounding"],
            "bounding",
            "the kernel adds inheritable capabilities only from the bounding set",
        ),
    )
    for key, allowed, where, why in rules:
        extra = sets[key] & ~allowed
        if extra:
            raise spec.error(
                f"process.capabilities.{key}",
                f"{', '.join(names(extra))} not in {where}: {why}",
            )


def names(mask: int) -> list[str]:
    """The names of the capabilities set in ``mask``."""
    return [name for number, name in enumerate(NAMES) if mask >> number & 1]


def _kernel_last_cap() -> int:
    try:
        return min(int(fileio.read_bytes("/proc/sys/kernel/cap_last_cap")), len(NAMES) - 1)
    except (OSError, ValueError):
        return len(NAMES) - 1


def _runtime_bounding() -> int:
    """The runtime's own bounding set (``CapBnd``): the most any of its children can have."""
    for line in fileio.read_bytes("/proc/self/status").splitlines():
        if line.startswith(b"CapBnd:"):
            return int(line.split()[1], 16)
    return (1 << len(NAMES)) - 1


def drop_bounding(sets: dict[str, int]) -> None:
    """Init, still root: shrink the bounding set, and keep permitted across the coming setuid."""
    keep = sets["bounding"]
    for number in range(sets["last"] + 1):
        if not keep >> number & 1:
            try:
                syscalls.prctl(syscalls.PR_CAPBSET_DROP, number)
            except OSError as e:
                raise OcirtError(f"dropping {NAMES[number]} from the bounding set: {_reason(e)}") from None
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 1)


def apply_sets(sets: dict[str, int]) -> None:
    """Init, after the setuid: the effective, permitted, inheritable and ambient sets."""
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 0)
    try:
        syscalls.capset(sets["effective"], sets["permitted"], sets["inheritable"])
    except OSError as e:
        have = syscalls.capget()[1]
        missing = sets["permitted"] & ~have
        detail = f" (not permitted to the runtime here: {', '.join(names(missing))})" if missing else ""
        raise OcirtError(f"process.capabilities: capset: {_reason(e)}{detail}") from None
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    for name in names(sets["ambient"]):
        try:
            syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, NUMBERS[name])
        except OSError as e:
            raise OcirtError(f"process.capabilities.ambient: raising {name}: {_reason(e)}") from None


def _reason(e: OSError) -> str:
    return (e.strerror or str(e)).lower() if e.errno else str(e)
