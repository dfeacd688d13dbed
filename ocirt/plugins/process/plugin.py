"""Shape the container process from the spec's ``process`` object.

Everything runs in the init after pivot_root (``ocirt_finalize_process``), in
this order: rlimits (while still privileged), cwd, umask, groups, gid, uid,
no_new_privs. Essential: the kernel needs it to start any container.
"""

from __future__ import annotations

import os
import resource

from ocirt import hookimpl
from ocirt.core import syscalls
from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container

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
    if process.get("terminal") and not container.options.get("console_socket"):
        if container.options.get("detach", True):
            raise spec.error(
                "process.terminal", "true needs --console-socket when the container runs detached"
            )
    elif process.get("terminal"):
        raise spec.error("process.terminal", "terminals through --console-socket are not supported yet")
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


@hookimpl(tryfirst=True)
def ocirt_after_pivot(container: Container) -> None:
    """Create ``process.cwd`` while ``/`` is still writable (before ``root.readonly``)."""
    process = container.require_spec().process
    if process is not None:
        os.makedirs(process.get("cwd") or "/", 0o755, exist_ok=True)


@hookimpl
def ocirt_finalize_process(container: Container) -> None:
    process = container.require_spec().process
    if process is None:
        return
    _apply_rlimits(process.get("rlimits") or [])
    cwd = process.get("cwd") or "/"
    os.chdir(cwd)
    user = process.get("user") or {}
    if "umask" in user:
        os.umask(user["umask"])
    _set_groups(user.get("additionalGids") or [])
    os.setgid(user.get("gid", 0))
    os.setuid(user.get("uid", 0))
    if process.get("noNewPrivileges"):
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)


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
