"""The steps that turn a bundle's rootfs into the container's ``/``.

All run in the init, inside the container's mount namespace. Before pivot
paths are host paths under the rootfs, always resolved with ``secure_join``.
"""

from __future__ import annotations

import os
import stat

from ocirt.core import syscalls as s
from ocirt.core.errors import OcirtError
from ocirt.plugins.mounts.options import PROPAGATION, MountOptions
from ocirt.plugins.mounts.paths import secure_join

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Character devices every container gets: name -> (major, minor).
DEFAULT_DEVICES = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}

DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}


def mount_error(action: str, target: str, e: OSError) -> OcirtError:
    return OcirtError(f"{action} {target}: {(e.strerror or str(e)).lower()}")


def prepare_root(rootfs: str, propagation: str | None) -> None:
    """Set ``/``'s propagation and make the rootfs a mount point of its own."""
    flag = PROPAGATION[propagation] if propagation else s.MS_SLAVE | s.MS_REC
    s.mount(None, "/", None, flag)
    _make_parent_private(rootfs)
    try:
        s.mount(rootfs, rootfs, "bind", s.MS_BIND | s.MS_REC)
    except OSError as e:
        raise mount_error("bind-mounting the rootfs", rootfs, e) from None


def _make_parent_private(rootfs: str) -> None:
    """pivot_root refuses a shared parent mount: make the rootfs's parent private."""
    best = "/"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            inside = rootfs == point or rootfs.startswith(point.rstrip("/") + "/")
            if inside and len(point) > len(best):
                best = point
    s.mount(None, best, None, s.MS_PRIVATE)


def mount_one(rootfs: str, index: int, entry: dict[str, Any]) -> None:
    """Mount one ``mounts[]`` entry under the rootfs."""
    dest = secure_join(rootfs, entry["destination"])
    options = MountOptions(entry.get("options") or [])
    fstype = entry.get("type") or ("bind" if options.is_bind else "")
    source = entry.get("source") or fstype or "none"
    if fstype == "cgroup" or fstype == "cgroup2":
        from ocirt.plugins.mounts.cgroupfs import mount_cgroup

        mount_cgroup(dest, options)
        return
    if options.is_bind:
        if not os.path.isabs(source):
            source = os.path.normpath(os.path.join(os.getcwd(), source))
        try:
            src_stat = os.stat(source)
        except OSError as e:
            raise mount_error(f"mounts[{index}]: bind source", source, e) from None
        _make_target(dest, stat.S_ISDIR(src_stat.st_mode))
        try:
            s.mount(source, dest, "bind", options.flags & (s.MS_BIND | s.MS_REC))
            extra = options.flags & ~(s.MS_BIND | s.MS_REC)
            if extra:
                s.mount(None, dest, None, extra | s.MS_BIND | s.MS_REMOUNT)
        except OSError as e:
            raise mount_error(
                f"mounts[{index}]: bind-mounting {source} on", entry["destination"], e
            ) from None
    else:
        _make_target(dest, True)
        try:
            s.mount(source, dest, fstype, options.flags, options.data or None)
        except OSError as e:
            raise mount_error(f"mounts[{index}]: mounting {fstype}", entry["destination"], e) from None
    for flag in options.propagation:
        s.mount(None, dest, None, flag)


def _make_target(dest: str, directory: bool) -> None:
    if directory:
        os.makedirs(dest, exist_ok=True)
    elif not os.path.exists(dest):
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def create_default_devices(rootfs: str) -> None:
    """mknod the default devices and /dev links, unless /dev already has them."""
    dev = secure_join(rootfs, "/dev")
    os.makedirs(dev, exist_ok=True)
    for name, (major, minor) in DEFAULT_DEVICES.items():
        path = os.path.join(dev, name)
        if os.path.lexists(path):
            continue
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(path, 0o666)  # mknod honours the umask
    for name, target in {**DEV_LINKS, "ptmx": "pts/ptmx"}.items():
        path = os.path.join(dev, name)
        if not os.path.lexists(path):
            os.symlink(target, path)


def pivot(rootfs: str) -> None:
    """pivot_root into the rootfs and detach the old root (runc's '.'/'.' form)."""
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new_root)
        s.pivot_root(".", ".")
        os.fchdir(old_root)
        s.mount(None, ".", None, s.MS_SLAVE | s.MS_REC)
        s.umount2(".", s.MNT_DETACH)
        os.chdir("/")
    except OSError as e:
        raise mount_error("pivot_root to", rootfs, e) from None
    finally:
        os.close(old_root)
        os.close(new_root)


def move_root(rootfs: str) -> None:
    """``--no-pivot``: move the rootfs over ``/`` and chroot (for ramfs roots)."""
    os.chdir(rootfs)
    s.mount(rootfs, "/", None, s.MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def remount_root_readonly() -> None:
    s.mount(None, "/", None, s.MS_BIND | s.MS_REMOUNT | s.MS_RDONLY)


def mask_path(path: str) -> None:
    """Hide ``path``: /dev/null over a file, an empty read-only tmpfs over a directory."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        s.mount("tmpfs", path, "tmpfs", s.MS_RDONLY)
    else:
        s.mount("/dev/null", path, None, s.MS_BIND)


def readonly_path(path: str) -> None:
    """Bind ``path`` onto itself and remount it read-only."""
    if not os.path.exists(path):
        return
    s.mount(path, path, None, s.MS_BIND | s.MS_REC)
    s.mount(None, path, None, s.MS_BIND | s.MS_REMOUNT | s.MS_RDONLY | s.MS_REC)
