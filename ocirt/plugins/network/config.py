"""What a container asks of the network plugin, parsed and checked before anything is made.

Two sources: ``linux.netDevices`` (runtime-spec 1.2) and the opt-in mode, from the
``org.ocirt.network`` annotation or ``ocirt run --network MODE``. Engines manage
their own networks, so a config that asks for nothing gets nothing.

The result is a plain dict (JSON-ready): it is saved in the container's state as
``plugin_data["network"]["config"]``, so ``delete`` never re-reads config.json
(the bundle may be gone) nor the command line of ``run``.
"""

from __future__ import annotations

import ipaddress
import os

from ocirt.core.errors import SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container
    from ocirt.core.spec import Spec

ANNOTATION = "org.ocirt.network"
PREFIX = ANNOTATION + "."
MODES = ("none", "bridge", "cni:NAME")
OPTIONS = ("bridge", "subnet", "ports", "nat", "cni-dir", "cni-path", "ifname")

DEFAULT_BRIDGE = "ocirt0"
#: Rarely used by other tools (docker takes 172.17+, podman 10.88, netavark 10.89+).
DEFAULT_SUBNET = "10.213.0.0/24"
DEFAULT_CNI_DIRS = ("/etc/cni/net.d",)
DEFAULT_CNI_PATH = "/opt/cni/bin:/usr/lib/cni"
IFNAMSIZ = 15


def parse(container: Container) -> dict[str, Any]:
    """The container's network request, checked; raises ``SpecError`` naming the field."""
    spec = container.require_spec()
    notes = spec.annotations
    for key in notes:
        if key.startswith(PREFIX) and key[len(PREFIX) :] not in OPTIONS:
            raise spec.error(f"annotations.{key}", f"unknown option (known: {', '.join(OPTIONS)})")
    flag = container.options.get("network")
    if flag:
        mode, field = str(flag), "run --network"
    else:
        mode, field = notes.get(ANNOTATION, "none"), f"annotations.{ANNOTATION}"
    config: dict[str, Any] = {"mode": "none", "devices": _devices(spec)}
    if mode == "bridge":
        config.update(mode="bridge", **_bridge(spec, notes))
    elif mode.startswith("cni:") and len(mode) > 4:
        dirs = [notes[PREFIX + "cni-dir"]] if notes.get(PREFIX + "cni-dir") else list(DEFAULT_CNI_DIRS)
        config.update(
            mode="cni",
            cni_name=mode[4:],
            cni_dirs=dirs,
            cni_path=notes.get(PREFIX + "cni-path") or DEFAULT_CNI_PATH,
            ifname=_ifname(spec, notes.get(PREFIX + "ifname") or "eth0", f"annotations.{PREFIX}ifname"),
        )
    elif mode != "none":
        raise _error(spec, field, f"unknown network mode {mode!r} (known: {', '.join(MODES)})")
    if (config["mode"] != "none" or config["devices"]) and not _new_or_joined_netns(spec):
        what = "netDevices" if config["mode"] == "none" else f"network mode {mode!r}"
        raise spec.error("linux.namespaces", f"{what} needs a network namespace (add {{'type': 'network'}})")
    return config


def _error(spec: Spec, field: str, problem: str) -> SpecError:
    """A spec error, or for the command line a plain one naming the flag."""
    if field.startswith("run "):
        return SpecError(f"{field}: {problem}")
    return spec.error(field, problem)


def _new_or_joined_netns(spec: Spec) -> bool:
    return any(
        isinstance(n, dict) and n.get("type") == "network"
        for n in spec.section("linux.namespaces", list) or []
    )


def _bridge(spec: Spec, notes: dict[str, str]) -> dict[str, Any]:
    field = f"annotations.{PREFIX}"
    bridge = _ifname(spec, notes.get(PREFIX + "bridge") or DEFAULT_BRIDGE, field + "bridge")
    text = notes.get(PREFIX + "subnet") or DEFAULT_SUBNET
    try:
        subnet = ipaddress.IPv4Network(text, strict=True)
    except ValueError as e:
        raise spec.error(field + "subnet", f"{text!r} is not an IPv4 network in CIDR form ({e})") from None
    if subnet.prefixlen > 29:
        raise spec.error(field + "subnet", f"{text!r} is too small (at most /29: a gateway and containers)")
    nat = notes.get(PREFIX + "nat", "false").lower()
    if nat not in ("true", "false"):
        raise spec.error(field + "nat", f"must be true or false, not {nat!r}")
    return {
        "bridge": bridge,
        "subnet": str(subnet),
        "ports": _ports(spec, notes.get(PREFIX + "ports") or "", field + "ports"),
        "nat": nat == "true",
    }


def _ports(spec: Spec, text: str, field: str) -> list[list[Any]]:
    """``hostPort:containerPort[/tcp|udp],...`` as ``[[host, container, proto], ...]``."""
    ports: list[list[Any]] = []
    seen: set[tuple[int, str]] = set()
    for item in filter(None, (p.strip() for p in text.split(","))):
        pair, _, proto = item.partition("/")
        proto = proto or "tcp"
        host, sep, inside = pair.partition(":")
        if not sep or proto not in ("tcp", "udp") or not (_port(host) and _port(inside)):
            raise spec.error(field, f"{item!r} is not hostPort:containerPort[/tcp|/udp] with ports 1-65535")
        if (int(host), proto) in seen:
            raise spec.error(field, f"host port {host}/{proto} is published twice")
        seen.add((int(host), proto))
        ports.append([int(host), int(inside), proto])
    return ports


def _port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < int(text) < 65536


def _ifname(spec: Spec, name: Any, field: str) -> str:
    if not isinstance(name, str) or not name or len(name) > IFNAMSIZ or "/" in name or name in (".", ".."):
        raise spec.error(field, f"{name!r} is not an interface name (1-{IFNAMSIZ} characters, no '/')")
    if any(c.isspace() or c == ":" for c in name):
        raise spec.error(field, f"{name!r} is not an interface name (no spaces or ':')")
    return name


def _devices(spec: Spec) -> dict[str, str]:
    """``linux.netDevices`` as ``{host name: name in the container}``; each must exist now."""
    devices = spec.section("linux.netDevices") or {}
    result: dict[str, str] = {}
    for host_name, entry in devices.items():
        field = f"linux.netDevices.{host_name}"
        _ifname(spec, host_name, field)
        if not isinstance(entry, dict):
            raise spec.error(field, "must be an object")
        name = entry.get("name") or host_name
        name = _ifname(spec, name, field + ".name")
        if not os.path.exists(f"/sys/class/net/{host_name}"):
            raise spec.error(field, f"no network interface {host_name!r} on the host")
        if name in result.values() and "%d" not in name:
            raise spec.error(field + ".name", f"{name!r} is the container name of another device")
        result[host_name] = name
    return result
