"""Open and create paths inside an untrusted rootfs, by file descriptor.

A rootfs is untrusted: ``/proc`` may be a symlink to ``/`` on the host, a
directory may be swapped for a symlink while we work. Resolving a path string
and then mounting on it is a race, so every destination is opened with
``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`` relative to an fd of the
rootfs: the kernel resolves ``..`` and symlinks as if the rootfs were ``/``.
Mounts then go onto ``/proc/self/fd/<n>``, the very inode that was opened (as
runc does). Missing components are created one at a time relative to an fd of
their parent, so nothing is ever created outside the rootfs either.
"""

from __future__ import annotations

import errno
import os
import stat

from ocirt.core import syscalls as s

MAX_LINKS = 255
MAX_ROUNDS = 4096

#: Resolution inside a rootfs: ``..`` and symlinks stay under it, no /proc magic.
IN_ROOT = s.RESOLVE_IN_ROOT | s.RESOLVE_NO_MAGICLINKS


def proc_fd(fd: int) -> str:
    """The path that names exactly the inode behind ``fd`` (for mount(2) and friends)."""
    return f"/proc/self/fd/{fd}"


def open_root(rootfs: str) -> int:
    """An O_PATH fd of the rootfs directory (a trusted host path)."""
    return os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def open_in_root(root_fd: int, path: str, flags: int = os.O_PATH) -> int:
    """Open container path ``path`` with every symlink and ``..`` kept inside the root."""
    return s.openat2(root_fd, _relative(path), flags, IN_ROOT)


def _relative(path: str) -> str:
    return path.lstrip("/") or "."


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def make_in_root(root_fd: int, path: str, directory: bool = True, mode: int = 0o755) -> int:
    """Open ``path`` in the root, creating what is missing; an O_PATH fd.

    Missing parents are directories; the last component is a directory, or an
    empty file when ``directory`` is false. A dangling symlink is followed
    inside the root and its target created, as runc does. A missing component
    followed by ``..`` is dropped without being created (``/a/../b`` is
    ``/b``), as path cleaning would.
    """
    parts = _split(path)
    links = 0
    # Each round creates a component or follows a link; the bound only stops a
    # rootfs that keeps undoing our work from keeping us here forever.
    for _ in range(MAX_ROUNDS):
        try:
            return open_in_root(root_fd, "/".join(parts))
        except FileNotFoundError:
            if not parts:  # the rootfs itself is gone
                raise
        # The longest prefix that exists (resolution is monotone: a prefix of an
        # existing path exists). parts[k] is then missing, or a dangling symlink.
        k = len(parts) - 1
        while k > 0:
            try:
                parent = open_in_root(root_fd, "/".join(parts[:k]), os.O_PATH | os.O_DIRECTORY)
                break
            except FileNotFoundError:
                k -= 1
        else:
            parent = os.dup(root_fd)
        try:
            name, rest = parts[k], parts[k + 1 :]
            try:
                target = os.readlink(name, dir_fd=parent)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.EINVAL):
                    raise
            else:
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                base = [] if target.startswith("/") else parts[:k]
                parts = base + _split(target) + rest
                continue
            if rest and rest[0] == "..":
                parts = parts[:k] + rest[1:]
                continue
            _create(parent, name, directory or bool(rest), mode)
        finally:
            os.close(parent)
    raise OSError(errno.ELOOP, "the path keeps changing while it is created", path)


def _create(parent: int, name: str, directory: bool, mode: int) -> None:
    """mkdirat / an empty file relative to ``parent``; losing a race to another creator is fine."""
    try:
        if directory:
            os.mkdir(name, mode, dir_fd=parent)
        else:
            flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(name, flags, 0o644, dir_fd=parent))
    except FileExistsError:
        pass


def reopen(root_fd: int, fd: int) -> int:
    """A fresh fd of the path ``fd`` was opened at: after a mount there, its new top.

    The fd of a mount point keeps naming the directory beneath a mount made on
    it; the mount's own root is reached only by a new lookup. The path comes
    from the kernel (already resolved), so it is looked up again with no
    symlink allowed: if the rootfs changed meanwhile, this fails rather than
    lands elsewhere.
    """
    root = os.readlink(proc_fd(root_fd))
    resolved = os.readlink(proc_fd(fd))
    if resolved == root:
        # "." from root_fd would stay beneath the mount: look the rootfs up again.
        return os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not resolved.startswith(root.rstrip("/") + "/"):
        raise OSError(errno.EXDEV, "mount point moved out of the rootfs", resolved)
    relative = resolved[len(root) :]
    return s.openat2(root_fd, _relative(relative), os.O_PATH, IN_ROOT | s.RESOLVE_NO_SYMLINKS)


def same_inode(a: int, b: int) -> bool:
    """True when two fds name the same file (the rootfs itself, say)."""
    sa, sb = os.fstat(a), os.fstat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def is_dir(fd: int) -> bool:
    return stat.S_ISDIR(os.fstat(fd).st_mode)
