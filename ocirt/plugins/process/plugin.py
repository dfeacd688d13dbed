"""Shape the container process from the spec's ``process`` object.

Everything runs in the init after pivot_root (``ocirt_finalize_process``), in
this order: rlimits and the attributes of ``attrs`` (scheduler, I/O priority,
personality) while still privileged, cwd, umask, groups, gid, uid,
no_new_privs. The security plugin drops capabilities around the setuid
(tryfirst and trylast in the same hook). Essential: the kernel needs it to
start any container.

``process.cwd`` is created and entered by fd, resolved with the container's
``/`` as root (``openat2(RESOLVE_IN_ROOT)``, no /proc magic links), and checked
afterwards to lie under that root: a runtime fd left open, named as
``/proc/self/fd/N``, cannot become the container's working directory (the
class of CVE-2024-21626).
"""

from __future__ import annotations

import os
import resource

from ocirt import hookimpl
from ocirt.core import syscalls
from ocirt.core.errors import OcirtError
from ocirt.plugins.mounts import paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ocirt.core.context import Container

#: ``process`` fields handled by ``attrs``, imported only when one is set.
ATTR_FIELDS = ("oomScoreAdj", "scheduler", "ioPriority", "execCPUAffinity")
ATTRS = "process.attrs"

RLIMITS = (
    "AS", "CORE", "CPU", "DATA", "FSIZE", "LOCKS", "MEMLOCK", "MSGQUEUE",
    "NICE", "NOFILE", "NPROC", "RSS", "RTPRIO", "RTTIME", "SIGPENDING", "STACK",
)  # fmt: skip


@hookimpl
def ocirt_validate(container: Container) -> None:
    spec = container.require_spec()
    process = spec.process
    if process is None:
        return
    if process.get("terminal") and "terminal" not in container.local:  # set by a terminal plugin
        raise spec.error("process.terminal", "true, but no loaded plugin provides terminals")
    user = process.get("user") or {}
    for key in ("uid", "gid", "umask"):
        if key in user and (not isinstance(user[key], int) or user[key] < 0):
            raise spec.error(f"process.user.{key}", "must be a non-negative integer")
    gids = user.get("additionalGids") or []
    if not isinstance(gids, list) or not all(isinstance(g, int) and g >= 0 for g in gids):
        raise spec.error("process.user.additionalGids", "must be a list of non-negative integers")
    for i, limit in enumerate(process.get("rlimits") or []):
        kind = limit.get("type") if isinstance(limit, dict) else None
        if not isinstance(kind, str) or kind.removeprefix("RLIMIT_") not in RLIMITS:
            raise spec.error(f"process.rlimits[{i}].type", f"unknown rlimit {kind!r}")
        for key in ("soft", "hard"):
            if not isinstance(limit.get(key), int):
                raise spec.error(f"process.rlimits[{i}].{key}", "must be an integer")
    if any(process.get(f) is not None for f in ATTR_FIELDS) or spec.section("linux.personality"):
        # Imported here, in the runtime: the init applies them after pivot_root.
        from ocirt.plugins.process import attrs

        container.local[ATTRS] = attrs.check(spec)


@hookimpl
def ocirt_before_fork(container: Container) -> None:
    """oomScoreAdj: set on the runtime itself, so that the init inherits it at the fork."""
    oom = container.local.get(ATTRS, {}).get("oom")
    if oom is not None:
        from ocirt.plugins.process import attrs

        container.local["process.oom_restore"] = attrs.set_oom_score_adj(oom)


@hookimpl
def ocirt_after_fork(container: Container) -> None:
    old = container.local.pop("process.oom_restore", None)
    if old is not None:
        from ocirt.plugins.process import attrs

        attrs.restore_oom_score_adj(old)


@hookimpl(tryfirst=True)
def ocirt_after_pivot(container: Container) -> None:
    """Create ``process.cwd`` while ``/`` is still writable (before ``root.readonly``)."""
    process = container.require_spec().process
    if process is not None:
        cwd = process.get("cwd") or "/"
        os.close(_in_root(cwd, lambda root: paths.make_in_root(root, cwd)))


@hookimpl
def ocirt_finalize_process(container: Container) -> None:
    process = container.require_spec().process
    if process is None:
        return
    if not container.exec_target and os.getsid(0) != os.getpid():
        # As runc: the init leads a session of its own, not the caller's (a
        # checkpoint cannot take a session whose leader is outside the container).
        os.setsid()
    _apply_rlimits(process.get("rlimits") or [])
    if ATTRS in container.local:
        from ocirt.plugins.process import attrs  # loaded by ocirt_validate

        attrs.apply(container.local[ATTRS])
    _enter_cwd(process.get("cwd") or "/")
    user = process.get("user") or {}
    if "umask" in user:
        os.umask(user["umask"])
    _set_groups(user.get("additionalGids") or [])
    os.setgid(user.get("gid", 0))
    os.setuid(user.get("uid", 0))
    if process.get("noNewPrivileges"):
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)


def _in_root(cwd: str, opener: Callable[[int], int]) -> int:
    """Run ``opener`` on an fd of ``/``, with errors naming ``process.cwd``."""
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return opener(root)
    except OSError as e:
        raise OcirtError(f"process.cwd {cwd!r}: {(e.strerror or str(e)).lower()}") from None
    finally:
        os.close(root)


def _enter_cwd(cwd: str) -> None:
    """fchdir to ``cwd`` opened inside the container's root, then check where that is."""
    fd = _in_root(cwd, lambda root: paths.open_in_root(root, cwd, os.O_PATH | os.O_DIRECTORY))
    try:
        os.fchdir(fd)
    finally:
        os.close(fd)
    try:
        where = os.getcwd()
    except OSError:  # glibc reports a directory outside the root as ENOENT
        where = "(unreachable)"
    if not where.startswith("/"):
        raise OcirtError(f"process.cwd {cwd!r} is outside the container's root filesystem ({where}): refused")


def _set_groups(gids: list[int]) -> None:
    """setgroups(2), which a user namespace whose maps a non-root runtime wrote denies.

    There the process keeps the groups it has (none mapped), as with runc; asking
    for additional groups is an error.
    """
    try:
        os.setgroups(gids)
    except PermissionError:
        try:
            with open("/proc/self/setgroups") as f:
                denied = f.read().strip() == "deny"
        except OSError:
            denied = False
        if not denied:
            raise
        if gids:
            raise OcirtError(
                "process.user.additionalGids: setgroups is denied in this user namespace "
                "(its maps were written without root)"
            ) from None


def _apply_rlimits(limits: list[dict[str, Any]]) -> None:
    for limit in limits:
        name = limit["type"] if limit["type"].startswith("RLIMIT_") else f"RLIMIT_{limit['type']}"
        try:
            resource.setrlimit(getattr(resource, name), (limit["soft"], limit["hard"]))
        except (OSError, ValueError) as e:
            current = resource.getrlimit(getattr(resource, name))
            raise OcirtError(
                f"setting {name} to soft {limit['soft']} hard {limit['hard']}: {e} "
                f"(the runtime's own limit is soft {current[0]} hard {current[1]})"
            ) from None
