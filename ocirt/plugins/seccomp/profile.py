"""``linux.seccomp`` checked field by field, with runc's names and rules.

Pure Python, no libseccomp: what can be judged from the JSON alone is judged
here, so every mistake is reported with its field before anything is built.
What depends on this host's libseccomp and kernel (a flag, an architecture)
is checked when the filter is built (``libseccomp.build``), still in
``ocirt_validate``.

Imported only when the spec has ``linux.seccomp``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeGuard

    from ocirt.core.spec import Spec

FIELD = "linux.seccomp"

ACTIONS = (
    "SCMP_ACT_KILL",  # kills the thread, as in libseccomp
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
)

#: The actions that carry a return value (``errnoRet``); any other refuses one.
WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")

OPERATORS = (
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
)

#: Every name the runtime spec (and runc) knows; this host's libseccomp may know fewer.
ARCHITECTURES = (
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_LOONGARCH64",
)

FLAGS = (
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
)

#: Syscalls that must not notify: the init writes to the runtime after loading
#: a notifying filter and before the agent has its fd, so it would wait forever.
NOT_NOTIFIABLE = ("write",)

U64 = 1 << 64
#: The kernel keeps 16 bits of a filter's return data.
ERRNO_MAX = 0xFFFF


class Rule:
    """One syscall name of a ``syscalls[]`` entry, with the entry's action and conditions."""

    def __init__(
        self,
        name: str,
        action: str,
        errno_ret: int | None,
        args: list[tuple[int, str, int, int]],
        field: str,
    ) -> None:
        self.name = name
        self.action = action
        self.errno_ret = errno_ret
        #: (index, operator, value, valueTwo) per condition.
        self.args = args
        self.field = field


class Profile:
    """A checked ``linux.seccomp``: names still as strings, libseccomp not involved."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.default_action: str = data["defaultAction"]
        self.default_errno: int | None = data.get("defaultErrnoRet")
        self.architectures: list[str] = list(data.get("architectures") or [])
        #: None when the spec has no ``flags`` at all (runc then adds SPEC_ALLOW).
        self.flags: list[str] | None = data.get("flags")
        self.listener_path: str | None = data.get("listenerPath") or None
        self.listener_metadata: str | None = data.get("listenerMetadata") or None
        self.rules: list[Rule] = []

    @property
    def notify(self) -> bool:
        """Whether the filter hands a notify fd to an agent (``SCMP_ACT_NOTIFY``)."""
        return any(rule.action == "SCMP_ACT_NOTIFY" for rule in self.rules)


def parse(spec: Spec) -> Profile | None:
    """The checked profile, or None when it asks for nothing (no default action, no syscalls).

    runc treats an object with neither as "no seccomp"; so does ocirt.
    """
    data = spec.section(FIELD)
    if data is None:
        return None
    syscalls = data.get("syscalls")
    if data.get("defaultAction") in (None, "") and not syscalls:
        return None
    _check_action(spec, data.get("defaultAction"), f"{FIELD}.defaultAction")
    profile = Profile(data)
    _check_errno(spec, data, "defaultErrnoRet", profile.default_action, FIELD)
    if profile.default_action == "SCMP_ACT_NOTIFY":
        raise spec.error(
            f"{FIELD}.defaultAction",
            "SCMP_ACT_NOTIFY cannot be the default action (the runtime's own syscalls would wait "
            "for an agent that does not have the fd yet)",
        )
    _check_names(spec, data.get("architectures"), f"{FIELD}.architectures", ARCHITECTURES)
    _check_names(spec, data.get("flags"), f"{FIELD}.flags", FLAGS)
    for key in ("listenerPath", "listenerMetadata"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise spec.error(f"{FIELD}.{key}", "must be a string")
    if profile.listener_metadata and not profile.listener_path:
        raise spec.error(f"{FIELD}.listenerMetadata", "must not be set without listenerPath")
    if syscalls is not None and not isinstance(syscalls, list):
        raise spec.error(f"{FIELD}.syscalls", "must be a list")
    for i, entry in enumerate(syscalls or []):
        profile.rules.extend(_entry_rules(spec, entry, f"{FIELD}.syscalls[{i}]"))
    if profile.notify and not profile.listener_path:
        raise spec.error(f"{FIELD}.listenerPath", "required: SCMP_ACT_NOTIFY is used")
    return profile


def _entry_rules(spec: Spec, entry: Any, field: str) -> list[Rule]:
    if not isinstance(entry, dict):
        raise spec.error(field, "must be an object with names and action")
    names = entry.get("names")
    if not isinstance(names, list) or not names:
        raise spec.error(f"{field}.names", "must be a non-empty list of syscall names")
    for j, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise spec.error(f"{field}.names[{j}]", f"must be a syscall name, not {name!r}")
    action = _check_action(spec, entry.get("action"), f"{field}.action")
    errno_ret = _check_errno(spec, entry, "errnoRet", action, field)
    if action == "SCMP_ACT_NOTIFY":
        for name in names:
            if name in NOT_NOTIFIABLE:
                raise spec.error(
                    f"{field}.names",
                    f"SCMP_ACT_NOTIFY cannot be used for {name!r}: the runtime needs it "
                    "to hand the notify fd over",
                )
    raw_args = entry.get("args")
    if raw_args is not None and not isinstance(raw_args, list):
        raise spec.error(f"{field}.args", "must be a list")
    args = [_arg(spec, arg, f"{field}.args[{k}]") for k, arg in enumerate(raw_args or [])]
    return [Rule(name, action, errno_ret, args, field) for name in names]


def _arg(spec: Spec, arg: Any, field: str) -> tuple[int, str, int, int]:
    if not isinstance(arg, dict):
        raise spec.error(field, "must be an object with index, value and op")
    index = arg.get("index")
    if not _is_int(index) or not 0 <= index <= 5:
        raise spec.error(f"{field}.index", f"must be a syscall argument index from 0 to 5, not {index!r}")
    op = arg.get("op")
    if op not in OPERATORS:
        raise spec.error(f"{field}.op", f"unknown operator {op!r} (known: {', '.join(OPERATORS)})")
    values = []
    for key in ("value", "valueTwo"):
        value = arg.get(key, 0 if key == "valueTwo" else None)
        if not _is_int(value) or not 0 <= value < U64:
            raise spec.error(f"{field}.{key}", f"must be an unsigned 64-bit integer, not {value!r}")
        values.append(value)
    return index, op, values[0], values[1]


def _check_action(spec: Spec, action: Any, field: str) -> str:
    if action is None:
        raise spec.error(field, "missing")
    if action not in ACTIONS:
        raise spec.error(field, f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
    return str(action)


def _check_errno(spec: Spec, data: dict[str, Any], key: str, action: str, field: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not _is_int(value) or not 0 <= value <= ERRNO_MAX:
        raise spec.error(f"{field}.{key}", f"must be an errno number from 0 to {ERRNO_MAX}, not {value!r}")
    if action not in WITH_ERRNO:
        raise spec.error(f"{field}.{key}", f"{action} takes no errno (only {' and '.join(WITH_ERRNO)} do)")
    return int(value)


def _check_names(spec: Spec, values: Any, field: str, known: tuple[str, ...]) -> None:
    if values is None:
        return
    if not isinstance(values, list):
        raise spec.error(field, "must be a list of strings")
    for i, value in enumerate(values):
        if value not in known:
            raise spec.error(f"{field}[{i}]", f"unknown value {value!r} (known: {', '.join(known)})")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
