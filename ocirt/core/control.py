"""The commands on an existing container that never fork: ``kill``, and the hooks
of the plugins it was created with (``state``, ``pause``, ``update``...).

``state`` and ``kill`` come on every container, often; they import this module
and not ``lifecycle`` (create, start, delete, exec, and all they need).
"""

from __future__ import annotations

import _signal  # the C module: `signal` wraps it in enums, costing an import of enum
import os

from ocirt.core.context import Container
from ocirt.core.errors import OcirtError
from ocirt.core.state import CREATING, STOPPED

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.hookplan import Hooks
    from ocirt.core.log import Logger
    from ocirt.core.spec import Spec
    from ocirt.core.state import ContainerState, StateStore


class Control:
    """What every command needs (the state store, the log, the trace file), and kill."""

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
