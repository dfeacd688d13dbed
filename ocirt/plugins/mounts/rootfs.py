"""The steps that turn a bundle's rootfs into the container's ``/``.

All run in the init, inside the container's mount namespace. Before pivot
every destination is opened inside the rootfs by fd (see ``paths``) and
mounted through ``/proc/self/fd/<n>``; no path string under the rootfs is ever
handed to mount(2), so a symlink in the rootfs cannot send a mount to the host.
"""

from __future__ import annotations

import errno
import os
import stat

from ocirt.core import fileio
from ocirt.core import syscalls as s
from ocirt.core.errors import OcirtError
from ocirt.plugins.mounts import paths
from ocirt.plugins.mounts.cgroupfs import mount_cgroup
from ocirt.plugins.mounts.options import FLAGS, PROPAGATION, MountOptions
from ocirt.plugins.mounts.paths import proc_fd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    #: (fd of a mount, its flags, its destination) to make read-only at the end.
    ReadOnlyLater = list[tuple[int, int, str]]

#: Filesystems that must land on a real directory, never through a symlink
#: (runc refuses the same: a rootfs must not choose where procfs goes).
ORDINARY_DIRECTORY_ONLY = ("proc", "sysfs")

#: Flags the kernel locks on mounts a user namespace received: a bind remount
#: there must keep them (statvfs reports them with the values of the MS_ flags).
LOCKED = s.MS_RDONLY | s.MS_NOSUID | s.MS_NODEV | s.MS_NOEXEC
ATIME = s.MS_NOATIME | s.MS_RELATIME | s.MS_STRICTATIME
ST_RELATIME = 0x1000


def mount_error(action: str, target: str, e: OSError) -> OcirtError:
    return OcirtError(f"{action} {target}: {(e.strerror or str(e)).lower()}")


def prepare_root(rootfs: str, propagation: str | None) -> None:
    """Set ``/``'s propagation and make the rootfs a mount point of its own."""
    flag = PROPAGATION[propagation] if propagation else s.MS_SLAVE | s.MS_REC
    s.mount(None, "/", None, flag)
    if not (flag & s.MS_REC and flag & (s.MS_SLAVE | s.MS_PRIVATE)):
        # rslave or rprivate leave no mount shared; any other may leave the
        # rootfs's parent shared, which pivot_root refuses.
        _make_parent_private(rootfs)
    try:
        s.mount(rootfs, rootfs, "bind", s.MS_BIND | s.MS_REC)
    except OSError as e:
        raise mount_error("bind-mounting the rootfs", rootfs, e) from None


def _make_parent_private(rootfs: str) -> None:
    """pivot_root refuses a shared parent mount: make the rootfs's parent private."""
    best = "/"
    for line in fileio.read_bytes("/proc/self/mountinfo").decode().splitlines():
        point = line.split()[4].replace("\\040", " ")
        inside = rootfs == point or rootfs.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best = point
    s.mount(None, best, None, s.MS_PRIVATE)


def mount_one(root_fd: int, index: int, entry: dict[str, Any], read_only_later: ReadOnlyLater) -> None:
    """Mount one ``mounts[]`` entry inside the rootfs ``root_fd`` names.

    A read-only tmpfs (or filesystem on /dev) is mounted writable and added to
    ``read_only_later``: nodes and mode changes go in first, as with runc.
    """
    dest = entry["destination"]
    options = MountOptions(entry.get("options") or [], entry.get("type"))
    fstype = entry.get("type") or ("bind" if options.is_bind else "")
    source = entry.get("source") or fstype or "none"
    where = f"mounts[{index}]"
    try:
        if fstype in ("cgroup", "cgroup2"):
            target = paths.make_in_root(root_fd, dest)
            try:
                top = mount_cgroup(root_fd, target, options)
            finally:
                os.close(target)
        elif options.is_bind:
            top = _bind(root_fd, where, source, dest, options)
        else:
            late = fstype == "tmpfs" or os.path.normpath(dest) == "/dev"
            top = _mount_fs(root_fd, where, source, dest, fstype, options, late)
            if late and options.flags & s.MS_RDONLY:
                read_only_later.append((os.dup(top), options.flags, dest))
    except OSError as e:
        raise mount_error(f"{where}: mounting {fstype or source} on", dest, e) from None
    try:
        if options.recursive:
            s.mount_setattr(top, "", s.AT_EMPTY_PATH | s.AT_RECURSIVE, options.attr_set, options.attr_clr)
        for flag in options.propagation:
            s.mount(None, proc_fd(top), None, flag)
    except OSError as e:
        raise mount_error(f"{where}: setting the options of", dest, e) from None
    finally:
        os.close(top)


def _bind(root_fd: int, where: str, source: str, dest: str, options: MountOptions) -> int:
    """Bind ``source`` (a host path) on ``dest``; the fd of the new mount."""
    if not os.path.isabs(source):
        source = os.path.normpath(os.path.join(os.getcwd(), source))
    try:
        directory = stat.S_ISDIR(os.stat(source).st_mode)
    except OSError as e:
        raise mount_error(f"{where}: bind source", source, e) from None
    target = paths.make_in_root(root_fd, dest, directory)
    try:
        if not directory and paths.same_inode(target, root_fd):
            raise OcirtError(f"{where}: {dest} resolves to the container's root: cannot bind a file over it")
        s.mount(source, proc_fd(target), "bind", options.flags & (s.MS_BIND | s.MS_REC))
        top = paths.reopen(root_fd, target)
    finally:
        os.close(target)
    if options.flags & ~(s.MS_BIND | s.MS_REC):
        try:
            _remount_bind(top, options)
        except BaseException:
            os.close(top)
            raise
    return top


def _remount_bind(top: int, options: MountOptions) -> None:
    """Apply ro, nosuid... to a bind, keeping what the kernel locked (runc does the same).

    In a user namespace a bind of a nosuid/nodev/noexec/ro mount must keep those
    flags, and its atime mode unless one is asked for; asking to clear one fails.
    """
    flags = options.flags & ~(s.MS_BIND | s.MS_REC)
    try:
        s.mount(None, proc_fd(top), None, flags | s.MS_BIND | s.MS_REMOUNT)
        return
    except PermissionError:
        current = os.statvfs(proc_fd(top)).f_flag
        keep = current & LOCKED
        if not flags & ATIME:
            keep |= current & (s.MS_NOATIME | s.MS_NODIRATIME)
            keep |= s.MS_RELATIME if current & ST_RELATIME else 0
        if not keep & ~flags or keep & options.cleared:
            raise
    s.mount(None, proc_fd(top), None, flags | keep | s.MS_BIND | s.MS_REMOUNT)


def _mount_fs(
    root_fd: int, where: str, source: str, dest: str, fstype: str, options: MountOptions, late_ro: bool
) -> int:
    """Mount a filesystem (tmpfs, proc...) on ``dest``; the fd of the new mount.

    A tmpfs over an existing directory takes that directory's mode unless the
    options give one (``mode=``), as with runc: ``/tmp`` stays 1777, ``/root`` 0700.
    """
    if fstype in ORDINARY_DIRECTORY_ONLY:
        _check_ordinary_directory(root_fd, where, dest, fstype)
    mode = None
    if fstype == "tmpfs" and not any(o.startswith("mode=") for o in options.data.split(",")):
        mode = _existing_mode(root_fd, dest)
    flags = options.flags & ~s.MS_RDONLY if late_ro else options.flags
    target = paths.make_in_root(root_fd, dest)
    try:
        try:
            s.mount(source, proc_fd(target), fstype, flags, options.data or None)
        except OSError as e:
            fallback = _fallback(e, fstype, options)
            if fallback is None:
                raise
            os.close(target)
            target = -1
            return fallback(root_fd, where, dest)
        top = paths.reopen(root_fd, target)
    finally:
        if target >= 0:
            os.close(target)
    if mode is not None:
        os.chmod(proc_fd(top), mode)
    return top


#: Filesystems a user namespace may not mount afresh, and the host mount runc binds instead.
HOST_FALLBACK = {"sysfs": "/sys", "mqueue": "/dev/mqueue"}


def _fallback(e: OSError, fstype: str, options: MountOptions) -> Callable[[int, str, str], int] | None:
    """What runc does when a mount fails in a user namespace, or None to fail.

    sysfs without its own network namespace, and mqueue, are refused there: bind
    the host's instead (recursively, with the same flags). devpts refuses a
    ``gid=`` the namespace does not map: mount it without.
    """
    if isinstance(e, PermissionError) and fstype in HOST_FALLBACK:
        flag_names = [o for o in ("ro", "nosuid", "nodev", "noexec") if options.flags & FLAGS[o][1]]
        bind = MountOptions(["rbind", *flag_names], "bind")
        return lambda root_fd, where, dest: _bind(root_fd, where, HOST_FALLBACK[fstype], dest, bind)
    if e.errno == errno.EINVAL and fstype == "devpts" and "gid=" in options.data:
        options.data = ",".join(o for o in options.data.split(",") if not o.startswith("gid="))
        return lambda root_fd, where, dest: _mount_fs(root_fd, where, "devpts", dest, fstype, options, False)
    return None


def _existing_mode(root_fd: int, dest: str) -> int | None:
    try:
        fd = paths.open_in_root(root_fd, dest)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return stat.S_IMODE(st.st_mode) if stat.S_ISDIR(st.st_mode) else None


def finish_read_only(read_only_later: ReadOnlyLater) -> None:
    """Make the mounts ``mount_one`` left writable read-only (closing their fds)."""
    while read_only_later:
        fd, flags, dest = read_only_later.pop(0)
        try:
            s.mount(None, proc_fd(fd), None, flags | s.MS_REMOUNT | s.MS_BIND | s.MS_RDONLY)
        except OSError as e:
            raise mount_error("remounting read-only", dest, e) from None
        finally:
            os.close(fd)


def _check_ordinary_directory(root_fd: int, where: str, dest: str, fstype: str) -> None:
    try:
        fd = paths.open_in_root(root_fd, dest, os.O_PATH | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        mode = os.fstat(fd).st_mode
    finally:
        os.close(fd)
    if not stat.S_ISDIR(mode):
        raise OcirtError(f"{where}: {fstype} must be mounted on an ordinary directory, and {dest} is not one")


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
        return
    null = os.open("/dev/null", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(null)
        if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
            # The rootfs's own /dev/null could be any file: masking with it would show its content.
            raise OcirtError(f"masking {path}: the container's /dev/null is not the null device")
        s.mount("/dev/null", path, None, s.MS_BIND)
    finally:
        os.close(null)


def readonly_path(path: str) -> None:
    """Bind ``path`` onto itself and remount it read-only, keeping nosuid/nodev/noexec.

    The bind inherits them from the mount it comes from (``/proc`` often has
    all three); a remount that left them out would drop them, or fail in a user
    namespace. runc keeps them the same way.
    """
    if not os.path.exists(path):
        return
    s.mount(path, path, None, s.MS_BIND | s.MS_REC)
    kept = os.statvfs(path).f_flag & (s.MS_NOSUID | s.MS_NODEV | s.MS_NOEXEC)
    s.mount(None, path, None, kept | s.MS_BIND | s.MS_REMOUNT | s.MS_RDONLY | s.MS_REC)
