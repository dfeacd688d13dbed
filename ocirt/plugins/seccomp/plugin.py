"""``linux.seccomp``: a libseccomp filter built at validation, loaded in the init as late as it can be.

The filter is checked and built in the runtime (``ocirt_validate``; the init
inherits it), and loaded at one of three points, the latest that works:

* ``exec``: ``ocirt_before_exec`` (trylast). Only the execve follows, so the
  runtime's own work (the handshake, the exec fifo, closing fds) is never
  caught, and a profile may deny anything the container does not need.
* ``create``: ``ocirt_finalize_process`` (trylast), when the profile uses
  SCMP_ACT_NOTIFY: the agent at ``listenerPath`` must receive the notify fd
  while the runtime still runs, so the init loads the filter before it reports
  ready and the runtime fetches the fd (``ocirt_runtime_request``, ``agent``).
* ``early``: ``ocirt_after_pivot`` (trylast), when loading later would fail.
  Without ``no_new_privs`` the kernel lets only a holder of CAP_SYS_ADMIN load
  a filter, and the init gives its capabilities up in ``ocirt_finalize_process``
  (a setuid to a non-zero uid, a capability set without CAP_SYS_ADMIN). runc
  makes the same choice (before dropping capabilities); it is the one case
  where the runtime's remaining syscalls (setuid, capset, the handshake, the
  fifo) must be allowed by the profile, as they must be with runc.

pyseccomp is imported only for a spec with ``linux.seccomp`` (and by
``ocirt features``), in the runtime, before any fork: after pivot_root the
init cannot import. A profile seen before is not even compiled again: its
program is kept (``cache``) and loaded with one ``seccomp(2)`` call.
"""

from __future__ import annotations

import os

from ocirt import hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container
    from ocirt.plugins.seccomp.cache import Program
    from ocirt.plugins.seccomp.libseccomp import Filter
    from ocirt.plugins.seccomp.profile import Profile

#: ``container.local`` key of the built filter, inherited by the init.
LOCAL = "seccomp"
REQUEST = "seccomp-notify"


class Pending:
    """A built filter (SCMP_ACT_NOTIFY) or compiled program waiting in the init for its load point."""

    def __init__(self, built: Filter | Program, point: str, profile: Profile, no_new_privs: bool) -> None:
        self.filter = built
        self.point = point
        self.profile = profile
        self.no_new_privs = no_new_privs


def load_point(process: dict[str, Any] | None, notify: bool) -> str:
    """``exec``, ``create`` or ``early`` (see the module docstring)."""
    if process is None:
        return "exec"  # no process, no exec: nothing to filter
    no_new_privs = bool(process.get("noNewPrivileges"))
    if not no_new_privs and not keeps_sys_admin(process):
        return "early"
    return "create" if notify else "exec"


def keeps_sys_admin(process: dict[str, Any]) -> bool:
    """Whether the process still holds CAP_SYS_ADMIN once its identity is set.

    As the spec (and runc) define it: root whose ``capabilities.effective``
    lists it. Without a ``capabilities`` object the process has none.
    """
    uid = (process.get("user") or {}).get("uid", 0)
    effective = (process.get("capabilities") or {}).get("effective") or []
    return uid == 0 and "CAP_SYS_ADMIN" in effective


@hookimpl
def ocirt_features(container: Container | None) -> dict[str, Any]:
    try:
        from ocirt.plugins.seccomp import libseccomp
    except (ImportError, OSError, RuntimeError):  # pyseccomp raises RuntimeError without libseccomp
        return {"linux": {"seccomp": {"enabled": False}}}
    return {"linux": {"seccomp": libseccomp.features()}}


@hookimpl
def ocirt_validate(container: Container) -> None:
    spec = container.require_spec()
    section = spec.section("linux.seccomp")
    if section is None:
        return
    from ocirt.plugins.seccomp import profile as profile_mod

    profile = profile_mod.parse(spec)
    if profile is None:
        return
    process = spec.process
    no_new_privs = bool(process and process.get("noNewPrivileges"))
    point = load_point(process, profile.notify)
    if not profile.notify:
        from ocirt.plugins.seccomp import cache

        program = cache.lookup(section)
        if program is not None:
            for warning in program.unknown:
                container.log.warning(warning)
            container.local[LOCAL] = Pending(program, point, profile, no_new_privs)
            return
    try:
        from ocirt.plugins.seccomp import libseccomp
    except (ImportError, OSError, RuntimeError) as e:
        raise spec.error("linux.seccomp", f"libseccomp is not usable here: {e}") from None
    warnings: list[str] = []
    built: Filter | Program = libseccomp.build(profile, spec, container.log, warnings)
    if not profile.notify:
        bpf, flags = libseccomp.compiled(built)
        cache.store(section, bpf, flags, warnings)
        built = cache.Program(bpf, flags, warnings)  # the same load path as later containers
    container.local[LOCAL] = Pending(built, point, profile, no_new_privs)


@hookimpl(trylast=True)
def ocirt_after_pivot(container: Container) -> None:
    _load_at(container, "early")


@hookimpl(trylast=True)
def ocirt_finalize_process(container: Container) -> None:
    _load_at(container, "create")


@hookimpl(trylast=True)
def ocirt_before_exec(container: Container) -> None:
    _load_at(container, "exec")


def _load_at(container: Container, point: str) -> None:
    pending: Pending | None = container.local.get(LOCAL)
    if pending is None or pending.point != point:
        return
    if not pending.profile.notify:
        pending.filter.load(pending.no_new_privs)  # a cache.Program
        return
    from ocirt.plugins.seccomp import libseccomp  # loaded by ocirt_validate

    libseccomp.load(pending.filter, pending.no_new_privs)
    if pending.profile.notify:
        fd = libseccomp.notify_fd(pending.filter)
        container.ask_runtime(REQUEST, fd=fd)
        os.close(fd)  # the agent has its copy


@hookimpl
def ocirt_runtime_request(container: Container, name: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """Runtime: copy the init's notify fd and send it to the agent at ``listenerPath``."""
    if name != REQUEST:
        return None
    from ocirt.plugins.seccomp import agent

    seccomp = container.require_spec().section("linux.seccomp") or {}
    agent.hand_over(container, int(data["fd"]), seccomp["listenerPath"], seccomp.get("listenerMetadata"))
    return {"sent": True}
