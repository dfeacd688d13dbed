"""Bridge mode: a host bridge, a veth pair per container, an address, a default route.

Create (runtime, the init waiting, its namespace pinned)::

    lock ── lease an address ── bridge up with the gateway address (first use)
         ── veth <host name> <-> eth0 (born in the container's namespace)
         ── nft rules (ports, NAT) ── unlock
    inside: eth0 up, address/prefix, default route via the gateway

Each step is recorded in ``plugin_data["network"]["bridge"]`` *before* it is
taken, so ``teardown`` (delete, or the rollback of a failed create) undoes
exactly what exists. The bridge goes with its last lease if ocirt made it
(if it was there before, only the gateway address ocirt added goes): a host
keeps no ``ocirt0`` nobody uses.
"""

from __future__ import annotations

import hashlib
import ipaddress

from ocirt.core.errors import OcirtError
from ocirt.plugins.network import ipam, nft
from ocirt.plugins.network.netns import iproute

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pyroute2 import IPRoute

IFNAME = "eth0"


def host_ifname(owner: str) -> str:
    """The host end's name: ``ocv`` and a hash of the state directory (unique, 13 characters)."""
    return "ocv" + hashlib.sha256(owner.encode()).hexdigest()[:10]


def setup(config: dict[str, Any], record: dict[str, Any], owner: str, ns_fd: int) -> None:
    """Connect the namespace ``ns_fd`` to the bridge; fill ``record`` as it goes."""
    bridge = config["bridge"]
    record.update(bridge=bridge, owner=owner)
    with ipam.locked(), iproute() as host:
        leases = ipam.load(bridge)
        if leases is None:
            leases = ipam.new_record(config["subnet"])
        elif leases["subnet"] != config["subnet"]:
            raise OcirtError(
                f"bridge {bridge!r} serves {leases['subnet']}, not {config['subnet']}: "
                "give another org.ocirt.network.bridge or the same subnet"
            )
        address = ipam.allocate(leases, owner)
        record["address"] = address
        try:
            _ensure_bridge(host, bridge, leases)
        finally:
            ipam.save(bridge, leases)  # the lease, and whether the bridge is ours
        prefix = ipaddress.IPv4Network(config["subnet"]).prefixlen
        record["veth"] = veth = host_ifname(owner)
        master = _index(host, bridge)
        host.link("add", ifname=veth, kind="veth", peer={"ifname": IFNAME, "net_ns_fd": ns_fd})
        host.link("set", index=_index(host, veth), master=master, state="up")
        record["rules"] = []
        rules = nft.rules_for(address, bridge, config["ports"], config["nat"])
        if rules:
            if config["nat"]:
                _enable_forwarding()
            record["rules"] = nft.add(rules)
    with iproute(ns_fd) as inside:
        index = _index(inside, IFNAME)
        inside.link("set", index=index, state="up")
        inside.addr("add", index=index, address=address, prefixlen=prefix)
        inside.route("add", dst="0.0.0.0/0", gateway=leases["gateway"])
    record["gateway"] = leases["gateway"]
    record["prefixlen"] = prefix


def teardown(record: dict[str, Any]) -> None:
    """Undo ``setup`` as far as it went; safe to call twice."""
    bridge = record.get("bridge")
    if not bridge:
        return
    with ipam.locked(), iproute() as host:
        nft.delete(record.get("rules") or [])
        veth = record.get("veth")
        if veth and host.link_lookup(ifname=veth):
            host.link("del", index=_index(host, veth))  # its peer in the container goes with it
        leases = ipam.load(bridge)
        if leases is None:
            return
        ipam.release(leases, record["owner"])
        if not leases["leases"]:
            _retire_bridge(host, bridge, leases)
        ipam.save(bridge, leases)
    record.clear()


def _index(ipr: IPRoute, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise OcirtError(f"network interface {name!r} not found")
    return int(found[0])


def _ensure_bridge(host: IPRoute, bridge: str, leases: dict[str, Any]) -> None:
    """The bridge exists, is up and holds the gateway address."""
    if not host.link_lookup(ifname=bridge):
        host.link("add", ifname=bridge, kind="bridge")
        leases["created_bridge"] = True
    index = _index(host, bridge)
    prefix = ipaddress.IPv4Network(leases["subnet"]).prefixlen
    present = {a.get_attr("IFA_ADDRESS") for a in host.get_addr(index=index, family=2)}
    if leases["gateway"] not in present:
        host.addr("add", index=index, address=leases["gateway"], prefixlen=prefix)
        if not leases["created_bridge"]:
            leases["added_address"] = True
    host.link("set", index=index, state="up")


def _retire_bridge(host: IPRoute, bridge: str, leases: dict[str, Any]) -> None:
    """The last lease went: remove what ocirt added to the host for this bridge."""
    found = host.link_lookup(ifname=bridge)
    if not found:
        return
    if leases.get("created_bridge"):
        host.link("del", index=found[0])
    elif leases.get("added_address"):
        prefix = ipaddress.IPv4Network(leases["subnet"]).prefixlen
        try:
            host.addr("del", index=found[0], address=leases["gateway"], prefixlen=prefix)
        except Exception:
            pass  # removed by hand


def _enable_forwarding() -> None:
    """Outbound NAT routes the container's packets through the host: IPv4 forwarding on."""
    with open("/proc/sys/net/ipv4/ip_forward", "r+") as f:
        if f.read().strip() != "1":
            f.seek(0)
            f.write("1")
