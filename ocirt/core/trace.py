"""``--trace FILE`` / ``OCIRT_TRACE=FILE``: one JSON line per hook implementation call.

Each line holds the hook, the plugin, the process role and pid, the start time
and the duration in milliseconds: a researcher's view of where start-up goes.
The file is opened once, append-only, before the fork, so the setup child and
init write to it too; the fd is close-on-exec and never reaches the user process.
"""

from __future__ import annotations

import os
import time

from ocirt.core import jsonio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    import pluggy

_fd = -1
_role = "runtime"


def set_role(role: str) -> None:
    """Name the process writing the next lines: runtime, setup or init."""
    global _role
    _role = role


def open_file(path: str) -> None:
    """Open the trace file once (append-only, close-on-exec)."""
    global _fd
    if _fd < 0:
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)


def install(pm: pluggy.PluginManager, path: str) -> None:
    """Wrap every hook implementation registered with ``pm`` in a timer."""
    open_file(path)
    for hook_name in pm.hook.__dict__:
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            impl.function = timed(hook_name, impl.plugin_name, impl.function)


def record(event: str, plugin: str, started: float, **extra: Any) -> None:
    """Write one trace line (also used by the kernel for its own phases)."""
    if _fd < 0:
        return
    line = {
        "hook": event,
        "plugin": plugin,
        "role": _role,
        "pid": os.getpid(),
        "start": round(started, 6),
        "ms": round((time.time() - started) * 1000, 3),
        **extra,
    }
    os.write(_fd, (jsonio.dumps(line) + "\n").encode())


def timed(hook_name: str, plugin: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func``, writing one trace line per call."""

    import functools  # only when tracing

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.time()
        try:
            return func(*args, **kwargs)
        finally:
            record(hook_name, plugin, started)

    return wrapper


def enabled() -> bool:
    return _fd >= 0


def fds() -> list[int]:
    """The trace file's fd, if tracing (kept open across the fork)."""
    return [_fd] if _fd >= 0 else []
