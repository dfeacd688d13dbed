"""The container's side of a console, as runc makes it.

The setup child connects to the console socket before it enters any namespace:
the path is the caller's, reachable with the caller's credentials, which the
root of a new user namespace may lack (engines keep the socket in a private
directory). After pivot_root the init opens ``/dev/ptmx``, the ptmx of the
container's own devpts instance, so the pty is ``/dev/pts/N`` inside the
container and no host terminal is in view; it sends the master over the socket
and makes the slave its stdio and controlling terminal.

Imported by ``ocirt_validate`` only when a terminal is asked for, since nothing
can be imported after pivot_root. It uses ``_socket``, the C module: ``socket``
would import ``enum`` and ``selectors`` for nothing used here.
"""

from __future__ import annotations

import _socket
import errno
import fcntl
import os
import struct
import termios

from ocirt.core import syscalls
from ocirt.core.errors import OcirtError

# asm-generic/ioctls.h (x86_64, aarch64); Python's termios does not export them.
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441

#: The size of sockaddr_un.sun_path: a longer path is reached through its directory.
SUN_PATH_MAX = 108

#: The name runc sends with the master (its file's name); engines only need the fd.
MASTER_NAME = b"/dev/ptmx"


class Console:
    """One container's console: where its master goes, its size, who owns the slave."""

    def __init__(self, socket_path: str, rows: int, cols: int, uid: int, bind_console: bool) -> None:
        self.socket_path = socket_path
        self.rows = rows
        self.cols = cols
        self.uid = uid
        self.bind_console = bind_console
        self.sock: _socket.socket | None = None

    def connect(self) -> None:
        """Setup child, still with the caller's namespaces and ids: connect to the socket."""
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        try:
            connect_unix(sock, self.socket_path)
        except OSError as e:
            sock.close()
            raise OcirtError(f"console socket {self.socket_path}: {reason(e)}") from None
        self.sock = sock

    def attach(self) -> None:
        """Init, after pivot_root: make the pty, send its master, take the slave as terminal."""
        master, slave, slave_path = open_pty()
        try:
            if self.rows and self.cols:
                set_size(master, self.rows, self.cols)
            _give_to(slave, self.uid)
            if self.bind_console:
                _bind_console(slave_path)
            self._send(master)
        except BaseException:
            os.close(slave)
            raise
        finally:
            os.close(master)  # the engine's copy is the only one left
        make_controlling_terminal(slave)

    def _send(self, master: int) -> None:
        """One message, as runc: the name as payload, the fd as SCM_RIGHTS."""
        if self.sock is None:
            raise OcirtError("console socket: not connected")
        rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", master))]
        try:
            self.sock.sendmsg([MASTER_NAME], rights)
        except OSError as e:
            raise OcirtError(f"sending the terminal to {self.socket_path}: {reason(e)}") from None
        finally:
            self.sock.close()
            self.sock = None


def connect_unix(sock: _socket.socket, path: str) -> None:
    """connect(2) to a unix socket path, however deep (engines' temp dirs can be)."""
    if len(os.fsencode(path)) < SUN_PATH_MAX:
        sock.connect(path)
        return
    directory = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock.connect(f"/proc/self/fd/{directory}/{os.path.basename(path)}")
    finally:
        os.close(directory)


def open_pty() -> tuple[int, int, str]:
    """(master, slave, slave path) of a new pty of the devpts ``/dev/ptmx`` leads to.

    The slave is opened from the master (TIOCGPTPEER) rather than by path where
    the kernel allows it, so it is that pty's slave whatever ``/dev/pts`` holds.
    """
    flags = os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC
    try:
        master = os.open("/dev/ptmx", flags)
    except OSError as e:
        raise OcirtError(
            f"process.terminal: opening /dev/ptmx in the container: {reason(e)} "
            "(a terminal needs a devpts mounted on /dev/pts)"
        ) from None
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))  # unlockpt
        (index,) = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, bytes(4)))  # ptsname
        slave_path = f"/dev/pts/{index}"
        try:
            slave = fcntl.ioctl(master, TIOCGPTPEER, flags)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOTTY):  # before Linux 4.13
                raise
            slave = os.open(slave_path, flags)
    except BaseException:
        os.close(master)
        raise
    return master, slave, slave_path


def set_size(fd: int, rows: int, cols: int) -> None:
    """TIOCSWINSZ: the size programs read with TIOCGWINSZ (``stty size``)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def make_controlling_terminal(slave: int) -> None:
    """The slave becomes fds 0-2 and, in a new session, the controlling terminal."""
    try:
        os.setsid()
    except PermissionError:
        if os.getsid(0) != os.getpid():  # EPERM from a session leader is fine
            raise
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _give_to(slave: int, uid: int) -> None:
    """The process's user owns its terminal, as runc does; the group stays devpts' ``gid=``.

    As runc, a uid the filesystem refuses (unmapped, read-only) leaves it as it is.
    """
    if os.fstat(slave).st_uid == uid:
        return
    try:
        os.fchown(slave, uid, -1)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EPERM, errno.EROFS):
            raise


def _bind_console(slave_path: str) -> None:
    """Bind the slave on ``/dev/console``, as runc: what a program writes there reaches the engine.

    A missing ``/dev/console`` is created as an empty file to bind on; an
    existing one is never opened (it could be a device).
    """
    try:
        fd = os.open("/dev/console", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
    except FileExistsError:
        pass
    except OSError as e:
        raise OcirtError(f"process.terminal: creating /dev/console: {reason(e)}") from None
    try:
        syscalls.mount(slave_path, "/dev/console", None, syscalls.MS_BIND)
    except OSError as e:
        raise OcirtError(f"process.terminal: binding {slave_path} on /dev/console: {reason(e)}") from None


def reason(e: OSError) -> str:
    return (e.strerror or str(e)).lower()
