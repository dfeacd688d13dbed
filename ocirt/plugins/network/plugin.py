"""Networking for containers with a network namespace, opt-in beyond loopback.

==========================  =======================================================
module                      its one job
==========================  =======================================================
``setup``                   create and delete in order, from the recorded request
``config``                  parse and check the request (annotations, ``--network``,
                            ``linux.netDevices``); no netlink
``netns``                   pin the container's namespace; netlink sockets inside it
``devices``                 ``linux.netDevices``: move in (renamed, addresses kept),
                            move back at delete
``bridge`` + ``ipam``       ``bridge`` mode: host bridge, veth, leased address, route
``nft``                     published ports and outbound NAT (``table inet ocirt``)
``cni``                     ``cni:NAME`` mode: CNI plugins from a conflist
==========================  =======================================================

What a container asks for::

    linux.netDevices                      {"dummy0": {"name": "net1"}}   (spec 1.2)
    annotations["org.ocirt.network"]      none (default) | bridge | cni:NAME
      org.ocirt.network.bridge            bridge name (ocirt0)
      org.ocirt.network.subnet            IPv4 CIDR (10.213.0.0/24)
      org.ocirt.network.ports             8080:80/tcp,5353:53/udp
      org.ocirt.network.nat               true: masquerade outbound traffic
      org.ocirt.network.cni-dir           where conflists are (/etc/cni/net.d)
      org.ocirt.network.cni-path          CNI plugin binaries (/opt/cni/bin:/usr/lib/cni)
      org.ocirt.network.ifname            CNI_IFNAME (eth0)
    ocirt run --network MODE              the same modes, for people at a shell

``lo`` stays with the namespaces plugin: it is one ioctl in the setup child
(inside a user namespace too), and a plugin set without this plugin should
still have a working loopback.

Hooks: ``ocirt_validate`` parses (this module imports nothing else for a
container that asks for no networking, and withdraws its later hooks so
``start`` and ``delete`` never load it); ``ocirt_configure_from_host``
(runtime, the init's namespace exists) pins the namespace and does the work,
``tryfirst`` so ``createRuntime`` hooks find the network ready;
``ocirt_cleanup`` undoes it from what ``plugin_data["network"]`` recorded,
also after the init died abruptly and on a failed create's rollback.
pyroute2 (about 165 ms to import) is only imported by those two, through
``netns``.
"""

from __future__ import annotations

from ocirt import hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container

KEY = "network"
ANNOTATION = "org.ocirt.network"


def _wanted(container: Container) -> bool:
    """Does the container ask for networking? (Checked without importing anything.)"""
    if container.options.get("network"):
        return True
    spec = container.spec
    if spec is None:
        return False
    linux = spec.data.get("linux") or {}
    return bool(linux.get("netDevices")) or any(k.startswith(ANNOTATION) for k in spec.annotations)


@hookimpl
def ocirt_features(container: Container | None) -> dict[str, Any] | None:
    return {"linux": {"netDevices": {"enabled": True}}}


@hookimpl
def ocirt_validate(container: Container) -> None:
    if container.exec_target or not _wanted(container):
        container.withdraw(ocirt_configure_from_host, ocirt_cleanup, ocirt_command)
        return
    from ocirt.plugins.network import config  # no netlink yet: that is for configure_from_host

    parsed = config.parse(container)
    if parsed["mode"] == "none" and not parsed["devices"]:
        container.withdraw(ocirt_configure_from_host, ocirt_cleanup, ocirt_command)
        return
    if parsed["mode"] == "cni":
        from ocirt.plugins.network import cni

        try:
            parsed["conflist"] = cni.find(parsed["cni_name"], parsed["cni_dirs"])
        except Exception as e:
            spec = container.require_spec()
            raise spec.error(f"annotations.{config.ANNOTATION}", str(e)) from None
    container.plugin_data[KEY] = {"config": parsed}


@hookimpl(tryfirst=True)
def ocirt_configure_from_host(container: Container) -> None:
    data = container.plugin_data.get(KEY)
    if not data:
        return
    from ocirt.plugins.network import setup

    setup.create(container, data)


@hookimpl
def ocirt_cleanup(container: Container) -> None:
    data = container.plugin_data.get(KEY)
    if not data:
        return
    from ocirt.plugins.network import setup

    setup.delete(container, data)


@hookimpl
def ocirt_command(container: Container, command: str, options: dict[str, Any]) -> int | None:
    """``network-check``: run CNI ``CHECK`` for a ``cni:NAME`` container (0 when it passes)."""
    if command != "network-check":
        return None
    data = container.plugin_data.get(KEY) or {}
    from ocirt.core.errors import OcirtError

    if not data.get("cni"):
        raise OcirtError(f"container {container.id!r} has no CNI network to check")
    from ocirt.plugins.network import cni

    cni.check(data["cni"])
    return 0
