"""The commands on an existing container that never fork: ``start``, ``kill``,
``delete``, and the hooks of the plugins it was created with (``state``,
``pause``, ``update``...).

Engines call these on every container; they import this module and not
``lifecycle`` (create, restore, exec: the forking, and all it needs).
"""

from __future__ import annotations

import _signal  # the C module: `signal` wraps it in enums, costing an import of enum
import os
import time

from ocirt.core.context import Container
from ocirt.core.errors import ContainerNotFound, OcirtError
from ocirt.core.state import CREATED, CREATING, STOPPED, wait_gone

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.hookplan import Hooks
    from ocirt.core.log import Logger
    from ocirt.core.spec import Spec
    from ocirt.core.state import ContainerState, StateStore
    from ocirt.core.sync import Channel

#: How long a signalled init may take to go, and a released one to answer.
KILL_TIMEOUT = 10.0


class Control:
    """What every command needs (the state store, the log, the trace file), and the
    commands that never fork."""

    def __init__(self, store: StateStore, log: Logger, trace_path: str | None = None) -> None:
        self.store = store
        self.log = log
        self.trace_path = trace_path

    def hooks(self, refs: list[Any]) -> Hooks:
        from ocirt.core import plugins

        return plugins.hooks(refs, self.trace_path)

    def later_hooks(self, state: ContainerState, *names: str) -> Hooks:
        """The hooks of a created container for a command that calls ``names`` and never
        forks: only their plugins are imported, without what they withdrew from at create."""
        from ocirt.core import plugins

        return plugins.hooks(state.plugins, self.trace_path, list(names), state.data.get("skip"))

    def context(
        self,
        state: ContainerState,
        spec: Spec | None = None,
        hooks: Hooks | None = None,
        **options: Any,
    ) -> Container:
        """The container as hooks see it; ``hooks`` lets a plugin call other hooks (registries).

        Without ``spec``, config.json is read when a plugin first asks for it
        (None if the bundle is gone): ``state`` and ``kill`` rarely need it.
        """

        def read() -> Spec | None:
            from ocirt.core import spec as spec_mod

            try:
                return spec_mod.load(state.bundle)
            except OcirtError:
                return None

        ctx = Container(state.id, spec if spec is not None else read, state, self.log, options)
        if hooks is not None:
            ctx.local["hooks"] = hooks
        return ctx

    # -------------------------------------------------------------------- kill

    def kill(self, container_id: str, sig: int, all_processes: bool = False) -> None:
        state = self.store.load(container_id)
        status = state.status()
        if status == STOPPED:
            raise OcirtError(f"container {container_id!r} is not running")
        if status == CREATING:
            raise OcirtError(f"container {container_id!r} is still being created")
        if all_processes and self._kill_all(state, sig):
            return
        os.kill(state.pid, sig)
        if sig == _signal.SIGKILL and state.data.get("paused"):
            # A frozen task acts on SIGKILL only once thawed.
            hooks = self.later_hooks(state, "ocirt_command")
            hooks.ocirt_command(container=self.context(state, hooks=hooks), command="resume", options={})

    def _kill_all(self, state: ContainerState, sig: int, warn: bool = True) -> bool:
        if "ocirt_kill_all" not in state.data.get("hooks", ()):
            if warn:
                self.log.warning(
                    f"kill --all: no loaded plugin tracks the processes of {state.id!r}; "
                    "signalling its init only"
                )
            return False
        hooks = self.later_hooks(state, "ocirt_kill_all")
        done = hooks.ocirt_kill_all(container=self.context(state, hooks=hooks), signal=sig)
        return bool(done)

    # ------------------------------------------------------------------- start

    def start(self, container_id: str) -> Container:
        """Let a created container's init exec the user process."""
        with self.store.lock(container_id):
            state = self.store.load(container_id)
            status = state.status()
            if status != CREATED:
                raise OcirtError(f"cannot start container {container_id!r}: it is {status}, not created")
            self.release(state)
            return self.poststart(state)

    def release(self, state: ContainerState, channel: Channel | None = None) -> None:
        """The created init goes on to exec the user process (``start``, and ``run``
        straight after its create). Nothing is saved: a live init without exec.fifo
        is "running" (``ContainerState.status``), as runc also reads it from the fifo.
        ``channel``: run's init waits on the handshake channel instead of the fifo."""
        if not state.data.get("has_process"):
            raise OcirtError(
                f"cannot start container {state.id!r}: its config.json has no process "
                "(the spec requires process at start)"
            )
        if channel is not None:
            try:
                channel.send(type="start")
            except OSError:  # its end closed: the init is gone
                raise OcirtError(
                    f"cannot start container {state.id!r}: its init process has exited"
                ) from None
            return
        _release_init(state, wait_exec="ocirt_poststart" in state.data.get("hooks", ()))
        os.unlink(state.fifo)

    def poststart(self, state: ContainerState) -> Container:
        """The plugins' ``ocirt_poststart`` (OCI poststart hooks), once the process runs."""
        ctx = Container(state.id, None, state, self.log)
        if "ocirt_poststart" in state.data.get("hooks", ()):
            ctx = self.context(state)
            self.later_hooks(state, "ocirt_poststart").ocirt_poststart(container=ctx)
        return ctx

    # ------------------------------------------------------------------ delete

    def delete(self, container_id: str, force: bool = False) -> None:
        if not self.store.exists(container_id):
            if not force:
                raise ContainerNotFound(f"container {container_id!r} does not exist")
            if self.store.remove_unsaved(container_id):  # a half-made directory, if any
                return
        with self.store.lock(container_id):
            state = self.store.load(container_id)
            status = state.status()
            if status != STOPPED:
                if not force:
                    raise OcirtError(
                        f"cannot delete container {container_id!r} that is {status}: "
                        "stop it first or use --force"
                    )
                start = state.data.get("init_start")
                # With a pid namespace, SIGKILL to the init ends all the container's
                # processes; without one, only a plugin tracking them can.
                if not self._kill_all(state, _signal.SIGKILL, warn=False):
                    kill_quietly(state.pid, _signal.SIGKILL)
                if not wait_gone(state.pid, start, KILL_TIMEOUT):
                    raise OcirtError(
                        f"container {container_id!r}: init {state.pid} did not exit after SIGKILL"
                    )
            if "ocirt_cleanup" in state.data.get("hooks", ()):
                try:
                    hooks = self.later_hooks(state, "ocirt_cleanup")
                except OcirtError as e:
                    if not force:
                        raise
                    # A plugin of the container's set is gone (uninstalled): with --force
                    # the state goes anyway rather than stranding the container.
                    self.log.warning(f"delete {container_id!r}: {e}; its resources may remain")
                else:
                    hooks.ocirt_cleanup(container=self.context(state, hooks=hooks))
            self.store.remove(container_id)


def _release_init(state: ContainerState, wait_exec: bool) -> None:
    """Open the fifo (which unblocks init) and read its byte; fail if init dies.

    With ``wait_exec``, then wait for EOF: the init holds the write end until it
    execs the user process (or exits), so poststart hooks run after the exec, as
    the spec asks. Without poststart hooks nobody needs to wait for that, as
    with runc, whose ``start`` returns once the init is released.
    """
    import select

    fd = os.open(state.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + KILL_TIMEOUT
        released = False
        while True:
            if poller.poll(20):
                if os.read(fd, 1):
                    if not wait_exec:
                        return
                    released = True
                elif released:
                    return
            if released:
                if time.monotonic() > deadline:
                    return  # released, but the exec is slow: start has done its part
                continue
            if not state.init_alive():
                raise OcirtError(f"cannot start container {state.id!r}: its init process has exited")
            if time.monotonic() > deadline:
                raise OcirtError(f"cannot start container {state.id!r}: its init did not answer")
    finally:
        os.close(fd)


def kill_quietly(pid: int, sig: int) -> None:
    if pid <= 0:  # never signal a process group by accident
        return
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
