"""Mount options as runc understands them: flags, propagation, and data."""

from __future__ import annotations

from ocirt.core import syscalls as s

#: option -> (clear?, flag). Options absent here go to the filesystem as data.
FLAGS: dict[str, tuple[bool, int]] = {
    "acl": (False, 0),
    "async": (True, s.MS_SYNCHRONOUS),
    "atime": (True, s.MS_NOATIME),
    "bind": (False, s.MS_BIND),
    "defaults": (False, 0),
    "dev": (True, s.MS_NODEV),
    "diratime": (True, s.MS_NODIRATIME),
    "dirsync": (False, s.MS_DIRSYNC),
    "exec": (True, s.MS_NOEXEC),
    "lazytime": (False, s.MS_LAZYTIME),
    "nolazytime": (True, s.MS_LAZYTIME),
    "mand": (False, s.MS_MANDLOCK),
    "noatime": (False, s.MS_NOATIME),
    "nodev": (False, s.MS_NODEV),
    "nodiratime": (False, s.MS_NODIRATIME),
    "noexec": (False, s.MS_NOEXEC),
    "nomand": (True, s.MS_MANDLOCK),
    "norelatime": (True, s.MS_RELATIME),
    "nostrictatime": (True, s.MS_STRICTATIME),
    "nosuid": (False, s.MS_NOSUID),
    "nosymfollow": (False, s.MS_NOSYMFOLLOW),
    "symfollow": (True, s.MS_NOSYMFOLLOW),
    "rbind": (False, s.MS_BIND | s.MS_REC),
    "relatime": (False, s.MS_RELATIME),
    "remount": (False, s.MS_REMOUNT),
    "ro": (False, s.MS_RDONLY),
    "rw": (True, s.MS_RDONLY),
    "silent": (False, s.MS_SILENT),
    "loud": (True, s.MS_SILENT),
    "strictatime": (False, s.MS_STRICTATIME),
    "suid": (True, s.MS_NOSUID),
    "sync": (False, s.MS_SYNCHRONOUS),
}

PROPAGATION: dict[str, int] = {
    "private": s.MS_PRIVATE,
    "rprivate": s.MS_PRIVATE | s.MS_REC,
    "shared": s.MS_SHARED,
    "rshared": s.MS_SHARED | s.MS_REC,
    "slave": s.MS_SLAVE,
    "rslave": s.MS_SLAVE | s.MS_REC,
    "unbindable": s.MS_UNBINDABLE,
    "runbindable": s.MS_UNBINDABLE | s.MS_REC,
}

#: Options ocirt accepts and ignores, as runc does.
IGNORED = frozenset({"tmpcopyup"})


class MountOptions:
    """A parsed ``options`` list."""

    def __init__(self, options: list[str]) -> None:
        self.flags = 0
        self.propagation: list[int] = []
        data: list[str] = []
        for option in options:
            if option in FLAGS:
                clear, flag = FLAGS[option]
                self.flags = self.flags & ~flag if clear else self.flags | flag
            elif option in PROPAGATION:
                self.propagation.append(PROPAGATION[option])
            elif option not in IGNORED:
                data.append(option)
        self.data = ",".join(data)

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & s.MS_BIND)


def all_options() -> list[str]:
    """Every option name understood (for ``ocirt features``)."""
    return sorted([*FLAGS, *PROPAGATION, *IGNORED])
