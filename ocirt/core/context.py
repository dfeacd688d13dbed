"""The object every hook receives: one container, seen from the current process."""

from __future__ import annotations

from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ocirt.core.log import Logger
    from ocirt.core.spec import Spec
    from ocirt.core.state import ContainerState
    from ocirt.core.sync import Channel


class Container:
    """A container as plugins see it.

    ``spec`` is None when a later command (``delete``) finds the bundle gone.
    ``plugin_data`` is persisted in the state between commands: each plugin
    keeps its own key (``container.plugin_data["cgroups"]``).
    ``options`` holds the command-line options that reach plugins (``no_pivot``,
    ``console_socket``, ``preserve_fds``, ``systemd_cgroup``, ``rootless``...).
    """

    def __init__(
        self,
        container_id: str,
        spec: Spec | Callable[[], Spec | None] | None,
        state: ContainerState,
        log: Logger,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.id = container_id
        #: The spec, or how to read it: later commands (state, kill, delete) read
        #: config.json only if a plugin looks at it.
        self._spec = spec
        self.state = state
        self.log = log
        self.options: dict[str, Any] = options or {}
        #: Set by a namespace plugin when the init must be forked after entry.
        self.fork_init = False
        #: The init's pid in the runtime's pid namespace, once known.
        self.init_pid = 0
        #: The setup child's pid, known to the runtime from the fork on (to act on it
        #: from outside while answering ``ocirt_runtime_request``, e.g. its uid map).
        self.setup_pid = 0
        #: ``exec``: the init pid of the container being joined (0 in ``create``).
        self.exec_target = 0
        #: ``exec``: the pid of the exec'd process in the runtime's pid namespace.
        self.exec_pid = 0
        #: "runtime", "setup" or "init": which process is running the hook.
        self.role = "runtime"
        self.channel: Channel | None = None
        #: Process-local scratch space for plugins (not saved; forks inherit it).
        self.local: dict[str, Any] = {}
        #: Hook implementations withdrawn from this container (``withdraw``).
        self.withdrawn: list[Callable[..., Any]] = []

    @property
    def spec(self) -> Spec | None:
        if callable(self._spec):
            self._spec = self._spec()
        return self._spec

    @spec.setter
    def spec(self, value: Spec | None) -> None:
        self._spec = value

    @property
    def plugin_data(self) -> dict[str, Any]:
        return self.state.plugin_data

    @property
    def bundle(self) -> str:
        return self.state.bundle

    def require_spec(self) -> Spec:
        if self.spec is None:
            raise OcirtError(f"container {self.id!r}: its bundle's config.json is no longer readable")
        return self.spec

    def withdraw(self, *implementations: Callable[..., Any]) -> None:
        """In ``ocirt_validate``: these hook implementations of the calling plugin have
        nothing to do for this container. Later commands leave them out, and a
        command whose hooks are all withdrawn loads no plugin at all (a ``start``
        without poststart hooks only releases the init)."""
        self.withdrawn.extend(implementations)

    def show_status(self, status: str, path: str, unless: str) -> None:
        """In ``ocirt_validate``: ``state`` and ``list`` show ``status`` (``paused``, say)
        for this container while the file ``path`` holds anything but ``unless``.

        The kernel reads the file itself, so these commands, which engines poll,
        load no plugin for it; the plugin can then withdraw its ``ocirt_status``."""
        self.state.data.setdefault("status_files", []).append([status, path, unless])

    def ask_runtime(self, name: str, **data: Any) -> dict[str, Any]:
        """From the setup child or init: have the runtime process act and reply.

        The runtime answers through the ``ocirt_runtime_request`` hook.
        """
        if self.channel is None:
            raise OcirtError(f"ask_runtime({name!r}) is only possible during create")
        self.channel.send(type="request", name=name, data=data)
        return self.channel.expect("reply").get("data") or {}
