"""The runtime <-> setup child / init handshake: JSON messages over two pipes.

Pipes rather than a socketpair keep ``socket`` off the hot path. One message is
one line of JSON; a closed pipe means the peer died.
"""

from __future__ import annotations

import os

from ocirt.core import jsonio
from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Channel:
    """One end of the handshake: ``send`` a message, ``recv`` the next one."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buf = b""

    def send(self, **message: Any) -> None:
        if self.write_fd < 0:
            raise OSError(9, "channel closed")
        data = jsonio.dumps(message).encode() + b"\n"
        while data:
            data = data[os.write(self.write_fd, data) :]

    def recv(self) -> dict[str, Any] | None:
        """The next message, or None when the peer has closed its end."""
        while b"\n" not in self._buf:
            chunk = os.read(self.read_fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return jsonio.loads(line)

    def expect(self, kind: str) -> dict[str, Any]:
        """Receive a message of ``kind``; an ``error`` message or EOF raises."""
        message = self.recv()
        if message is None:
            raise OcirtError("the runtime went away during container setup")
        if "error" in message:
            raise OcirtError(message["error"])
        if message.get("type") != kind:
            raise OcirtError(f"container setup: expected {kind!r}, got {message!r}")
        return message

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            if fd >= 0:
                os.close(fd)
        self.read_fd = self.write_fd = -1


def channel_pair() -> tuple[Channel, Channel]:
    """(runtime end, child end), all four fds close-on-exec."""
    to_child_r, to_child_w = os.pipe2(os.O_CLOEXEC)
    to_runtime_r, to_runtime_w = os.pipe2(os.O_CLOEXEC)
    return Channel(to_runtime_r, to_child_w), Channel(to_child_r, to_runtime_w)
