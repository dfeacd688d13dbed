"""Create or join Linux namespaces, set the hostname, bring up loopback.

Namespaces with a ``path`` are joined with setns, the others created with one
unshare, in the setup child (``ocirt_enter_namespaces``). pid and time
namespaces apply to children only: the runtime enters them just before the
fork (``ocirt_before_fork``), so the setup child is itself the init; with a
user namespace they are created inside it and the setup child forks the init.
The cgroup namespace is created later, in the init, once the runtime
has placed it in its cgroup, so that the cgroup root is the container's own.

A new user namespace comes first (``userns``): the runtime writes its maps from
outside, and every namespace created after it is owned by it. Time offsets
(``timens``) and sysctls (``sysctl``) live in modules of their own, imported
only when the spec uses them.
"""

from __future__ import annotations

import os
import sys

from ocirt import hookimpl
from ocirt.core import syscalls
from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ocirt.core.context import Container

#: OCI namespace type -> clone flag.
FLAGS = {
    "pid": syscalls.CLONE_NEWPID,
    "network": syscalls.CLONE_NEWNET,
    "mount": syscalls.CLONE_NEWNS,
    "ipc": syscalls.CLONE_NEWIPC,
    "uts": syscalls.CLONE_NEWUTS,
    "user": syscalls.CLONE_NEWUSER,
    "cgroup": syscalls.CLONE_NEWCGROUP,
    "time": syscalls.CLONE_NEWTIME,
}

#: Types this version can handle (``ocirt features``).
SUPPORTED = tuple(FLAGS)

#: Namespaces that only the children of the caller enter.
CHILDREN_ONLY = ("pid", "time")

NS_GET_NSTYPE = 0xB703


def namespaces(container: Container) -> list[dict[str, Any]]:
    spec = container.require_spec()
    return spec.section("linux.namespaces", list) or []


def wanted(container: Container, ns_type: str) -> dict[str, Any] | None:
    """The entry for ``ns_type``, or None if the container shares the host's."""
    for ns in namespaces(container):
        if ns.get("type") == ns_type:
            return ns
    return None


@hookimpl
def ocirt_features(container: Container | None) -> dict[str, Any]:
    return {"linux": {"namespaces": list(SUPPORTED)}}


@hookimpl
def ocirt_validate(container: Container) -> None:
    spec = container.require_spec()
    seen: set[str] = set()
    for i, ns in enumerate(namespaces(container)):
        field = f"linux.namespaces[{i}]"
        if not isinstance(ns, dict):
            raise spec.error(field, "must be an object with a type")
        ns_type = ns.get("type")
        if ns_type not in FLAGS:
            raise spec.error(
                f"{field}.type", f"unknown namespace type {ns_type!r} (known: {', '.join(FLAGS)})"
            )
        if ns_type in seen:
            raise spec.error(f"{field}.type", f"namespace type {ns_type!r} is listed twice")
        seen.add(ns_type)
        path = ns.get("path")
        if path is not None:
            _check_path(spec, f"{field}.path", path, ns_type)
    user = wanted(container, "user")
    mapped = spec.section("linux.uidMappings", list) or spec.section("linux.gidMappings", list)
    if user is not None or mapped:
        from ocirt.plugins.namespaces import userns

        userns.validate(container, user)
    elif seen and os.geteuid() != 0:
        raise spec.error(
            "linux.namespaces",
            "without root, namespaces can only be made inside a user namespace: add "
            '{"type": "user"} with linux.uidMappings and gidMappings (see `ocirt spec --rootless`)',
        )
    if spec.section("linux.timeOffsets"):
        from ocirt.plugins.namespaces import timens

        timens.validate(spec, wanted(container, "time"))
    uts = wanted(container, "uts")
    for key in ("hostname", "domainname"):
        if spec.data.get(key) and (uts is None or uts.get("path")):
            raise spec.error(key, f"setting the {key} needs a new uts namespace in linux.namespaces")
    if spec.section("linux.sysctl"):
        # Imported here, in the runtime: the init applies them after pivot_root,
        # where it cannot import any more.
        from ocirt.plugins.namespaces import sysctl

        sysctl.validate(container)


def _check_path(spec: Any, field: str, path: Any, ns_type: str) -> None:
    import fcntl

    if not isinstance(path, str) or not os.path.isabs(path):
        raise spec.error(field, f"must be an absolute path, not {path!r}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise spec.error(field, f"{path}: {(e.strerror or str(e)).lower()}") from None
    try:
        actual = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        raise spec.error(field, f"{path} is not a namespace file") from None
    finally:
        os.close(fd)
    if actual != FLAGS[ns_type]:
        kind = next((k for k, v in FLAGS.items() if v == actual), "another")
        raise spec.error(field, f"{path} is a {kind} namespace, not a {ns_type} namespace")


def _enter(ns: dict[str, Any]) -> None:
    """setns into ``ns["path"]``, with an error naming the namespace."""
    fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(fd, FLAGS[ns["type"]])
    except OSError as e:
        reason = (e.strerror or str(e)).lower()
        raise OcirtError(f"joining the {ns['type']} namespace {ns['path']}: {reason}") from None
    finally:
        os.close(fd)


def _unshare(flags: int) -> None:
    try:
        syscalls.unshare(flags)
    except OSError as e:
        raise OcirtError(f"creating namespaces: unshare: {(e.strerror or str(e)).lower()}") from None


@hookimpl
def ocirt_before_fork(container: Container) -> None:
    """Enter the pid and time namespaces in the runtime, so the init is its direct child.

    Both apply to the children of the caller only. Doing it here saves a second
    fork in the setup child. With a user namespace they must be created inside
    it, so then the setup child does it and forks the init.
    """
    if wanted(container, "user") is not None:
        return
    saved: dict[str, int] = {}
    container.local["namespaces.restore"] = saved
    for ns in namespaces(container):
        if ns["type"] not in CHILDREN_ONLY:
            continue
        proc_name = "pid_for_children" if ns["type"] == "pid" else "time_for_children"
        saved[ns["type"]] = os.open(f"/proc/self/ns/{proc_name}", os.O_RDONLY | os.O_CLOEXEC)
        if ns.get("path"):
            _enter(ns)
        else:
            _unshare(FLAGS[ns["type"]])
            if ns["type"] == "time":
                _write_time_offsets(container)


@hookimpl
def ocirt_after_fork(container: Container) -> None:
    """Back to the runtime's own namespaces for any later child (hooks, helpers)."""
    for ns_type, fd in container.local.pop("namespaces.restore", {}).items():
        try:
            syscalls.setns(fd, FLAGS[ns_type])
        finally:
            os.close(fd)


def with_dumpable(action: Callable[[], object]) -> None:
    """Run ``action`` with the setup child dumpable, then make it non-dumpable again.

    The setup child is not dumpable (see ``lifecycle``), so its /proc files
    belong to the host's root: neither a runtime without root (writing the
    uid and gid maps) nor root in the new user namespace (writing its own
    ``timens_offsets``) could open them. The windows are kept to these two
    writes: nothing of this container runs yet, but a joined user namespace may
    hold another's processes.
    """
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 1)
    try:
        action()
    finally:
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)


def _write_time_offsets(container: Container) -> None:
    """Right after unshare(CLONE_NEWTIME), before any process is in the namespace."""
    spec = container.require_spec()
    if spec.section("linux.timeOffsets"):
        from ocirt.plugins.namespaces import timens

        timens.write_offsets(spec)


@hookimpl
def ocirt_enter_namespaces(container: Container) -> None:
    """Join (user first, as runc), create the user namespace, then the others inside it."""
    entered_before_fork = "namespaces.restore" in container.local
    user = wanted(container, "user")
    if user is not None:
        # Inside, the runtime's own files may be out of the mapped ids' reach (an
        # interpreter under a 0700 home): import now what is needed later.
        import struct  # noqa: F401 - loopback_up

        from ocirt.plugins.namespaces import userns  # loaded by ocirt_validate

        if user.get("path"):
            _enter(user)
            userns.check_joined(container)
    unshare_flags = 0
    for ns in namespaces(container):
        ns_type = ns["type"]
        if ns_type == "user":
            continue
        if ns_type == "cgroup" and not ns.get("path"):
            continue  # created in the init, after it joined its cgroup
        if ns_type in CHILDREN_ONLY and entered_before_fork:
            continue
        if ns.get("path"):
            _enter(ns)
        else:
            unshare_flags |= FLAGS[ns_type]
        if ns_type in CHILDREN_ONLY:
            container.fork_init = True
    if user is not None and not user.get("path"):
        _unshare(syscalls.CLONE_NEWUSER)
        with_dumpable(lambda: container.ask_runtime("userns-maps"))
        userns.become_root()
    if unshare_flags:
        _unshare(unshare_flags)
        if unshare_flags & syscalls.CLONE_NEWTIME:
            with_dumpable(lambda: _write_time_offsets(container))
    spec = container.require_spec()
    if spec.data.get("hostname"):
        syscalls.sethostname(spec.data["hostname"])
    if spec.data.get("domainname"):
        syscalls.setdomainname(spec.data["domainname"])
    network = wanted(container, "network")
    if network is not None and not network.get("path"):
        loopback_up()


#: /proc/<pid>/ns names in the order ``exec`` joins them: user first (it owns the
#: others), mount last (it changes our root).
JOIN_ORDER = ("user", "ipc", "uts", "net", "cgroup", "pid", "time", "mnt")
PROC_FLAGS = {**FLAGS, "net": syscalls.CLONE_NEWNET, "mnt": syscalls.CLONE_NEWNS}


@hookimpl
def ocirt_join_container(container: Container) -> None:
    """exec: setns into every namespace of the init that differs from ours."""
    from ocirt.plugins.namespaces import userns  # before any setns: our files may be out of reach after

    init = container.exec_target
    fds: list[tuple[str, int]] = []
    try:
        for name in JOIN_ORDER:
            try:
                theirs = os.stat(f"/proc/{init}/ns/{name}")
                ours = os.stat(f"/proc/self/ns/{name}")
            except FileNotFoundError:
                continue  # a kernel without this namespace type
            if (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino):
                fds.append((name, os.open(f"/proc/{init}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)))
        for name, fd in fds:
            try:
                syscalls.setns(fd, PROC_FLAGS[name])
            except OSError as e:
                reason = (e.strerror or str(e)).lower()
                raise OcirtError(f"exec: joining the {name} namespace of pid {init}: {reason}") from None
            if name == "user":
                userns.become_root(required=False)
            if name in CHILDREN_ONLY:
                container.fork_init = True
    finally:
        for _, fd in fds:
            os.close(fd)


@hookimpl
def ocirt_runtime_request(container: Container, name: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """Runtime: write the uid/gid maps of the setup child's new user namespace."""
    if name != "userns-maps":
        return None
    from ocirt.plugins.namespaces import userns

    userns.write_maps(container, container.setup_pid)
    return {"written": True}


@hookimpl(tryfirst=True)
def ocirt_after_pivot(container: Container) -> None:
    """sysctls, before other plugins make /proc/sys read-only (``readonlyPaths``)."""
    if container.require_spec().section("linux.sysctl"):
        from ocirt.plugins.namespaces import sysctl  # loaded by ocirt_validate, before pivot_root

        sysctl.apply(container)


@hookimpl(tryfirst=True)
def ocirt_setup_rootfs(container: Container) -> None:
    cgroup = wanted(container, "cgroup")
    if cgroup is not None and not cgroup.get("path"):
        syscalls.unshare(syscalls.CLONE_NEWCGROUP)


def loopback_up() -> None:
    """Set IFF_UP on ``lo`` with one ioctl.

    One flag on one interface needs no netlink library; importing pyroute2
    would cost about 200 ms on every container start.
    """
    import fcntl

    af_inet, sock_dgram, sock_cloexec = 2, 2, 0o2000000
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    fd = syscalls.socket(af_inet, sock_dgram | sock_cloexec)
    try:
        # struct ifreq, 40 bytes: the name in 16, then a union whose first member is
        # the short ifr_flags (native byte order). No `struct` import in the child.
        name = b"lo".ljust(16, b"\0")
        reply = fcntl.ioctl(fd, siocgifflags, name + bytes(24))
        flags = int.from_bytes(reply[16:18], sys.byteorder) | iff_up
        fcntl.ioctl(fd, siocsifflags, name + flags.to_bytes(2, sys.byteorder) + bytes(22))
    finally:
        os.close(fd)
