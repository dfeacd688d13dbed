"""SCMP_ACT_NOTIFY: the runtime hands the init's notify fd to the agent at ``listenerPath``.

The filter is loaded in the init, but the agent must have the fd while the
runtime still runs (a notified syscall blocks until someone answers). So the
init tells the runtime the fd's number (``ask_runtime("seccomp-notify")``) and
the runtime copies it out of the init with ``pidfd_getfd`` (Linux >= 5.6), then
sends it as runc does: one connection to the unix stream socket, one message
holding the container process state as JSON and the fd in SCM_RIGHTS, named
``seccompFd`` in ``fds``.

Runtime process only; imported when such a request arrives.
"""

from __future__ import annotations

import ctypes
import os
import socket

from ocirt import OCI_VERSION
from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirt.core.context import Container

#: pidfd_getfd(2): the same number on every architecture (the unified table).
NR_PIDFD_GETFD = 438
#: How long the agent may take to accept the connection.
TIMEOUT = 10.0

_libc = ctypes.CDLL(None, use_errno=True)


def pidfd_getfd(pid: int, target_fd: int) -> int:
    """A duplicate, in this process, of fd ``target_fd`` of process ``pid`` (close-on-exec)."""
    pidfd = os.pidfd_open(pid)
    try:
        fd = _libc.syscall(NR_PIDFD_GETFD, ctypes.c_int(pidfd), ctypes.c_int(target_fd), ctypes.c_uint(0))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return int(fd)
    finally:
        os.close(pidfd)


def process_state(container: Container, metadata: str | None) -> dict[str, object]:
    """The runtime spec's container process state, for the init being created."""
    spec = container.require_spec()
    state: dict[str, object] = {
        "ociVersion": OCI_VERSION,
        "id": container.id,
        "status": "creating",
        "pid": container.init_pid,
        "bundle": container.bundle,
    }
    if spec.annotations:
        state["annotations"] = spec.annotations
    message: dict[str, object] = {"ociVersion": OCI_VERSION, "fds": ["seccompFd"], "pid": container.init_pid}
    if metadata:
        message["metadata"] = metadata
    message["state"] = state
    return message


def hand_over(container: Container, init_fd: int, listener: str, metadata: str | None) -> None:
    """Copy the init's fd ``init_fd`` and send it with the process state to ``listener``."""
    from ocirt.core import jsonio

    try:
        fd = pidfd_getfd(container.init_pid, init_fd)
    except OSError as e:
        raise OcirtError(
            f"seccomp: taking the notify fd {init_fd} from the init ({container.init_pid}): "
            f"pidfd_getfd: {(e.strerror or str(e)).lower()}"
        ) from None
    payload = jsonio.dumps(process_state(container, metadata)).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(listener)
            sent = socket.send_fds(sock, [payload], [fd])
            if sent < len(payload):  # the fd goes with the first part only
                sock.sendall(payload[sent:])
    except OSError as e:
        raise OcirtError(
            f"seccomp: cannot send the notify fd to the agent at {listener} "
            f"(linux.seccomp.listenerPath): {(e.strerror or str(e)).lower()}"
        ) from None
    finally:
        os.close(fd)
