"""What a cgroup driver is: the interface the ``cgroups`` plugin drives.

A driver object manages one container's cgroup. It is created in each command
from the container (its spec, its id, the options) and what earlier commands
kept in ``container.plugin_data["cgroups"]`` (``record``/``restore``), so
``delete`` and ``update`` find the same paths ``create`` made.

Third-party drivers subclass :class:`CgroupDriver` and register a factory with
the ``ocirt_cgroup_drivers`` hook: ``return {"mydriver": MyDriver}``.
"""

from __future__ import annotations

from ocirt.core import fileio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container


class CgroupDriver:
    """One container's cgroup(s). Every method must be idempotent."""

    #: The name drivers are registered and reported under (``v1``, ``v2``...).
    name = ""

    def __init__(self, container: Container) -> None:
        self.container = container

    @classmethod
    def available(cls) -> bool:
        """Whether this host can use the driver (what it mounts)."""
        raise NotImplementedError

    # -- what is kept between commands ------------------------------------
    def record(self) -> dict[str, Any]:
        """What ``delete``/``update`` need later (paths made), saved with the state."""
        raise NotImplementedError

    def restore(self, data: dict[str, Any]) -> None:
        """Take back what :meth:`record` returned."""
        raise NotImplementedError

    # -- create / delete --------------------------------------------------
    def validate(self, resources: dict[str, Any]) -> None:
        """Refuse resources this driver cannot honour here (naming the field)."""
        raise NotImplementedError

    def create(self, resources: dict[str, Any]) -> None:
        """Make the cgroup(s) and write the limits. Runtime, before the fork."""
        raise NotImplementedError

    #: True if :meth:`join_self` moves the calling process in cheaply; the
    #: runtime then does not call :meth:`join` for the new init.
    joins_itself = False

    def join(self, pid: int) -> None:
        """Move ``pid`` (the init, before it runs anything of the container) in."""
        raise NotImplementedError

    def join_self(self) -> None:
        """Move the calling process in: the setup child, first thing after the fork."""
        raise NotImplementedError

    def destroy(self) -> None:
        """Remove what :meth:`create` made, and nothing else."""
        raise NotImplementedError

    # -- live container ---------------------------------------------------
    def update(self, resources: dict[str, Any]) -> None:
        """Apply new limits to a running container (``ocirt update``)."""
        raise NotImplementedError

    def freeze(self) -> None:
        """Freeze every process, returning once frozen (``ocirt pause``)."""
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def frozen(self) -> bool:
        """By default, what ``freeze_file`` says."""
        probe = self.freeze_file()
        return probe is not None and fileio.holds_other_than(*probe)

    def freeze_file(self) -> tuple[str, str] | None:
        """A file and its content while the cgroup is not frozen, if there is one.

        Asked at validate, before ``create`` makes the cgroup: ``state`` and ``list``
        read the file without loading the plugin (``Container.show_status``)."""
        return None

    def pids(self) -> list[int]:
        """Host pids of every process in the container's cgroup."""
        raise NotImplementedError

    def kill_all(self, signal: int) -> None:
        """Signal every process (``cgroup.kill`` for SIGKILL where present)."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """runc's ``events --stats`` ``data`` object: cpu, memory, pids, blkio, hugetlb."""
        raise NotImplementedError

    def oom_kills(self) -> int:
        """How many OOM kills the cgroup has seen (for ``events``)."""
        raise NotImplementedError
