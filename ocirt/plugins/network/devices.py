"""``linux.netDevices`` (runtime-spec 1.2): host interfaces lent to the container.

Moving an interface to another namespace keeps its MTU and flags but the kernel
drops its addresses, so the permanent, global-scope ones (``IFA_F_PERMANENT``,
``RT_SCOPE_UNIVERSE``, as the spec asks) are read first and added again inside;
the move and the rename are one netlink request (the kernel expands a ``%d``
template). The device is set up inside.

At delete the device comes back under its host name with those addresses
(and down if it was down): ocirt pins the container's namespace (see
``netns``), so a dummy or veth device is not destroyed with a namespace whose
processes are gone. The spec leaves a device's return to the kernel; ocirt
does it at delete so the host finds its interface as it lent it.
"""

from __future__ import annotations

import os

from ocirt.core.errors import OcirtError
from ocirt.plugins.network.netns import host_fd, iproute

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pyroute2 import IPRoute

IFA_F_PERMANENT = 0x80
RT_SCOPE_UNIVERSE = 0
IFF_UP = 0x1


def _addresses(ipr: IPRoute, index: int) -> list[list[Any]]:
    """``[[family, address, prefixlen], ...]``: the permanent global addresses to carry over."""
    found = []
    for msg in ipr.get_addr(index=index):
        flags = msg.get_attr("IFA_FLAGS") or msg["flags"]
        if msg["scope"] == RT_SCOPE_UNIVERSE and flags & IFA_F_PERMANENT:
            found.append([msg["family"], msg.get_attr("IFA_ADDRESS"), msg["prefixlen"]])
    return found


def move_in(devices: dict[str, str], ns_fd: int, moved: list[dict[str, Any]]) -> None:
    """Move each ``{host name: container name}`` into ``ns_fd``; append a record per device."""
    for host_name, name in devices.items():
        with iproute() as host:
            found = host.link_lookup(ifname=host_name)
            if not found:
                raise OcirtError(f"linux.netDevices.{host_name}: no such interface on the host")
            link = host.get_links(found[0])[0]
            record = {
                "host_name": host_name,
                "name": name,
                "mac": link.get_attr("IFLA_ADDRESS"),
                "up": bool(link["flags"] & IFF_UP),
                "addresses": _addresses(host, found[0]),
            }
            try:
                host.link("set", index=found[0], net_ns_fd=ns_fd, ifname=name)
            except Exception as e:
                raise OcirtError(
                    f"linux.netDevices.{host_name}: moving it in as {name!r}: {_reason(e)}"
                ) from None
        moved.append(record)
        with iproute(ns_fd) as inside:
            index = _find(inside, record)
            record["name"] = inside.get_links(index)[0].get_attr("IFLA_IFNAME")  # a %d template resolved
            for family, address, prefixlen in record["addresses"]:
                inside.addr("add", index=index, family=family, address=address, prefixlen=prefixlen)
            inside.link("set", index=index, state="up")


def move_out(moved: list[dict[str, Any]], ns_fd: int | None) -> None:
    """Bring every moved device back to the host, last moved first; drop each record once done."""
    while moved:
        record = moved[-1]
        if ns_fd is not None:
            _move_back(record, ns_fd)
        moved.pop()


def _move_back(record: dict[str, Any], ns_fd: int) -> None:
    with iproute(ns_fd) as inside:
        try:
            index = _find(inside, record)
        except OcirtError:
            return  # gone (deleted inside the container)
        own = host_fd()
        try:
            inside.link("set", index=index, state="down")
            inside.link("set", index=index, net_ns_fd=own, ifname=record["host_name"])
        except Exception as e:
            raise OcirtError(
                f"moving {record['name']!r} back to the host as {record['host_name']!r}: {_reason(e)}"
            ) from None
        finally:
            os.close(own)
    with iproute() as host:
        found = host.link_lookup(ifname=record["host_name"])
        if not found:
            return
        for family, address, prefixlen in record["addresses"]:
            try:
                host.addr("add", index=found[0], family=family, address=address, prefixlen=prefixlen)
            except Exception:
                pass  # already there
        if record["up"]:
            host.link("set", index=found[0], state="up")


def _find(ipr: IPRoute, record: dict[str, Any]) -> int:
    """The device inside, by its name there, else (a ``%d`` template) by its MAC address."""
    found = ipr.link_lookup(ifname=record["name"])
    if found:
        return int(found[0])
    for link in ipr.get_links():
        if record["mac"] and link.get_attr("IFLA_ADDRESS") == record["mac"]:
            return int(link["index"])
    raise OcirtError(f"network interface {record['name']!r} not found in the container")


def _reason(e: Exception) -> str:
    """A netlink error as one lower-case line."""
    code = getattr(e, "code", None)
    if isinstance(code, int) and code > 0:
        return os.strerror(code).lower()
    return str(e)
