"""``linux.sysctl``: kernel parameters set inside the container's own namespaces.

Only parameters that belong to a namespace the container does not share with
the host are accepted, as runc's validator decides: writing any other one would
change the whole machine. They are written by the init after pivot_root through
``/proc/sys`` (before ``readonlyPaths`` makes it read-only); the kernel resolves
net and ipc parameters in the writer's namespaces, which are the container's.

Imported only when the spec has ``linux.sysctl`` (by ``ocirt_validate``, in the
runtime, so the init has it after pivot_root, where it cannot import).
"""

from __future__ import annotations

import os

from ocirt.core import syscalls
from ocirt.core.errors import OcirtError
from ocirt.plugins.namespaces.plugin import wanted
from ocirt.plugins.namespaces.procfs import write_proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container
    from ocirt.core.spec import Spec

#: System V IPC parameters, namespaced with ipc (fs.mqueue.* too).
IPC_KEYS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)


def parts(key: str) -> list[str]:
    """``net.ipv4.ip_forward`` or, as sysctl(8) also takes, ``net/ipv4/conf/eth0.1/rp_filter``."""
    return key.split("/") if "/" in key else key.split(".")


def validate(container: Container) -> None:
    """Refuse a parameter unless the container owns the namespace it belongs to."""
    spec = container.require_spec()
    settings = spec.section("linux.sysctl")
    if not settings:
        return
    for key, value in settings.items():
        field = f"linux.sysctl.{key}"
        if not isinstance(value, str):
            raise spec.error(field, f"must be a string, not {value!r}")
        names = parts(key)
        if any(n in ("", ".", "..") for n in names):
            raise spec.error(field, "is not a sysctl name")
        dotted = ".".join(names)
        if dotted in IPC_KEYS or names[:2] == ["fs", "mqueue"]:
            if wanted(container, "ipc") is None:
                raise spec.error(field, "needs an ipc namespace in linux.namespaces (not the host's)")
        elif names[0] == "net":
            _check_network(spec, field, wanted(container, "network"))
        elif dotted == "kernel.hostname":
            raise spec.error(field, 'is not allowed: set the "hostname" field instead')
        elif dotted == "kernel.domainname":
            uts = wanted(container, "uts")
            if uts is None or uts.get("path"):
                raise spec.error(field, "needs a new uts namespace in linux.namespaces")
        else:
            raise spec.error(field, "is not in a separate kernel namespace: it would change the host")


def _check_network(spec: Spec, field: str, network: dict[str, Any] | None) -> None:
    if network is None:
        raise spec.error(field, "needs a network namespace in linux.namespaces (not the host's)")
    path = network.get("path")
    if not path:
        return
    try:
        joined, host = os.stat(path), os.stat("/proc/self/ns/net")
    except OSError:
        return  # the namespace check reports a bad path
    if (joined.st_dev, joined.st_ino) == (host.st_dev, host.st_ino):
        raise spec.error(field, f"{path} is the host's network namespace")


def apply(container: Container) -> None:
    """Init, after pivot_root: write each parameter under /proc/sys."""
    spec = container.require_spec()
    settings = spec.section("linux.sysctl")
    if not settings:
        return
    if not os.path.isdir("/proc/sys"):
        raise OcirtError("linux.sysctl: /proc/sys is missing in the container (mount proc at /proc)")
    for key, value in settings.items():
        path = os.path.join("/proc/sys", *parts(key))
        what = f"linux.sysctl: setting {key} to {value!r}"
        if parts(key) == ["kernel", "domainname"]:
            # The file is the host root's even in a user namespace that owns
            # the uts namespace; the system call asks for the capability there.
            try:
                syscalls.setdomainname(value)
            except OSError as e:
                raise OcirtError(f"{what}: {(e.strerror or str(e)).lower()}") from None
            continue
        write_proc(path, value, what)
