"""Device nodes in the container's ``/dev``: the default set, ``linux.devices``, links.

As runc: every container gets null, zero, full, random, urandom and tty, unless
``linux.devices`` names the same path; then ``/dev/ptmx -> pts/ptmx``,
``/dev/fd`` and the stdio links. Nothing is made when ``/dev`` is a bind mount
(the host's own nodes are then in view).

Nodes are made with mknodat relative to an fd of their directory, opened inside
the rootfs, and are chmod'ed and chown'ed only after checking that the inode is
the one just made. Inside a user namespace mknod is impossible: the host's node
is bind-mounted onto an empty file instead and is never chmod'ed or chown'ed,
since that would change the host's node, not a copy.
"""

from __future__ import annotations

import errno
import os
import stat

from ocirt.core import syscalls as s
from ocirt.plugins.mounts import paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: OCI device type -> file type. ``u`` (unbuffered) is a character device.
TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


class Device:
    """One node to create: container path, file type, numbers, mode and owner."""

    def __init__(
        self,
        path: str,
        kind: str,
        major: int = 0,
        minor: int = 0,
        mode: int = 0o666,
        uid: int = 0,
        gid: int = 0,
    ) -> None:
        self.path = path
        self.file_type = TYPES[kind]
        self.rdev = os.makedev(major, minor) if kind != "p" else 0
        self.mode = mode & 0o7777
        self.uid = uid
        self.gid = gid

    @classmethod
    def from_spec(cls, entry: dict[str, Any]) -> Device:
        """An entry of ``linux.devices`` (already validated); fileMode defaults to 0666."""
        mode = entry.get("fileMode")
        return cls(
            os.path.normpath(entry["path"]),
            entry["type"],
            entry.get("major", 0),
            entry.get("minor", 0),
            0o666 if mode is None else mode,
            entry.get("uid") or 0,
            entry.get("gid") or 0,
        )

    @property
    def kind_name(self) -> str:
        return {stat.S_IFCHR: "char", stat.S_IFBLK: "block", stat.S_IFIFO: "fifo"}[self.file_type]


DEFAULT_DEVICES = [
    Device("/dev/null", "c", 1, 3),
    Device("/dev/zero", "c", 1, 5),
    Device("/dev/full", "c", 1, 7),
    Device("/dev/random", "c", 1, 8),
    Device("/dev/urandom", "c", 1, 9),
    Device("/dev/tty", "c", 5, 0),
]

DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}


def check_spec_device(entry: Any, field: str, error: Any) -> None:
    """Validate one ``linux.devices`` entry; ``error(field, problem)`` builds the exception."""
    if not isinstance(entry, dict):
        raise error(field, "must be an object")
    path = entry.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise error(f"{field}.path", f"must be an absolute path, not {path!r}")
    if not os.path.normpath(path).startswith("/dev/"):
        raise error(f"{field}.path", f"must name a node under /dev/, not {path!r}")
    kind = entry.get("type")
    if kind not in TYPES:
        raise error(f"{field}.type", f"must be one of c, b, u, p, not {kind!r}")
    for key in ("major", "minor"):
        value = entry.get(key)
        if kind != "p" and value is None:
            raise error(f"{field}.{key}", f"required for a {kind} device")
        if value is not None and (not _is_int(value) or value < 0):
            raise error(f"{field}.{key}", f"must be a non-negative integer, not {value!r}")
    mode = entry.get("fileMode")
    if mode is not None and (not _is_int(mode) or not 0 <= mode <= 0o7777):
        raise error(f"{field}.fileMode", f"must be permission bits (0 to 0o7777), not {mode!r}")
    for key in ("uid", "gid"):
        value = entry.get(key)
        if value is not None and (not _is_int(value) or not 0 <= value < 2**32 - 1):
            raise error(f"{field}.{key}", f"must be a valid id, not {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def wanted(spec_devices: list[dict[str, Any]]) -> list[Device]:
    """The defaults not overridden by path, then the spec's devices, in order."""
    own = [Device.from_spec(d) for d in spec_devices]
    paths_given = {d.path for d in own}
    return [d for d in DEFAULT_DEVICES if d.path not in paths_given] + own


def setup_dev(root_fd: int, devices: list[Device], bind: bool) -> None:
    """Create ``devices``, ``/dev/ptmx``, the ``/dev`` links and ``/dev/shm``."""
    for device in devices:
        create_node(root_fd, device, bind)
    dev = paths.make_in_root(root_fd, "/dev")
    try:
        _replace_with_link(dev, "ptmx", "pts/ptmx")
        links = dict(DEV_LINKS)
        if os.path.exists("/proc/kcore"):
            links["core"] = "/proc/kcore"
        for name, target in links.items():
            try:
                os.symlink(target, name, dir_fd=dev)
            except FileExistsError:
                pass
        _make_shm(dev)
    finally:
        os.close(dev)


def create_node(root_fd: int, device: Device, bind: bool) -> None:
    """mknod one device (or, in a user namespace, bind the host's) at its container path."""
    parent_path, name = os.path.split(device.path)
    parent = paths.make_in_root(root_fd, parent_path)
    try:
        if bind and device.file_type != stat.S_IFIFO:  # a fifo needs no privilege
            _bind_host_node(root_fd, device)
            return
        try:
            os.mknod(name, device.mode | device.file_type, device.rdev, dir_fd=parent)
        except FileExistsError:
            return  # kept as it is, as runc does: it may be a bind of a host node
        except PermissionError:
            _bind_host_node(root_fd, device)
            return
        _set_owner_and_mode(parent, name, device)
    finally:
        os.close(parent)


def _set_owner_and_mode(parent: int, name: str, device: Device) -> None:
    """chown and chmod the node just made, after checking the inode is that node.

    mknod honours the umask, hence the chmod; owner first, since chown may
    clear set-id bits.
    """
    node = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        st = os.fstat(node)
        made_here = (
            stat.S_IFMT(st.st_mode) == device.file_type
            and st.st_rdev == device.rdev
            and st.st_dev == os.fstat(parent).st_dev
        )
        if not made_here:
            raise OSError(errno.EEXIST, "replaced while being created", device.path)
        os.chown(paths.proc_fd(node), device.uid, device.gid)
        os.chmod(paths.proc_fd(node), device.mode)
    finally:
        os.close(node)


def host_node(device: Device) -> str:
    """The host's node to bind: at the device's path, /dev/{char,block}/MAJ:MIN, or in /dev."""
    major, minor = os.major(device.rdev), os.minor(device.rdev)
    kind = "char" if device.file_type == stat.S_IFCHR else "block"
    for candidate in (device.path, f"/dev/{kind}/{major}:{minor}", *_host_dev_entries()):
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_IFMT(st.st_mode) == device.file_type and st.st_rdev == device.rdev:
            return candidate
    raise OSError(
        errno.ENOENT,
        f"no host node for {device.kind_name} device {major}:{minor} to bind into the user namespace",
        device.path,
    )


def _host_dev_entries() -> list[str]:
    """Nodes directly in the host's /dev, for a device the spec names differently."""
    try:
        with os.scandir("/dev") as entries:
            return sorted(e.path for e in entries if not e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def _bind_host_node(root_fd: int, device: Device) -> None:
    """Bind the host's node onto an empty file. Never chmod or chown it: it is the host's."""
    source = host_node(device)
    target = paths.make_in_root(root_fd, device.path, directory=False)
    try:
        if paths.same_inode(target, root_fd) or paths.is_dir(target):
            raise OSError(errno.EISDIR, "device path is a directory", device.path)
        s.mount(source, paths.proc_fd(target), None, s.MS_BIND)
    finally:
        os.close(target)


def _replace_with_link(dev: int, name: str, target: str) -> None:
    """``name`` becomes a symlink to ``target``, whatever the rootfs had there (runc's ptmx)."""
    try:
        if os.readlink(name, dir_fd=dev) == target:
            return
    except OSError:
        pass
    try:
        os.unlink(name, dir_fd=dev)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        os.rmdir(name, dir_fd=dev)
    os.symlink(target, name, dir_fd=dev)


def _make_shm(dev: int) -> None:
    """``/dev/shm`` for POSIX shared memory, world-writable and sticky like the host's."""
    try:
        os.mkdir("shm", 0o1777, dir_fd=dev)
    except FileExistsError:
        return
    shm = os.open("shm", os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dev)
    try:
        os.chmod(paths.proc_fd(shm), 0o1777)
    finally:
        os.close(shm)
