"""A ``cgroup`` mount: the container's own view of the cgroup hierarchies.

On a cgroup v2 host it is a cgroup2 mount (scoped by the cgroup namespace).
On a v1 or hybrid host, as runc does: a tmpfs at the destination and, for each
hierarchy, the init's own cgroup directory bound read-only at ``<dest>/<name>``.
"""

from __future__ import annotations

import os

from ocirt.core import syscalls as s

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirt.plugins.mounts.options import MountOptions

CGROUP_ROOT = "/sys/fs/cgroup"


def _hierarchies() -> list[tuple[str, str, str]]:
    """(mount point, mount root, fs type) of every cgroup mount in our namespace."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            head, _, tail = line.partition(" - ")
            fields = head.split()
            fstype = tail.split()[0]
            if fstype in ("cgroup", "cgroup2"):
                found.append((fields[4], fields[3], fstype))
    return found


def _own_paths() -> dict[str, str]:
    """Controller list (as in /proc/self/cgroup) -> our cgroup path."""
    paths = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            paths[controllers] = path
    return paths


def mount_cgroup(dest: str, options: MountOptions) -> None:
    flags = options.flags | s.MS_NOSUID | s.MS_NODEV | s.MS_NOEXEC
    os.makedirs(dest, exist_ok=True)
    hierarchies = _hierarchies()
    if all(fstype == "cgroup2" for _, _, fstype in hierarchies):
        s.mount("cgroup2", dest, "cgroup2", flags)
        return
    s.mount("tmpfs", dest, "tmpfs", (flags & ~s.MS_RDONLY), "mode=755")
    own = _own_paths()
    for point, _root, fstype in hierarchies:
        if not point.startswith(CGROUP_ROOT + "/"):
            continue
        name = point[len(CGROUP_ROOT) + 1 :]
        key = "" if fstype == "cgroup2" else _controllers_key(own, name)
        if key is None or key not in own:
            continue
        source = os.path.join(point, own[key].lstrip("/"))
        target = os.path.join(dest, name)
        os.makedirs(target, exist_ok=True)
        s.mount(source, target, None, s.MS_BIND | s.MS_REC)
        s.mount(None, target, None, s.MS_BIND | s.MS_REMOUNT | flags | s.MS_RDONLY)
    if flags & s.MS_RDONLY:
        s.mount(None, dest, None, s.MS_REMOUNT | flags, "mode=755")


def _controllers_key(own: dict[str, str], name: str) -> str | None:
    """The /proc/self/cgroup key of the v1 hierarchy mounted at /sys/fs/cgroup/<name>."""
    wanted = set(name.split(","))
    for key in own:
        if key and set(key.split(",")) == wanted:
            return key
        if key == f"name={name}":
            return key
    return None
