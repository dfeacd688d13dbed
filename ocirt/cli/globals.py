"""Options that come before the command (runc's global flags) and what they build."""

from __future__ import annotations

import os

from ocirt.core.log import Logger
from ocirt.core.state import StateStore, default_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirt.core.control import Control
    from ocirt.core.lifecycle import Runtime


class Globals:
    def __init__(
        self,
        root: str | None = None,
        log: str | None = None,
        log_format: str = "text",
        debug: bool = False,
        systemd_cgroup: bool = False,
        rootless: str = "auto",
        criu: str = "criu",
        plugin: list[str] | None = None,
        no_plugin: list[str] | None = None,
        trace: str | None = None,
    ) -> None:
        self.root = root or default_root()
        self.log_path = log
        self.log_format = log_format
        self.debug = debug
        self.systemd_cgroup = systemd_cgroup
        self.rootless = rootless
        self.criu = criu
        self.add_plugins: list[str] = []
        self.drop_plugins: list[str] = list(no_plugin or [])
        for name in plugin or []:  # pytest style: -p NAME, -p no:NAME
            if name.startswith("no:"):
                self.drop_plugins.append(name[3:])
            else:
                self.add_plugins.append(name)
        self.trace = trace or os.environ.get("OCIRT_TRACE") or None
        self.log = Logger(log, log_format, debug)

    def store(self) -> StateStore:
        return StateStore(self.root)

    def control(self) -> Control:
        """For commands that never fork (``state``, ``kill``, ``pause``...): imports less."""
        from ocirt.core.control import Control

        return Control(self.store(), self.log, self.trace)

    def runtime(self) -> Runtime:
        from ocirt.core.lifecycle import Runtime

        return Runtime(self.store(), self.log, self.trace)

    def plugin_options(self) -> dict[str, object]:
        """Global options plugins may read from ``container.options``."""
        return {"systemd_cgroup": self.systemd_cgroup, "rootless": self.rootless, "criu": self.criu}
