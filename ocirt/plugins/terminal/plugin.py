"""``process.terminal``: the init gets a pty made inside the container, as with runc.

The caller passes ``--console-socket PATH``; the init sends the pty's master
there (that is how containerd's shim and conmon receive it) and keeps the slave
as its stdin, stdout, stderr and controlling terminal. A foreground ``ocirt
run`` makes a console socket of its own and relays the user's terminal
(``ocirt.cli.console``), so both paths go through this plugin.

* ``ocirt_validate`` (runtime) checks the options and puts a ``Console`` in
  ``container.local["terminal"]``; its module is imported there because the
  init cannot import after pivot_root. The key also tells the process plugin
  that a loaded plugin takes care of the terminal.
* ``ocirt_enter_namespaces`` (setup child, first) connects to the socket before
  any namespace is entered: see ``console``.
* ``ocirt_after_pivot`` (init, first) makes the pty in the container's devpts,
  before masked paths and a read-only root.
* ``exec`` does the same in its own phases: ``ocirt_join_container`` (first)
  connects before any namespace is joined, ``ocirt_finalize_process`` (first)
  makes the pty once the process has the container's root, before it drops
  its user and capabilities. ``/dev/console`` is the init's alone.

Nothing but ``os`` is imported unless a terminal is asked for.
"""

from __future__ import annotations

import os
import stat

from ocirt import hookimpl
from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container
    from ocirt.core.spec import Spec


@hookimpl(tryfirst=True)
def ocirt_validate(container: Container) -> None:
    spec = container.require_spec()
    process = spec.process or {}
    socket_path = container.options.get("console_socket")
    if not process.get("terminal"):
        if socket_path:
            # An engine would wait on the socket for a master that never comes (runc refuses too).
            raise spec.error("process.terminal", "false, but --console-socket was given: no terminal to send")
        return
    if not socket_path:
        if container.exec_target and container.options.get("detach"):
            raise OcirtError("exec: --tty needs --console-socket when the process runs detached")
        if container.options.get("detach", True):
            raise spec.error(
                "process.terminal", "true needs --console-socket when the container runs detached"
            )
        raise spec.error("process.terminal", "true needs a console socket to send the terminal to")
    socket_path = os.path.abspath(socket_path)
    try:
        is_socket = stat.S_ISSOCK(os.stat(socket_path).st_mode)
    except OSError as e:
        raise OcirtError(f"console socket {socket_path}: {(e.strerror or str(e)).lower()}") from None
    if not is_socket:
        raise OcirtError(f"console socket {socket_path}: not a socket")
    rows, cols = _console_size(spec, process)
    uid = (process.get("user") or {}).get("uid", 0)

    from ocirt.plugins.terminal.console import Console  # here: see the module docstring

    bind_console = not container.exec_target and _has_mount_namespace(spec)
    container.local["terminal"] = Console(socket_path, rows, cols, uid, bind_console)


@hookimpl(tryfirst=True)
def ocirt_enter_namespaces(container: Container) -> None:
    console = container.local.get("terminal")
    if console is not None:
        console.connect()


@hookimpl(tryfirst=True)
def ocirt_join_container(container: Container) -> None:
    ocirt_enter_namespaces(container)


@hookimpl(tryfirst=True)
def ocirt_after_pivot(container: Container) -> None:
    console = container.local.get("terminal")
    if console is not None:
        console.attach()


@hookimpl(tryfirst=True)
def ocirt_finalize_process(container: Container) -> None:
    if container.exec_target:  # create made its terminal in ocirt_after_pivot
        ocirt_after_pivot(container)


def _console_size(spec: Spec, process: dict[str, Any]) -> tuple[int, int]:
    """(rows, columns) from ``process.consoleSize``; (0, 0) leaves the kernel's default."""
    size = process.get("consoleSize")
    if size is None:
        return 0, 0
    if not isinstance(size, dict):
        raise spec.error("process.consoleSize", "must be an object")
    values = []
    for key in ("height", "width"):
        value = size.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
            raise spec.error(f"process.consoleSize.{key}", "must be an integer from 0 to 65535")
        values.append(value)
    return values[0], values[1]


def _has_mount_namespace(spec: Spec) -> bool:
    """``/dev/console`` is bound only in a mount namespace of the container's own."""
    namespaces = spec.section("linux.namespaces", list) or []
    return any(isinstance(ns, dict) and ns.get("type") == "mount" and not ns.get("path") for ns in namespaces)
