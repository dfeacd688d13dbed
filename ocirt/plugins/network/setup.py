"""Create and delete a container's networking, in order, from its recorded request.

The order at create: pin the namespace, move ``netDevices`` in, then the mode
(``bridge`` or ``cni``). Delete runs the reverse and goes on past a failing
step (collecting the errors), so one broken piece does not strand the rest.
Every step records what it made in ``data`` (``plugin_data["network"]``)
before making it.
"""

from __future__ import annotations

import os

from ocirt.core.errors import OcirtError
from ocirt.plugins.network import netns

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ocirt.core.context import Container


def create(container: Container, data: dict[str, Any]) -> None:
    config = data["config"]
    data["pinned"] = os.path.join(container.state.dir, netns.PIN_NAME)
    netns.pin(container.state.dir, container.init_pid)
    fd = netns.open_pinned(data["pinned"])
    if fd is None:
        raise OcirtError(f"the network namespace of pid {container.init_pid} could not be pinned")
    try:
        _guard("netDevices", lambda: _devices(config, data, fd))
        if config["mode"] == "bridge":
            from ocirt.plugins.network import bridge

            data["bridge"] = {}
            _guard("bridge network", lambda: bridge.setup(config, data["bridge"], container.state.dir, fd))
        elif config["mode"] == "cni":
            from ocirt.plugins.network import cni

            data["cni"] = {
                "conflist": config["conflist"],
                "container_id": container.id,
                "netns": data["pinned"],
                "ifname": config["ifname"],
                "cni_path": config["cni_path"],
            }
            cni.add(data["cni"])
    finally:
        os.close(fd)


def _devices(config: dict[str, Any], data: dict[str, Any], fd: int) -> None:
    if config["devices"]:
        from ocirt.plugins.network import devices

        data["devices"] = []
        devices.move_in(config["devices"], fd, data["devices"])


def delete(container: Container, data: dict[str, Any]) -> None:
    errors: list[str] = []
    pinned = data.get("pinned")
    fd = netns.open_pinned(pinned) if pinned else None
    try:
        if data.get("cni"):
            from ocirt.plugins.network import cni

            _collect(errors, lambda: cni.delete(data["cni"]))
            data.pop("cni")
        if data.get("bridge"):
            from ocirt.plugins.network import bridge

            _collect(errors, lambda: bridge.teardown(data["bridge"]))
        if data.get("devices"):
            from ocirt.plugins.network import devices

            _collect(errors, lambda: devices.move_out(data["devices"], fd))
    finally:
        if fd is not None:
            os.close(fd)
    if pinned:
        netns.unpin(pinned)
    if errors:
        raise OcirtError(f"network of {container.id!r}: {'; '.join(errors)}")


def _guard(what: str, step: Callable[[], None]) -> None:
    """Run a step; a netlink error becomes one line naming the step."""
    try:
        step()
    except OcirtError:
        raise
    except Exception as e:
        raise OcirtError(f"{what}: {_reason(e)}") from None


def _collect(errors: list[str], step: Callable[[], None]) -> None:
    try:
        _guard("network cleanup", step)
    except OcirtError as e:
        errors.append(str(e))


def _reason(e: Exception) -> str:
    code = getattr(e, "code", None)
    if isinstance(code, int) and code > 0:
        return f"{os.strerror(code).lower()} ({type(e).__name__})"
    return f"{type(e).__name__}: {e}"
