"""pause, resume, update, events and the process list of a live container.

Imported only by those commands. Results that the CLI formats (the pids) go
back in ``options["result"]``; ``events`` writes its JSON lines through
``options["emit"]`` (one dict per event) as runc prints them.
"""

from __future__ import annotations

import os
import select
import time

from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ocirt.core.context import Container
    from ocirt.plugins.cgroups.driver import CgroupDriver


def run(drv: CgroupDriver, container: Container, command: str, options: dict[str, Any]) -> int:
    if command == "pause":
        drv.freeze()
    elif command == "resume":
        drv.thaw()
    elif command == "pids":
        options["result"] = drv.pids()
    elif command == "update":
        drv.update(options.get("resources") or {})
    elif command == "events":
        emit: Callable[[dict[str, Any]], None] = options["emit"]
        if options.get("stats"):
            emit({"type": "stats", "id": container.id, "data": drv.stats()})
        else:
            _stream(drv, container, float(options.get("interval") or 5.0), emit)
    return 0


def _alive(container: Container) -> bool:
    return container.state.init_alive()


def _stream(
    drv: CgroupDriver, container: Container, interval: float, emit: Callable[[dict[str, Any]], None]
) -> None:
    """Stats every ``interval`` and an ``oom`` event per OOM kill, until the container stops."""
    if interval <= 0:
        raise OcirtError("events: --interval must be positive")
    waiter = _OomWaiter(drv)
    seen = drv.oom_kills()
    next_stats = time.monotonic()
    try:
        while _alive(container):
            now = time.monotonic()
            if now >= next_stats:
                emit({"type": "stats", "id": container.id, "data": drv.stats()})
                next_stats = now + interval
            waiter.wait(min(0.5, max(0.0, next_stats - time.monotonic())))
            count = drv.oom_kills()
            for _ in range(count - seen):
                emit({"type": "oom", "id": container.id})
            seen = max(seen, count)
    finally:
        waiter.close()


class _OomWaiter:
    """Sleeps until the memory cgroup signals an OOM (v1 ``cgroup.event_control``).

    Where that is missing (v2, other drivers) it just sleeps: the OOM kill
    counter is read after every wake-up either way.
    """

    def __init__(self, drv: CgroupDriver) -> None:
        self.efd = -1
        self.oom_fd = -1
        memory = getattr(drv, "dirs", {}).get("memory")
        if memory is None or not os.path.exists(os.path.join(memory, "cgroup.event_control")):
            return
        try:
            self.oom_fd = os.open(os.path.join(memory, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
            self.efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            with open(os.path.join(memory, "cgroup.event_control"), "w") as f:
                f.write(f"{self.efd} {self.oom_fd}")
        except OSError:
            self.close()

    def wait(self, timeout: float) -> None:
        if self.efd < 0:
            time.sleep(timeout)
            return
        ready, _, _ = select.select([self.efd], [], [], timeout)
        if ready:
            try:
                os.eventfd_read(self.efd)
            except BlockingIOError:
                pass

    def close(self) -> None:
        for fd in (self.efd, self.oom_fd):
            if fd >= 0:
                os.close(fd)
        self.efd = self.oom_fd = -1
