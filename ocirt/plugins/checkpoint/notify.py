"""criu's notifications: an action script that reports each step to the runtime.

criu runs ``--action-script`` at each step of a dump or restore with
``CRTOOLS_SCRIPT_ACTION`` set (``network-lock``, ``setup-namespaces``,
``post-restore``...) and, on restore, ``CRTOOLS_INIT_PID``: the restored
init's pid. Two of them matter to a container runtime, as they do to runc:

* ``setup-namespaces``: the restored init exists with its namespaces, and
  nothing of the container runs yet: the moment of ``prestart`` and
  ``createRuntime`` hooks and of any work from the host on the new init;
* ``post-restore``: the tree is restored: the init's pid to record.

The others (network-lock/unlock: no network plumbing of ours to hold) are
acknowledged. criu waits for the script to exit and aborts the dump or restore
if it fails, so the script writes ``ACTION PID`` to a fifo, then waits for the
runtime's ``ok`` on a second one. The runtime holds both fifos open read-write,
so neither side blocks opening them and a reply written early stays buffered.
"""

from __future__ import annotations

import os
import select

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable

SCRIPT = """#!/bin/sh
# Written by ocirt's checkpoint plugin: report criu's step to the runtime, wait for its answer.
printf '%s %s\\n' "$CRTOOLS_SCRIPT_ACTION" "${{CRTOOLS_INIT_PID:-0}}" >'{notify}' || exit 1
read -r answer <'{reply}' || exit 1
[ "$answer" = ok ]
"""


class Notifier:
    """The runtime's end of the action script; ``handlers`` map an action to what to do."""

    def __init__(self, work: str, handlers: dict[str, Callable[[int], None]]) -> None:
        self.handlers = handlers
        self.script = os.path.join(work, "ocirt-action.sh")
        self._fifos = [os.path.join(work, "ocirt-notify"), os.path.join(work, "ocirt-reply")]
        self.seen: list[str] = []
        self.error: BaseException | None = None
        for path in [self.script, *self._fifos]:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        for path in self._fifos:
            os.mkfifo(path, 0o600)
        self._notify = os.open(self._fifos[0], os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._reply = os.open(self._fifos[1], os.O_RDWR | os.O_CLOEXEC)
        fd = os.open(self.script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o700)
        with os.fdopen(fd, "w") as f:
            f.write(SCRIPT.format(notify=self._fifos[0], reply=self._fifos[1]))

    def serve(self, proc: subprocess.Popen[bytes]) -> None:
        """Answer the script until criu exits; re-raise a handler's failure then."""
        pidfd = os.pidfd_open(proc.pid)
        try:
            poller = select.poll()
            poller.register(self._notify, select.POLLIN)
            poller.register(pidfd, select.POLLIN)
            pending = b""
            while True:
                events = dict(poller.poll())
                if self._notify in events:
                    pending += os.read(self._notify, 4096)
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        self._answer(line.decode(errors="replace"))
                elif pidfd in events:
                    break
        finally:
            os.close(pidfd)
        if self.error is not None:
            raise self.error

    def _answer(self, line: str) -> None:
        action, _, pid = line.partition(" ")
        self.seen.append(action)
        handler = self.handlers.get(action)
        ok = True
        if handler is not None and self.error is None:
            try:
                handler(int(pid or 0))
            except BaseException as e:  # criu must hear of it first, then it stops
                self.error = e
                ok = False
        os.write(self._reply, b"ok\n" if ok else b"fail\n")

    def close(self) -> None:
        for fd in (self._notify, self._reply):
            os.close(fd)
        for path in [self.script, *self._fifos]:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
