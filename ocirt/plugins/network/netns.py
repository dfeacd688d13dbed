"""The container's network namespace: kept alive while the container exists, and
netlink sockets opened inside it.

Why pin it: ``delete`` must undo what create did even when the init died
abruptly. Once the last process of a namespace is gone the kernel frees it, and
with it a moved dummy or veth device, before ``delete`` could move it back or a
CNI plugin could run ``DEL`` in it. A bind mount of ``/proc/<pid>/ns/net`` on a
file of the container's state directory (what ``ip netns add`` does under
/run/netns) keeps it until ``ocirt_cleanup`` unmounts it.

Why a socket made by ``setns``: a netlink socket belongs to the namespace it was
created in. The runtime enters the container's namespace for the one
``socket()`` call and comes straight back, then drives that socket with
pyroute2's ``IPRoute(fileno=...)``: no helper process (pyroute2's own
``netns=`` forks one per socket).
"""

from __future__ import annotations

import _socket
import os
from contextlib import contextmanager

from ocirt.core import syscalls
from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from pyroute2 import IPRoute

PIN_NAME = "netns"
NS_GET_NSTYPE = 0xB703
NETLINK_ROUTE = 0


def pin(state_dir: str, pid: int) -> str:
    """Bind-mount the init's network namespace on ``<state_dir>/netns``; return the path."""
    path = os.path.join(state_dir, PIN_NAME)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
    try:
        syscalls.mount(f"/proc/{pid}/ns/net", path, None, syscalls.MS_BIND)
    except OSError as e:
        raise OcirtError(
            f"pinning the network namespace of pid {pid}: {(e.strerror or str(e)).lower()}"
        ) from None
    return path


def unpin(path: str) -> None:
    """Undo ``pin``; nothing to do if it never happened."""
    try:
        syscalls.umount2(path, syscalls.MNT_DETACH)
    except OSError:
        pass  # not mounted (a create that failed before the pin)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def open_pinned(path: str) -> int | None:
    """An fd of the pinned namespace, or None if there is none (never pinned, unmounted)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if fcntl.ioctl(fd, NS_GET_NSTYPE) == syscalls.CLONE_NEWNET:
            return fd
    except OSError:
        pass  # a plain file: the bind mount is not there
    os.close(fd)
    return None


def netlink_socket(ns_fd: int) -> int:
    """A NETLINK_ROUTE socket created inside the namespace ``ns_fd``; returns its fd."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(ns_fd, syscalls.CLONE_NEWNET)
        try:
            sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_DGRAM, NETLINK_ROUTE)
        finally:
            syscalls.setns(own, syscalls.CLONE_NEWNET)
    finally:
        os.close(own)
    return sock.detach()


@contextmanager
def iproute(ns_fd: int | None = None) -> Iterator[IPRoute]:
    """pyroute2's ``IPRoute`` on the host (``None``) or inside the namespace ``ns_fd``."""
    from pyroute2 import IPRoute

    ipr = IPRoute() if ns_fd is None else IPRoute(fileno=netlink_socket(ns_fd))
    try:
        yield ipr
    finally:
        ipr.close()


def host_fd() -> int:
    """An fd of the runtime's own (the host's) network namespace."""
    return os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
