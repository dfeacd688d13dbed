"""User namespaces: check the id mappings, write them from outside, become root inside.

The kernel lets only a process outside a new user namespace write its maps,
once, before anything depends on them. So, as runc does, the setup child
unshares CLONE_NEWUSER, asks the runtime (``ocirt_runtime_request``
"userns-maps") to write ``/proc/<setup pid>/{setgroups,uid_map,gid_map}``, then
becomes root inside and creates the other namespaces, which the new user
namespace then owns.

A runtime without root (rootless) has no CAP_SETUID/CAP_SETGID outside: the
kernel lets it map its own uid and gid only, one id each, and only after
setgroups(2) is denied in the namespace (``user_namespaces(7)``). A spec asking
for more is refused at validation rather than failing halfway.

Imported only when the spec has a user namespace or id mappings.
"""

from __future__ import annotations

import errno
import itertools
import os

from ocirt.core import syscalls
from ocirt.core.errors import OcirtError
from ocirt.plugins.namespaces.procfs import write_proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container
    from ocirt.core.spec import Spec

#: The kernel accepts at most this many lines in a uid_map or gid_map.
MAX_LINES = 340
KEYS = ("uidMappings", "gidMappings")
ID_MAX = 2**32 - 1


def mappings(spec: Spec, key: str) -> list[dict[str, int]]:
    return spec.section(f"linux.{key}", list) or []


def validate(container: Container, user: dict[str, Any] | None) -> None:
    """Refuse mappings the kernel would refuse, or that have no namespace to apply to."""
    spec = container.require_spec()
    given = {key: mappings(spec, key) for key in KEYS}
    if user is None:
        for key in KEYS:
            if given[key]:
                raise spec.error(f"linux.{key}", "id mappings need a user namespace in linux.namespaces")
        return
    for key in KEYS:
        _check_entries(spec, key, given[key])
    if user.get("path"):
        return  # the joined namespace has its maps; the setup child compares them
    for key in KEYS:
        if not given[key]:
            raise spec.error(
                f"linux.{key}",
                "a new user namespace needs mappings (a list of {containerID, hostID, size})",
            )
    for key, kind in (("uidMappings", "uid"), ("gidMappings", "gid")):
        if not _maps_id(given[key], 0):
            raise spec.error(f"linux.{key}", f"container {kind} 0 must be mapped (the setup runs as root)")
    user_ids = (spec.process or {}).get("user") or {}
    for key, field, kind in (("uidMappings", "uid", "uid"), ("gidMappings", "gid", "gid")):
        wanted = user_ids.get(field, 0)
        if isinstance(wanted, int) and not _maps_id(given[key], wanted):
            raise spec.error(f"process.user.{field}", f"{kind} {wanted} is not mapped in linux.{key}")
    if os.geteuid() != 0:
        _check_unprivileged(spec, given)


def _check_entries(spec: Spec, key: str, entries: list[Any]) -> None:
    if len(entries) > MAX_LINES:
        raise spec.error(f"linux.{key}", f"{len(entries)} mappings, the kernel takes at most {MAX_LINES}")
    for i, entry in enumerate(entries):
        field = f"linux.{key}[{i}]"
        if not isinstance(entry, dict):
            raise spec.error(field, "must be an object with containerID, hostID and size")
        for name in ("containerID", "hostID", "size"):
            value = entry.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= ID_MAX:
                raise spec.error(f"{field}.{name}", f"must be an integer from 0 to {ID_MAX}, not {value!r}")
        if entry["size"] == 0:
            raise spec.error(f"{field}.size", "must be at least 1")
    for side in ("containerID", "hostID"):
        ranges = sorted((e[side], e[side] + e["size"], i) for i, e in enumerate(entries))
        for (_, end, first), (start, _, second) in itertools.pairwise(ranges):
            if start < end:
                raise spec.error(
                    f"linux.{key}[{second}]", f"its {side} range overlaps that of linux.{key}[{first}]"
                )


def _maps_id(entries: list[dict[str, int]], inside: int) -> bool:
    return any(e["containerID"] <= inside < e["containerID"] + e["size"] for e in entries)


def _check_unprivileged(spec: Spec, given: dict[str, list[dict[str, int]]]) -> None:
    """Without root, the kernel takes one line mapping the runtime's own id (and setgroups denied)."""
    for key, own, kind in (("uidMappings", os.geteuid(), "uid"), ("gidMappings", os.getegid(), "gid")):
        entries = given[key]
        if len(entries) != 1 or entries[0]["hostID"] != own or entries[0]["size"] != 1:
            raise spec.error(
                f"linux.{key}",
                f"running without root, ocirt can only map its own {kind} ({own}) with size 1 "
                f"(as `ocirt spec --rootless` writes), not {map_text(entries).strip()!r}",
            )
    if ((spec.process or {}).get("user") or {}).get("additionalGids"):
        raise spec.error(
            "process.user.additionalGids",
            "running without root, setgroups is denied in the user namespace: no additional groups",
        )


def map_text(entries: list[dict[str, int]]) -> str:
    """The lines of a uid_map/gid_map: ``containerID hostID size``."""
    return "".join(f"{e['containerID']} {e['hostID']} {e['size']}\n" for e in entries)


def write_maps(container: Container, pid: int) -> None:
    """Runtime process: write the maps of ``pid``'s new user namespace.

    setgroups is denied first when the runtime is not root: the kernel demands
    it for a map written without CAP_SETGID outside, and it stops the container
    from dropping the runtime's groups to reach files they deny.
    """
    spec = container.require_spec()
    if pid <= 0:
        raise OcirtError("writing the user namespace maps: the setup child's pid is unknown")
    if os.geteuid() != 0:
        _write(f"/proc/{pid}/setgroups", "deny")
    _write(f"/proc/{pid}/uid_map", map_text(mappings(spec, "uidMappings")))
    _write(f"/proc/{pid}/gid_map", map_text(mappings(spec, "gidMappings")))


def _write(path: str, text: str) -> None:
    write_proc(path, text, f"writing {text.strip()!r}")


def become_root(required: bool = True) -> None:
    """Setup child, in the user namespace with its maps: take uid and gid 0 inside.

    Files the setup creates are then owned by the ids container root maps to,
    and uid 0 keeps the namespace's capabilities across the later setuid. In a
    joined namespace 0 may be unmapped (EINVAL): not ``required``, the ids stay
    and the process plugin sets the ones the spec asks for.

    The process stays non-dumpable (changing ids would make it so anyway):
    its /proc files belong to the host's root, which no process inside the
    namespace is, until the exec of the user process.
    """
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError as e:
        if not required and e.errno == errno.EINVAL:
            return
        reason = (e.strerror or str(e)).lower()
        raise OcirtError(f"becoming root in the user namespace: {reason}") from None
    finally:
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)


def check_joined(container: Container) -> None:
    """Setup child, after joining a user namespace by path: the spec's maps, if any, must be its maps."""
    spec = container.require_spec()
    for key, name in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
        entries = mappings(spec, key)
        if not entries:
            continue
        with open(f"/proc/self/{name}") as f:
            actual = sorted(tuple(int(n) for n in line.split()) for line in f if line.strip())
        expected = sorted((e["containerID"], e["hostID"], e["size"]) for e in entries)
        if actual != expected:
            raise OcirtError(
                f"linux.{key}: the joined user namespace maps {actual}, not the spec's {expected}"
            )
    become_root(required=False)
