"""A ``cgroup`` mount: the container's own view of the cgroup hierarchies.

On a cgroup v2 host it is a cgroup2 mount (scoped by the cgroup namespace).
On a v1 or hybrid host, as runc does: a tmpfs at the destination and, for each
hierarchy, the init's own cgroup directory bound read-only at ``<dest>/<name>``.
"""

from __future__ import annotations

import errno
import os

from ocirt.core import fileio
from ocirt.core import syscalls as s
from ocirt.plugins.mounts import paths
from ocirt.plugins.mounts.paths import proc_fd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirt.plugins.mounts.options import MountOptions

CGROUP_ROOT = "/sys/fs/cgroup"


def _hierarchies() -> list[tuple[str, str, str]]:
    """(mount point, mount root, fs type) of every cgroup mount in our namespace."""
    found = []
    for line in fileio.read_bytes("/proc/self/mountinfo").decode().splitlines():
        head, _, tail = line.partition(" - ")
        fields = head.split()
        fstype = tail.split()[0]
        if fstype in ("cgroup", "cgroup2"):
            found.append((fields[4], fields[3], fstype))
    return found


def _own_paths() -> dict[str, str]:
    """Controller list (as in /proc/self/cgroup) -> our cgroup path."""
    paths = {}
    for line in fileio.read_bytes("/proc/self/cgroup").decode().splitlines():
        _, controllers, path = line.split(":", 2)
        paths[controllers] = path
    return paths


def mount_cgroup(root_fd: int, target: int, options: MountOptions) -> int:
    """Mount the cgroup view on ``target`` (an fd in the rootfs ``root_fd``); the new mount's fd.

    Subdirectories are made inside the fresh tmpfs, relative to its fd, and each
    hierarchy is bound through ``/proc/self/fd``: nothing goes by a path under
    the rootfs.
    """
    flags = options.flags | s.MS_NOSUID | s.MS_NODEV | s.MS_NOEXEC
    hierarchies = _hierarchies()
    if all(fstype == "cgroup2" for _, _, fstype in hierarchies):
        s.mount("cgroup2", proc_fd(target), "cgroup2", flags)
        return paths.reopen(root_fd, target)
    s.mount("tmpfs", proc_fd(target), "tmpfs", (flags & ~s.MS_RDONLY), "mode=755")
    top = paths.reopen(root_fd, target)
    try:
        own = _own_paths()
        bound = []
        for point, _root, fstype in hierarchies:
            if not point.startswith(CGROUP_ROOT + "/"):
                continue
            name = point[len(CGROUP_ROOT) + 1 :]
            key = "" if fstype == "cgroup2" else _controllers_key(own, name)
            if key is None or key not in own or "/" in name:
                continue
            source = os.path.join(point, own[key].lstrip("/"))
            if not os.path.isdir(source):
                # In a cgroup namespace joined by path, /proc/self/cgroup is relative to
                # its root, whose host path is unknown here: show the hierarchy's root.
                source = point
            _bind_hierarchy(top, name, source)
            bound.append(name)
        _make_read_only(top, bound, flags)
    except BaseException:
        os.close(top)
        raise
    return top


def _bind_hierarchy(top: int, name: str, source: str) -> None:
    """Bind our own cgroup directory ``source`` at ``<tmpfs>/<name>``.

    The tmpfs is new and ours alone: the directory is made and opened relative
    to its fd, with nothing of the rootfs on the way.
    """
    try:
        os.mkdir(name, 0o755, dir_fd=top)
    except FileExistsError:
        pass
    sub = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=top)
    try:
        s.mount(source, proc_fd(sub), None, s.MS_BIND | s.MS_REC)
    finally:
        os.close(sub)


#: mount_setattr(2)'s attributes for the read-only, nosuid, nodev, noexec binds.
_LOCKED_DOWN = s.MOUNT_ATTR_RDONLY | s.MOUNT_ATTR_NOSUID | s.MOUNT_ATTR_NODEV | s.MOUNT_ATTR_NOEXEC


def _make_read_only(top: int, bound: list[str], flags: int) -> None:
    """Every hierarchy read-only (nosuid, nodev, noexec), and the tmpfs too if ``ro``.

    With a read-only tmpfs, one recursive mount_setattr(2) does it all; otherwise,
    or where the kernel lacks that call, each bind is remounted on its own.
    """
    if flags & s.MS_RDONLY:
        try:
            s.mount_setattr(top, "", s.AT_EMPTY_PATH | s.AT_RECURSIVE, _LOCKED_DOWN)
            return
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise
    for name in bound:
        # A new lookup of the name crosses into the bind: the fd of its top.
        fd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=top)
        try:
            s.mount(None, proc_fd(fd), None, s.MS_BIND | s.MS_REMOUNT | flags | s.MS_RDONLY)
        finally:
            os.close(fd)
    if flags & s.MS_RDONLY:
        s.mount(None, proc_fd(top), None, s.MS_REMOUNT | flags, "mode=755")


def _controllers_key(own: dict[str, str], name: str) -> str | None:
    """The /proc/self/cgroup key of the v1 hierarchy mounted at /sys/fs/cgroup/<name>."""
    wanted = set(name.split(","))
    for key in own:
        if key and set(key.split(",")) == wanted:
            return key
        if key == f"name={name}":
            return key
    return None
