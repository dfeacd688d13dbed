"""Run one OCI hook: the state on stdin, a timeout, a short account of a failure.

Imported only for specs with hooks (``subprocess`` pulls in ``re`` and ``enum``).
"""

from __future__ import annotations

import os
import signal
import subprocess

from ocirt.core import jsonio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: How much of a failed hook's output an error shows.
TAIL = 400


def run(hook: dict[str, Any], state: dict[str, Any], cwd: str | None) -> str | None:
    """Run ``hook``; None when it exits 0, else what went wrong.

    ``args[0]`` is the hook's argv[0] (``path`` when there are no args); without
    ``env`` the hook inherits the runtime's environment, as with runc. The hook
    gets a session of its own: a timeout kills it and whatever it started.
    """
    path = hook["path"]
    args = hook.get("args") or [path]
    env = hook.get("env")
    timeout = hook.get("timeout")
    try:
        proc = subprocess.Popen(
            args,
            executable=path,
            env=dict(e.split("=", 1) if "=" in e else (e, "") for e in env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            pass_fds=(),
            start_new_session=True,
        )
    except OSError as e:
        return f"cannot run it: {(e.strerror or str(e)).lower()}"
    data = jsonio.dumps(state).encode()
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.kill()
        try:
            proc.communicate(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        proc.wait()
        return f"timed out after {timeout}s (killed)"
    except BrokenPipeError:  # a hook that does not read its stdin
        out, err = b"", b""
        proc.wait()
    code = proc.returncode
    if code == 0:
        return None
    how = f"exit status {code}" if code > 0 else f"killed by signal {-code}"
    tail = (err or out).decode(errors="replace").strip()[-TAIL:]
    return f"{how}: {tail}" if tail else how
