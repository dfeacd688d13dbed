"""A small address store for bridge mode: one JSON file per bridge, one lock for all.

Bridges are host-wide, so the store is too: ``/run/ocirt-net`` (tmpfs: leases
die with the machine, as the bridges do), not a ``--root`` of its own. Every
change to the network plumbing (leases, creating or removing a bridge,
ocirt's nftables table) happens under one ``flock`` of ``.lock`` there, so
concurrent creates get distinct addresses and a create cannot race the delete
that removes the bridge it is about to use.

``<bridge>.json``::

    {"subnet": "10.213.0.0/24", "gateway": "10.213.0.1",
     "created_bridge": true, "added_address": false,
     "leases": {"10.213.0.2": "/run/ocirt/c1"}}

A lease's owner is the container's state directory (unique across ``--root``
trees). The file goes when its last lease does; the lock file and directory stay.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
from contextlib import contextmanager

from ocirt.core import jsonio
from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

DIRECTORY = "/run/ocirt-net"


@contextmanager
def locked() -> Iterator[None]:
    """Hold the network plumbing lock (blocking)."""
    os.makedirs(DIRECTORY, 0o700, exist_ok=True)
    fd = os.open(os.path.join(DIRECTORY, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _path(bridge: str) -> str:
    return os.path.join(DIRECTORY, f"{bridge}.json")


def load(bridge: str) -> dict[str, Any] | None:
    """The bridge's record, or None if ocirt holds no lease on it. Call under ``locked``."""
    try:
        with open(_path(bridge)) as f:
            return jsonio.loads(f.read())
    except FileNotFoundError:
        return None


def save(bridge: str, record: dict[str, Any]) -> None:
    """Write (atomically) or, without leases, remove the bridge's record. Call under ``locked``."""
    path = _path(bridge)
    if not record.get("leases"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(jsonio.dumps(record))
    os.rename(tmp, path)


def new_record(subnet: str) -> dict[str, Any]:
    network = ipaddress.IPv4Network(subnet)
    gateway = next(network.hosts())
    return {
        "subnet": subnet,
        "gateway": str(gateway),
        "created_bridge": False,
        "added_address": False,
        "leases": {},
    }


def allocate(record: dict[str, Any], owner: str) -> str:
    """The lowest free address of the subnet (after the gateway), leased to ``owner``."""
    network = ipaddress.IPv4Network(record["subnet"])
    for address in network.hosts():
        text = str(address)
        if text != record["gateway"] and text not in record["leases"]:
            record["leases"][text] = owner
            return text
    raise OcirtError(f"no free address left in {record['subnet']} ({len(record['leases'])} leased)")


def release(record: dict[str, Any], owner: str) -> None:
    """Drop every lease ``owner`` holds."""
    for address in [a for a, o in record["leases"].items() if o == owner]:
        del record["leases"][address]
