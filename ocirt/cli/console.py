"""A foreground ``ocirt run`` with ``process.terminal``: the runtime plays the engine.

As ``runc run`` does: make a console socket and hand it to ``create`` (the
terminal plugin's init sends the pty master there, as to any engine), put the
user's terminal in raw mode, relay stdin to the master and the master to stdout
until the container's init exits, pass window size changes on, and restore the
terminal.

One loop does the relaying and the waiting: ``poll`` on stdin, the master and a
pipe the signal handlers write to (``set_wakeup_fd``), so SIGCHLD, SIGWINCH and
the signals forwarded to the init are seen between two reads. Only C modules are
imported (``_socket`` rather than ``socket``, which imports ``enum``), and only
for such a run.
"""

from __future__ import annotations

import _signal
import _socket
import errno
import fcntl
import os
import select
import struct
import termios
import tty

from ocirt.core.errors import OcirtError
from ocirt.core.lifecycle import FORWARDED_SIGNALS, exit_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: How long ``receive`` waits: ``create`` returned, so the master is already there.
RECEIVE_TIMEOUT = 5.0

#: After the init exits, output still buffered in the pty is copied until none
#: comes for this long (without a pid namespace, leftovers may hold the slave).
DRAIN_IDLE_MS = 200

#: The most stdin read ahead of what the container's terminal accepts.
PENDING_MAX = 1 << 16

CHUNK = 1 << 16


class ConsoleSocket:
    """A listening unix socket in a new private directory; receives one master."""

    def __init__(self) -> None:
        base = os.environ.get("TMPDIR") or "/tmp"
        if len(base) > 64:  # sun_path holds 108 bytes
            base = "/tmp"
        self.directory = os.path.join(base, f"ocirt-console-{os.urandom(8).hex()}")
        os.mkdir(self.directory, 0o700)
        self.path = os.path.join(self.directory, "console.sock")
        self.listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        try:
            self.listener.bind(self.path)
            self.listener.listen(1)
        except BaseException:
            self.close()
            raise

    def receive(self) -> int:
        """The master the container's init sent (before ``create`` returned)."""
        self.listener.settimeout(RECEIVE_TIMEOUT)
        try:
            fd, _ = self.listener._accept()  # type: ignore[attr-defined]  # the C socket's accept
        except OSError:
            raise OcirtError(
                "process.terminal: the container's init never connected to send its terminal"
            ) from None
        conn = _socket.socket(fileno=fd)
        try:
            conn.settimeout(RECEIVE_TIMEOUT)
            _, ancillary, _, _ = conn.recvmsg(4096, _socket.CMSG_SPACE(4), _socket.MSG_CMSG_CLOEXEC)
        except OSError as e:
            raise OcirtError(f"process.terminal: receiving the terminal: {e}") from None
        finally:
            conn.close()
        for level, kind, data in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4:
                fds = struct.unpack(f"{len(data) // 4}i", data[: len(data) // 4 * 4])
                for extra in fds[1:]:
                    os.close(extra)
                return fds[0]
        raise OcirtError("process.terminal: the container's init sent no terminal")

    def close(self) -> None:
        """Remove the socket and its directory (the received master stays open)."""
        self.listener.close()
        for remove in (lambda: os.unlink(self.path), lambda: os.rmdir(self.directory)):
            try:
                remove()
            except FileNotFoundError:
                pass


class Relay:
    """The user's side of the container's terminal: stdin, stdout and their tty, if any."""

    def __init__(self, master: int) -> None:
        self.master = master
        #: The user's terminal, read for its size: stdin's, else stdout's, else none.
        self.user_tty = next((fd for fd in (0, 1) if os.isatty(fd)), -1)
        self.pending = b""
        self.stdout_ok = True

    def resize(self) -> None:
        """Give the container's terminal the user's size (the kernel then sends SIGWINCH)."""
        if self.user_tty < 0:
            return
        try:
            size = fcntl.ioctl(self.user_tty, termios.TIOCGWINSZ, bytes(8))
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
        except OSError:
            pass  # as runc: a failed resize is not worth ending the session for

    def run(self, pid: int) -> int:
        """Relay until ``pid`` exits and its output is copied; its exit status."""
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_wakeup = _signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        old_handlers = {sig: _signal.signal(sig, _noop) for sig in (*FORWARDED_SIGNALS, _signal.SIGCHLD)}
        saved = _raw_mode(0)
        try:
            return self._loop(pid, wake_r)
        finally:
            if saved is not None:
                try:
                    termios.tcsetattr(0, termios.TCSADRAIN, saved)
                except termios.error:
                    pass
            for sig, handler in old_handlers.items():
                if handler is not None:  # None: not set from Python, nothing to restore
                    _signal.signal(sig, handler)
            _signal.set_wakeup_fd(old_wakeup)
            os.close(wake_r)
            os.close(wake_w)

    def _loop(self, pid: int, wake: int) -> int:
        os.set_blocking(self.master, False)
        poller = select.poll()
        poller.register(wake, select.POLLIN)
        poller.register(self.master, select.POLLIN)
        reading_stdin = _readable(0)
        if reading_stdin:
            poller.register(0, select.POLLIN)
        master_open = True
        status = _reap(pid)
        while status is None or master_open:
            events = poller.poll(None if status is None else DRAIN_IDLE_MS)
            if not events:
                break  # the init is gone and its terminal has gone quiet
            for fd, event in sorted(events, key=lambda e: e[0] != wake):  # signals first
                if fd == wake:
                    status = self._signals(os.read(wake, 256), pid, status)
                elif fd == self.master:
                    master_open = self._from_master(event)
                elif fd == 0 and not self._from_stdin(event):
                    reading_stdin = False
                    poller.unregister(0)
            if reading_stdin and (status is not None or not master_open):
                reading_stdin = False  # typed after the exit: left for the user's shell
                poller.unregister(0)
            elif reading_stdin:
                poller.modify(0, select.POLLIN if len(self.pending) < PENDING_MAX else 0)
            if master_open:
                poller.modify(self.master, select.POLLIN | (select.POLLOUT if self.pending else 0))
            else:
                try:
                    poller.unregister(self.master)
                except KeyError:
                    pass
        assert status is not None  # the loop ends only once the init has exited
        return status

    def _signals(self, received: bytes, pid: int, status: int | None) -> int | None:
        for signum in received:
            if signum == _signal.SIGCHLD:
                if status is None:
                    status = _reap(pid)
            elif signum == _signal.SIGWINCH:
                self.resize()
            else:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
        return status

    def _from_master(self, event: int) -> bool:
        """Copy output to stdout and pending input in; False once the terminal is closed."""
        if event & select.POLLOUT and self.pending:
            try:
                self.pending = self.pending[os.write(self.master, self.pending) :]
            except BlockingIOError:
                pass
            except OSError:
                self.pending = b""
        if event & (select.POLLIN | select.POLLHUP | select.POLLERR):
            try:
                data = os.read(self.master, CHUNK)
            except BlockingIOError:
                return True
            except OSError as e:  # EIO: no process holds the slave any more
                if e.errno != errno.EIO:
                    raise
                return False
            if not data:
                return False
            self._to_stdout(data)
        return not event & select.POLLNVAL

    def _from_stdin(self, event: int) -> bool:
        """Queue what the user typed; False at end of input."""
        if event & select.POLLNVAL:
            return False
        try:
            data = os.read(0, CHUNK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        self.pending += data
        return bool(data)

    def _to_stdout(self, data: bytes) -> None:
        while data and self.stdout_ok:
            try:
                data = data[os.write(1, data) :]
            except BlockingIOError:
                select.select([], [1], [])
            except OSError:
                self.stdout_ok = False  # nobody reads: the container keeps running regardless


def _reap(pid: int) -> int | None:
    """Reap exited children; the init's status once it is among them."""
    while True:
        try:
            child, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return 0  # as Runtime.wait: the init was reaped elsewhere
        if child == 0:
            return None
        if child == pid:
            return exit_status(status)


def _raw_mode(fd: int) -> list[Any] | None:
    """Put ``fd`` in raw mode if it is a terminal; its previous attributes."""
    if not os.isatty(fd):
        return None
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    return saved


def _readable(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _noop(signum: int, frame: object) -> None:
    """A handler, so the signal is caught and reported on the wakeup fd."""
