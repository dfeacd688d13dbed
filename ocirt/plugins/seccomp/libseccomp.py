"""A checked profile turned into a libseccomp filter (through pyseccomp), loaded, reported.

``build`` runs in the runtime, in ``ocirt_validate``: every rule is added there,
so whatever libseccomp refuses is reported with its field before anything is
forked, and the init, which inherits the built filter, only has to ``load`` it.
Importing pyseccomp costs tens of milliseconds (``ctypes.util`` runs ldconfig),
so this module is imported only for a spec with ``linux.seccomp`` and for
``ocirt features``.

As runc does: ``SCMP_ACT_KILL`` kills the thread; ``errnoRet`` defaults to
EPERM; a rule whose action equals the default is skipped; a syscall libseccomp
does not know is skipped with a warning; conditions on one argument index given
twice become one rule each; the ``no_new_privs`` bit is left to
``process.noNewPrivileges`` (libseccomp would set it on load); with no
``flags`` at all, SPEC_ALLOW is set when the kernel supports it.
"""

from __future__ import annotations

import errno
import os

import pyseccomp
from pyseccomp import SyscallFilter as Filter

from ocirt.core.errors import OcirtError
from ocirt.plugins.seccomp.profile import ACTIONS, ARCHITECTURES, FIELD, FLAGS, OPERATORS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.log import Logger
    from ocirt.core.spec import Spec
    from ocirt.plugins.seccomp.profile import Profile, Rule

OPERATOR_VALUES = {
    "SCMP_CMP_NE": pyseccomp.NE,
    "SCMP_CMP_LT": pyseccomp.LT,
    "SCMP_CMP_LE": pyseccomp.LE,
    "SCMP_CMP_EQ": pyseccomp.EQ,
    "SCMP_CMP_GE": pyseccomp.GE,
    "SCMP_CMP_GT": pyseccomp.GT,
    "SCMP_CMP_MASKED_EQ": pyseccomp.MASKED_EQ,
}

_LE, _64 = 0x40000000, 0x80000000  # AUDIT_ARCH_LE, AUDIT_ARCH_64BIT
ARCH_VALUES = {name: getattr(pyseccomp.Arch, name.removeprefix("SCMP_ARCH_"), None) for name in ARCHITECTURES}
ARCH_VALUES["SCMP_ARCH_LOONGARCH64"] = 258 | _64 | _LE  # EM_LOONGARCH: libseccomp >= 2.6 knows it

#: Filter flag -> libseccomp filter attribute (SCMP_FLTATR_CTL_*). WAITKILL (10)
#: exists from libseccomp 2.6; an older one refuses it, so it is then unsupported.
FLAG_ATTRS = {
    "SECCOMP_FILTER_FLAG_TSYNC": pyseccomp.Attr.CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": pyseccomp.Attr.CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": pyseccomp.Attr.CTL_SSB,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 10,
}

#: The notify API (SCMP_ACT_NOTIFY with TSYNC handled) needs API level 6:
#: libseccomp >= 2.5 on Linux >= 5.7, as runc requires.
NOTIFY_API = 6


def action_value(action: str, errno_ret: int | None) -> int:
    if action == "SCMP_ACT_ERRNO":
        return pyseccomp.ERRNO(errno.EPERM if errno_ret is None else errno_ret)
    if action == "SCMP_ACT_TRACE":
        return pyseccomp.TRACE(errno.EPERM if errno_ret is None else errno_ret)
    return {
        "SCMP_ACT_KILL": pyseccomp.KILL_THREAD,
        "SCMP_ACT_KILL_THREAD": pyseccomp.KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS": pyseccomp.KILL_PROCESS,
        "SCMP_ACT_TRAP": pyseccomp.TRAP,
        "SCMP_ACT_ALLOW": pyseccomp.ALLOW,
        "SCMP_ACT_LOG": pyseccomp.LOG,
        "SCMP_ACT_NOTIFY": pyseccomp.NOTIFY,
    }[action]


def build(profile: Profile, spec: Spec, log: Logger, warnings: list[str] | None = None) -> Filter:
    """The filter for ``profile``, every rule added; SpecError naming the field otherwise.

    Warnings (unknown syscall names) are logged, and appended to ``warnings``.

    Also makes libseccomp probe the kernel now (``get_api``): the result is
    cached in the library, so the init's ``load`` makes no probing syscalls.
    """
    api = pyseccomp.get_api()
    if profile.notify and api < NOTIFY_API:
        raise spec.error(
            f"{FIELD}.syscalls",
            f"SCMP_ACT_NOTIFY needs libseccomp >= 2.5 and Linux >= 5.7 (API level {api}, want {NOTIFY_API})",
        )
    default = action_value(profile.default_action, profile.default_errno)
    try:
        result = Filter(default)
    except OSError as e:
        raise spec.error(f"{FIELD}.defaultAction", f"{profile.default_action}: {_reason(e)}") from None
    for i, name in enumerate(profile.architectures):
        _add_arch(result, spec, name, f"{FIELD}.architectures[{i}]")
    _set_flags(result, spec, profile.flags)
    result.set_attr(pyseccomp.Attr.CTL_NNP, 0)
    if len(profile.rules) > 32:  # a binary tree of syscalls beats a list (runc's threshold)
        try:
            result.set_attr(pyseccomp.Attr.CTL_OPTIMIZE, 2)
        except OSError:
            pass
    unknown: set[str] = set()
    for rule in profile.rules:
        _add_rule(result, spec, rule, default, unknown, log, warnings if warnings is not None else [])
    return result


def _add_arch(result: Filter, spec: Spec, name: str, field: str) -> None:
    value = ARCH_VALUES.get(name)
    try:
        if value is None:
            raise OSError(errno.EINVAL, "unknown")
        result.add_arch(value)
    except OSError as e:
        if e.errno == errno.EEXIST:  # the native architecture is always in
            return
        if e.errno == errno.EDOM:
            raise spec.error(field, f"{name} cannot share a filter with this host's byte order") from None
        raise spec.error(field, f"{name} is not supported by this libseccomp") from None


def _set_flags(result: Filter, spec: Spec, flags: list[str] | None) -> None:
    if flags is None:  # not given at all: runc's default, where supported
        try:
            result.set_attr(FLAG_ATTRS["SECCOMP_FILTER_FLAG_SPEC_ALLOW"], 1)
        except OSError:
            pass
        return
    for i, flag in enumerate(flags):
        try:
            result.set_attr(FLAG_ATTRS[flag], 1)
        except OSError:
            raise spec.error(
                f"{FIELD}.flags[{i}]", f"{flag} is not supported by this libseccomp or kernel"
            ) from None


def _add_rule(
    result: Filter, spec: Spec, rule: Rule, default: int, unknown: set[str], log: Logger, warnings: list[str]
) -> None:
    action = action_value(rule.action, rule.errno_ret)
    if action == default:
        return  # redundant, and libseccomp refuses it
    number = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, rule.name)
    if number == -1:  # __NR_SCMP_ERROR; other negative numbers are libseccomp's pseudo-syscalls
        if rule.name not in unknown:
            unknown.add(rule.name)
            warnings.append(f"{FIELD}: unknown syscall {rule.name!r} ignored (in {rule.field}.names)")
            log.warning(warnings[-1])
        return
    conditions = [pyseccomp.Arg(index, OPERATOR_VALUES[op], a, b) for index, op, a, b in rule.args]
    indexes = [arg[0] for arg in rule.args]
    groups = [[c] for c in conditions] if len(set(indexes)) < len(indexes) else [conditions]
    for group in groups:
        try:
            result.add_rule(action, number, *group)
        except OSError as e:
            raise spec.error(rule.field, f"adding the rule for {rule.name!r}: {_reason(e)}") from None


def load(result: Filter, no_new_privs: bool) -> None:
    """seccomp(2) with the built program: from here on the process is filtered."""
    try:
        result.load()
    except OSError as e:
        if e.errno == errno.EACCES and not no_new_privs:
            raise OcirtError(
                "loading the seccomp filter: permission denied: without process.noNewPrivileges "
                "it needs CAP_SYS_ADMIN, which the container process no longer holds"
            ) from None
        raise OcirtError(f"loading the seccomp filter: {_reason(e)}") from None


def compiled(result: Filter) -> tuple[bytes, int]:
    """The BPF program libseccomp generates for ``result`` and the seccomp(2) flags its
    load would pass (``cache``); the filter attributes map one to one onto the flags."""
    from ocirt.plugins.seccomp.cache import FLAG_BITS

    flags = 0
    for name, bit in FLAG_BITS.items():
        try:
            if result.get_attr(FLAG_ATTRS[name]):
                flags |= bit
        except OSError:  # an attribute this libseccomp does not have is not set
            pass
    fd = os.memfd_create("ocirt-seccomp-bpf", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as f:
        try:
            result.export_bpf(f)
        except OSError as e:
            raise OcirtError(f"seccomp: exporting the filter: {_reason(e)}") from None
        f.seek(0)
        return f.read(), flags


def notify_fd(result: Filter) -> int:
    """The listener fd the kernel returned when a notifying filter was loaded.

    libseccomp keeps it; pyseccomp binds ``seccomp_notify_fd`` but exposes it
    only inside its own receive/respond helpers.
    """
    fd = int(pyseccomp._libseccomp.seccomp_notify_fd(result._filter))
    if fd < 0:
        raise OcirtError(f"seccomp: no notify fd after loading the filter: {os.strerror(-fd)}")
    return fd


def features() -> dict[str, Any]:
    """``linux.seccomp`` of ``ocirt features``: what this libseccomp and kernel accept."""
    scratch = Filter(pyseccomp.ALLOW)
    getpid = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, "getpid")
    return {
        "enabled": True,
        "actions": sorted(a for a in ACTIONS if _accepts_action(a, getpid)),
        "operators": sorted(
            op for op in OPERATORS if _accepts(Filter(pyseccomp.ALLOW), OPERATOR_VALUES[op], getpid)
        ),
        "archs": sorted(a for a in ARCHITECTURES if _knows_arch(Filter(pyseccomp.ALLOW), a)),
        "knownFlags": list(FLAGS),
        "supportedFlags": [f for f in FLAGS if _sets(scratch, FLAG_ATTRS[f])],
    }


def _accepts_action(action: str, syscall: int) -> bool:
    value = action_value(action, None)
    scratch = Filter(pyseccomp.KILL_PROCESS if value == pyseccomp.ALLOW else pyseccomp.ALLOW)
    try:
        scratch.add_rule(value, syscall)
    except OSError:
        return False
    return True


def _accepts(scratch: Filter, op: int, syscall: int) -> bool:
    try:
        scratch.add_rule(pyseccomp.ERRNO(errno.EPERM), syscall, pyseccomp.Arg(0, op, 1, 1))
    except OSError:
        return False
    return True


def _knows_arch(scratch: Filter, name: str) -> bool:
    value = ARCH_VALUES.get(name)
    if value is None:
        return False
    try:
        scratch.add_arch(value)
    except OSError as e:
        return e.errno in (errno.EEXIST, errno.EDOM)  # known, but native or of the other byte order
    return True


def _sets(scratch: Filter, attr: int) -> bool:
    try:
        scratch.set_attr(attr, 1)
    except OSError:
        return False
    return True


def _reason(e: OSError) -> str:
    return (e.strerror or str(e)).lower()
