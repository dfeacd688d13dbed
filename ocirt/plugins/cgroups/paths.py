"""Where a container's cgroup goes: the hierarchies mounted here and ``cgroupsPath``.

runc's cgroupfs rules, which engines rely on:

* an absolute ``linux.cgroupsPath`` is taken from each hierarchy's root;
* a relative one is nested under the runtime's own cgroup in that hierarchy
  (``/proc/self/cgroup``), so a runtime started inside a cgroup stays below it;
* no ``cgroupsPath`` is the relative path ``<id>``: the container nests under
  the caller's cgroup, as runc's default does;
* with ``--systemd-cgroup`` the path is ``slice:prefix:name``; without systemd
  it maps to the cgroupfs path systemd would use, ``/<a.slice>/<a-b.slice>/<prefix>-<name>.scope``.
"""

from __future__ import annotations

import os

from ocirt.core import fileio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirt.core.context import Container

CGROUP_ROOT = "/sys/fs/cgroup"

_v1_mounts: dict[str, tuple[str, str]] = {}


def is_unified() -> bool:
    """Whether /sys/fs/cgroup itself is cgroup2 (a pure v2 host)."""
    return os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))


def v1_mounts() -> dict[str, tuple[str, str]]:
    """Controller -> (mount point, root of the mount) for every cgroup v1 hierarchy.

    Read from mountinfo rather than assumed, since co-mounted controllers
    (``cpu,cpuacct``) and named hierarchies vary between hosts; read once per
    process (create asks three times, and the host's hierarchies do not move).
    """
    if _v1_mounts:
        return dict(_v1_mounts)
    found = _v1_mounts
    for line in fileio.read_bytes("/proc/self/mountinfo").decode().splitlines():
        fields = line.split()
        sep = fields.index("-")
        if fields[sep + 1] != "cgroup":
            continue
        root, mount_point = fields[3], fields[4]
        for option in fields[sep + 3].split(","):
            if option not in ("rw", "ro") and option not in found:
                found[option] = (mount_point, root)
    return dict(found)


def own_cgroups() -> dict[str, str]:
    """Controller -> this process's cgroup path, from /proc/self/cgroup."""
    own: dict[str, str] = {}
    for line in fileio.read_bytes("/proc/self/cgroup").decode().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            own[controller or ""] = path
    return own


def expand_slice(slice_name: str) -> str:
    """``a-b.slice`` -> ``/a.slice/a-b.slice``, as systemd nests slices."""
    if not slice_name or slice_name == "-.slice":
        return "/"
    if not slice_name.endswith(".slice") or "/" in slice_name:
        raise ValueError(f"invalid slice name {slice_name!r}")
    stem = slice_name[: -len(".slice")]
    path, prefix = "", ""
    for part in stem.split("-"):
        if not part:
            raise ValueError(f"invalid slice name {slice_name!r}")
        prefix = f"{prefix}-{part}" if prefix else part
        path += f"/{prefix}.slice"
    return path


def systemd_path(value: str) -> str:
    """``slice:prefix:name`` as the cgroupfs path systemd would give the scope."""
    parts = value.split(":")
    if len(parts) != 3:
        raise ValueError(f"expected slice:prefix:name, got {value!r}")
    slice_name, prefix, name = parts
    unit = name if name.endswith(".slice") else (f"{prefix}-{name}.scope" if prefix else f"{name}.scope")
    return os.path.join(expand_slice(slice_name or "system.slice"), unit)


def requested(container: Container) -> str:
    """The cgroup path asked for: absolute, or relative to the runtime's own cgroup."""
    spec = container.spec
    linux = spec.data.get("linux") if spec is not None else None
    path = (linux or {}).get("cgroupsPath") or ""
    if container.options.get("systemd_cgroup"):
        return systemd_path(path or f"system.slice:ocirt:{container.id}")
    return path or container.id


def resolve(path: str, mount_point: str, mount_root: str, own: str) -> str:
    """The directory of ``path`` in one hierarchy mounted at ``mount_point``."""
    if not path.startswith("/"):
        path = os.path.join(own or "/", path)
    # A hierarchy mounted from a sub-cgroup (inside a container) shows paths below its root.
    if mount_root != "/" and (path == mount_root or path.startswith(mount_root + "/")):
        path = path[len(mount_root) :]
    normal = os.path.normpath("/" + path.lstrip("/"))  # normpath keeps a leading "//"
    if normal == "/" or ".." in normal.split("/"):
        raise ValueError(f"{path!r} does not name a cgroup of its own")
    return mount_point + normal
