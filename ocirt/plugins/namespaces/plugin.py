"""Create or join Linux namespaces, set the hostname, bring up loopback.

Namespaces with a ``path`` are joined with setns, the others created with one
unshare, in the setup child (``ocirt_enter_namespaces``). pid and time
namespaces apply to children only: the runtime enters them just before the
fork (``ocirt_before_fork``), so the setup child is itself the init; with a
user namespace they are created inside it and the setup child forks the init.
The cgroup namespace is created later, in the init, once the runtime
has placed it in its cgroup, so that the cgroup root is the container's own.
"""

from __future__ import annotations

import os

from ocirt import hookimpl
from ocirt.core import syscalls
from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
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

#: Types this version can handle; the others are refused at validation.
SUPPORTED = ("pid", "network", "mount", "ipc", "uts", "cgroup", "time")

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
        if ns_type not in SUPPORTED:
            raise spec.error(f"{field}.type", f"{ns_type} namespaces are not supported yet")
        path = ns.get("path")
        if path is not None:
            _check_path(spec, f"{field}.path", path, ns_type)
    if spec.section("linux.timeOffsets") and wanted(container, "time") is None:
        raise spec.error("linux.timeOffsets", "needs a new time namespace in linux.namespaces")
    if spec.section("linux.timeOffsets"):
        raise spec.error("linux.timeOffsets", "time namespace offsets are not supported yet")
    uts = wanted(container, "uts")
    for key in ("hostname", "domainname"):
        if spec.data.get(key) and (uts is None or uts.get("path")):
            raise spec.error(key, f"setting the {key} needs a new uts namespace in linux.namespaces")


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
    saved = {}
    for ns in namespaces(container):
        if ns["type"] not in CHILDREN_ONLY:
            continue
        proc_name = "pid_for_children" if ns["type"] == "pid" else "time_for_children"
        saved[ns["type"]] = os.open(f"/proc/self/ns/{proc_name}", os.O_RDONLY | os.O_CLOEXEC)
        if ns.get("path"):
            _enter(ns)
        else:
            _unshare(FLAGS[ns["type"]])
    container.local["namespaces.restore"] = saved


@hookimpl
def ocirt_after_fork(container: Container) -> None:
    """Back to the runtime's own namespaces for any later child (hooks, helpers)."""
    for ns_type, fd in container.local.pop("namespaces.restore", {}).items():
        try:
            syscalls.setns(fd, FLAGS[ns_type])
        finally:
            os.close(fd)


@hookimpl
def ocirt_enter_namespaces(container: Container) -> None:
    entered_before_fork = "namespaces.restore" in container.local
    unshare_flags = 0
    for ns in namespaces(container):
        ns_type = ns["type"]
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
    if unshare_flags:
        _unshare(unshare_flags)
    spec = container.require_spec()
    if spec.data.get("hostname"):
        syscalls.sethostname(spec.data["hostname"])
    if spec.data.get("domainname"):
        syscalls.setdomainname(spec.data["domainname"])
    network = wanted(container, "network")
    if network is not None and not network.get("path"):
        loopback_up()


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
    import _socket
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), siocgifflags, request))[1]
        fcntl.ioctl(sock.fileno(), siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))
    finally:
        sock.close()
