"""Put every container in a cgroup of its own and apply ``linux.resources``.

The driver comes from the ``ocirt_cgroup_drivers`` registry: ``v2`` when
/sys/fs/cgroup is cgroup2, else ``v1``; the annotation
``org.ocirt.cgroup-driver`` may name another. The cgroup is made before the
fork and the init joins it from the host (``ocirt_configure_from_host``) while
it waits, so nothing of the container runs outside it. What was made is kept in
``plugin_data["cgroups"]``; later commands rebuild the same driver from it.

A runtime without root cannot make cgroups here: the container then runs in
the caller's, with a warning (runc's rootless mode does the same on v1).
"""

from __future__ import annotations

import os

from ocirt import hookimpl
from ocirt.core.errors import OcirtError
from ocirt.core.state import PAUSED
from ocirt.plugins.cgroups import paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container
    from ocirt.plugins.cgroups.driver import CgroupDriver

DRIVER_ANNOTATION = "org.ocirt.cgroup-driver"
KEY = "cgroups"

#: Commands of live containers this plugin carries out (``ocirt_command``).
COMMANDS = ("pause", "resume", "pids", "update", "events")


@hookimpl
def ocirt_cgroup_drivers() -> dict[str, type]:
    from ocirt.plugins.cgroups.v1 import CgroupV1

    drivers: dict[str, type] = {"v1": CgroupV1}
    if paths.is_unified():  # v2 is imported only where it can work
        try:
            from ocirt.plugins.cgroups.v2 import CgroupV2  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            pass
        else:
            drivers["v2"] = CgroupV2
    return drivers


@hookimpl
def ocirt_features(container: Container | None) -> dict[str, Any]:
    return {
        "linux": {
            "cgroup": {"v1": True, "v2": paths.is_unified(), "systemd": False, "systemdUser": False},
        },
        "annotations": {
            "org.ocirt.cgroups.systemd-cgroup": "slice:prefix:name mapped to cgroupfs "
            "/<slice path>/<prefix>-<name>.scope (no systemd)",
        },
    }


def _registry(container: Container) -> dict[str, type]:
    hooks = container.local.get("hooks")
    if hooks is None:
        return ocirt_cgroup_drivers()
    merged: dict[str, type] = {}
    for fragment in reversed(hooks.ocirt_cgroup_drivers()):
        merged.update(fragment or {})
    return merged


def _rootless() -> bool:
    return os.geteuid() != 0


def _resources(container: Container) -> dict[str, Any]:
    spec = container.spec
    return (spec.section("linux.resources") if spec is not None else None) or {}


def _new_driver(container: Container) -> CgroupDriver:
    registry = _registry(container)
    spec = container.spec
    name = (spec.annotations.get(DRIVER_ANNOTATION) if spec else None) or (
        "v2" if paths.is_unified() else "v1"
    )
    cls = registry.get(name)
    if cls is None:
        raise OcirtError(
            f"annotations.{DRIVER_ANNOTATION}: no cgroup driver {name!r} here "
            f"(have: {', '.join(sorted(registry))})"
        )
    if not cls.available():  # type: ignore[attr-defined]
        raise OcirtError(f"cgroup driver {name!r} cannot work on this host")
    driver: CgroupDriver = cls(container)
    return driver


def driver(container: Container) -> CgroupDriver | None:
    """The container's driver as create left it, or None if it has no cgroup."""
    made = container.local.get(KEY)
    if made is not None:
        return made  # type: ignore[no-any-return,unused-ignore]
    data = container.plugin_data.get(KEY)
    if not data:
        return None
    cls = _registry(container).get(data.get("driver", ""))
    if cls is None:
        raise OcirtError(f"container {container.id!r}: cgroup driver {data.get('driver')!r} is not loaded")
    found: CgroupDriver = cls(container)
    found.restore(data)
    container.local[KEY] = found
    return found


def _record(drv: CgroupDriver) -> dict[str, Any]:
    """What later commands rebuild the driver from."""
    return {**drv.record(), "driver": drv.name}


@hookimpl
def ocirt_validate(container: Container) -> None:
    if container.exec_target:
        driver(container)  # exec: the container's cgroup as create made it, restored here
        return
    if _rootless():
        if _resources(container):
            container.log.warning("cgroups: running without root, linux.resources are not applied")
        container.withdraw(ocirt_configure_from_host)
        return
    drv = _new_driver(container)
    drv.validate(_resources(container))
    container.local[KEY] = drv
    if drv.joins_itself:  # nothing for the runtime to do once the child has its namespaces
        container.withdraw(ocirt_configure_from_host)
    freeze_file = drv.freeze_file()
    if freeze_file is not None:  # `state` reads it itself, without loading this plugin
        container.show_status(PAUSED, *freeze_file)
        container.withdraw(ocirt_status)


@hookimpl
def ocirt_prepare_host(container: Container) -> None:
    drv = container.local.get(KEY)
    if drv is None:
        return
    try:
        drv.create(_resources(container))
    finally:  # even half-made: cleanup removes what was made
        container.plugin_data[KEY] = _record(drv)


@hookimpl(tryfirst=True)
def ocirt_enter_namespaces(container: Container) -> None:
    """Setup child, before any namespace (a user namespace would lose the rights)."""
    drv = container.local.get(KEY)
    if drv is not None and drv.joins_itself:
        drv.join_self()


@hookimpl(tryfirst=True)
def ocirt_join_container(container: Container) -> None:
    """exec's setup child, before any namespace: into the container's cgroup."""
    ocirt_join_cgroup(container)


@hookimpl
def ocirt_join_cgroup(container: Container) -> None:
    """The calling process into the container's cgroup (exec, and a restore's criu)."""
    drv = container.local.get(KEY)
    if drv is None:
        return
    if drv.joins_itself:
        drv.join_self()
    else:
        drv.join(os.getpid())


@hookimpl
def ocirt_configure_from_host(container: Container) -> None:
    drv = container.local.get(KEY)
    if drv is not None and not drv.joins_itself:
        drv.join(container.init_pid)


@hookimpl
def ocirt_cleanup(container: Container) -> None:
    drv = driver(container)
    if drv is None:
        return
    if drv.pids():  # processes left without a pid namespace to take them down
        drv.kill_all(9)
    drv.destroy()
    container.plugin_data[KEY] = _record(drv)


@hookimpl
def ocirt_status(container: Container) -> str | None:
    """For drivers with no freeze file: the others' is read by ``state`` itself."""
    drv = driver(container)
    return PAUSED if drv is not None and drv.frozen() else None


@hookimpl
def ocirt_kill_all(container: Container, signal: int) -> bool | None:
    drv = driver(container)
    if drv is None:
        return None
    drv.kill_all(signal)
    return True


@hookimpl
def ocirt_command(container: Container, command: str, options: dict[str, Any]) -> int | None:
    if command not in COMMANDS:
        return None
    drv = driver(container)
    if drv is None:
        raise OcirtError(f"{command}: container {container.id!r} has no cgroup (it was created without root)")
    from ocirt.plugins.cgroups import control

    return control.run(drv, container, command, options)
