"""Thin ctypes layer for the system calls that :mod:`os` lacks (through ctypes' C core,
``ocirt.core.libc``: the ``ctypes`` package itself costs 1.9 ms to import).

Every wrapper raises :class:`OSError` with the errno and the path involved, so
callers can report failures in one line. Syscall numbers are per architecture.
"""

from __future__ import annotations

import errno
import os

from ocirt.core import libc as ctypes

_libc = ctypes.libc

# Syscall numbers for calls glibc 2.36 has no wrapper for.
_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "pivot_root": 155,
        "setns": 308,
        "mount_setattr": 442,
        "openat2": 437,
        "ioprio_set": 251,
        "sched_setattr": 314,
    },
    "aarch64": {
        "pivot_root": 41,
        "setns": 268,
        "mount_setattr": 442,
        "openat2": 437,
        "ioprio_set": 30,
        "sched_setattr": 274,
    },
}
_NR = _SYSCALLS.get(os.uname().machine, _SYSCALLS["x86_64"])

# Namespace clone flags (linux/sched.h).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# Mount flags (linux/mount.h).
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000
MNT_DETACH = 0x2

# openat2(2) resolve flags (linux/openat2.h).
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
#: How often openat2 is repeated while the kernel answers EAGAIN (see ``openat2``).
OPENAT2_RETRIES = 128

# mount_setattr(2) attributes (linux/mount.h). The atime modes are an enum in
# the bits of MOUNT_ATTR__ATIME, not flags: relatime is 0.
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000

# *at(2) flags (linux/fcntl.h).
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000

# prctl options.
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# capget(2)/capset(2): version 3 carries 64 bits per set, in two 32-bit halves.
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _check(result: int, *paths: str | None) -> int:
    if result < 0:
        err = ctypes.get_errno()
        shown = [p for p in paths if p]
        raise OSError(err, os.strerror(err), *shown[:1])
    return result


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    """mount(2); ``data`` is the comma-separated option string a filesystem takes."""
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)), target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_NR["pivot_root"], _b(new_root), _b(put_old)), new_root)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags))


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(
        _libc.prctl(
            option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)
        )
    )


def socket(family: int, kind: int, protocol: int = 0) -> int:
    """A socket as a bare fd (for an ioctl): the ``_socket`` module costs 0.6 ms to load."""
    return _check(_libc.socket(family, kind, protocol))


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)))


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, len(raw)))


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): open ``path`` relative to ``dirfd`` under the ``resolve`` rules.

    With ``RESOLVE_IN_ROOT`` the kernel resolves ``..`` and symlinks as if
    ``dirfd`` were ``/``, atomically: the way to open a path in an untrusted tree.
    O_CLOEXEC is always added.

    With ``..`` in the path, the kernel answers EAGAIN when any rename or mount
    happened on the machine during the lookup (it cannot then prove the walk
    stayed inside): the call is simply repeated, a bounded number of times.
    """
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    raw = _b(path)
    for _ in range(OPENAT2_RETRIES):
        result = _libc.syscall(
            _NR["openat2"], ctypes.c_int(dirfd), raw, ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))
        )
        if result >= 0 or ctypes.get_errno() != errno.EAGAIN:
            break
    return _check(result, path)


def mount_setattr(
    dirfd: int, path: str, flags: int, attr_set: int = 0, attr_clr: int = 0, propagation: int = 0
) -> None:
    """mount_setattr(2): change a mount's attributes, the whole tree with AT_RECURSIVE."""
    attr = _MountAttr(attr_set, attr_clr, propagation, 0)
    result = _libc.syscall(
        _NR["mount_setattr"],
        ctypes.c_int(dirfd),
        _b(path),
        ctypes.c_uint(flags),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    _check(result, path or None)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def capget() -> tuple[int, int, int]:
    """The calling thread's (effective, permitted, inheritable) sets as 64-bit masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data))
    effective, permitted, inheritable = (
        getattr(data[0], name) | getattr(data[1], name) << 32
        for name in ("effective", "permitted", "inheritable")
    )
    return effective, permitted, inheritable


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) of the calling thread's three sets, each a 64-bit mask of capability numbers."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(header), data))


class _SchedAttr(ctypes.Structure):
    """struct sched_attr as of SCHED_ATTR_SIZE_VER0 (48 bytes): no utilization clamps."""

    _fields_ = [
        ("size", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32),
        ("sched_priority", ctypes.c_uint32),
        ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64),
        ("sched_period", ctypes.c_uint64),
    ]


def sched_setattr(
    policy: int,
    flags: int = 0,
    nice: int = 0,
    priority: int = 0,
    runtime: int = 0,
    deadline: int = 0,
    period: int = 0,
) -> None:
    """sched_setattr(2) for the calling thread (glibc 2.36 has no wrapper)."""
    attr = _SchedAttr(ctypes.sizeof(_SchedAttr), policy, flags, nice, priority, runtime, deadline, period)
    _check(_libc.syscall(_NR["sched_setattr"], ctypes.c_int(0), ctypes.byref(attr), ctypes.c_uint(0)))


def ioprio_set(which: int, who: int, ioprio: int) -> None:
    """ioprio_set(2) (glibc has no wrapper)."""
    _check(_libc.syscall(_NR["ioprio_set"], ctypes.c_int(which), ctypes.c_int(who), ctypes.c_int(ioprio)))


def personality(persona: int) -> int:
    """personality(2); returns the previous persona."""
    return _check(_libc.personality(ctypes.c_ulong(persona)))
