"""Mount options as runc understands them: flags, propagation, recursive attributes, data."""

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

#: Recursive options, applied with mount_setattr(AT_RECURSIVE) to the whole
#: mounted tree: option -> (clear?, attribute).
RECURSIVE: dict[str, tuple[bool, int]] = {
    "rro": (False, s.MOUNT_ATTR_RDONLY),
    "rrw": (True, s.MOUNT_ATTR_RDONLY),
    "rnosuid": (False, s.MOUNT_ATTR_NOSUID),
    "rsuid": (True, s.MOUNT_ATTR_NOSUID),
    "rnodev": (False, s.MOUNT_ATTR_NODEV),
    "rdev": (True, s.MOUNT_ATTR_NODEV),
    "rnoexec": (False, s.MOUNT_ATTR_NOEXEC),
    "rexec": (True, s.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, s.MOUNT_ATTR_NODIRATIME),
    "rdiratime": (True, s.MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (False, s.MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (True, s.MOUNT_ATTR_NOSYMFOLLOW),
}

#: The recursive access-time options. The kernel keeps one atime mode per mount
#: (an enum, not flags), so each option picks a mode; the negative ones pick
#: what mount(8) documents: ``atime`` and ``nostrictatime`` mean the kernel's
#: default (relatime), ``norelatime`` means updating on every access.
RECURSIVE_ATIME: dict[str, int] = {
    "rrelatime": s.MOUNT_ATTR_RELATIME,
    "rnoatime": s.MOUNT_ATTR_NOATIME,
    "rstrictatime": s.MOUNT_ATTR_STRICTATIME,
    "ratime": s.MOUNT_ATTR_RELATIME,
    "rnostrictatime": s.MOUNT_ATTR_RELATIME,
    "rnorelatime": s.MOUNT_ATTR_STRICTATIME,
}

#: ID-mapped mounts: recognised, so they are refused by name rather than
#: handed to the filesystem as data.
IDMAP = frozenset({"idmap", "ridmap"})

#: Options ocirt accepts and ignores, as runc does.
IGNORED = frozenset({"tmpcopyup"})


class MountOptions:
    """A parsed ``options`` list (``fstype`` "bind" alone makes a bind, as crun does)."""

    def __init__(self, options: list[str], fstype: str | None = None) -> None:
        self.flags = 0
        #: Flags an option explicitly cleared (``rw``, ``suid``...).
        self.cleared = 0
        self.propagation: list[int] = []
        #: mount_setattr attributes to set and clear on the whole tree.
        self.attr_set = 0
        self.attr_clr = 0
        #: The idmap options given (refused at validation).
        self.idmap: list[str] = []
        data: list[str] = []
        for option in options:
            if option in FLAGS:
                clear, flag = FLAGS[option]
                self.flags = self.flags & ~flag if clear else self.flags | flag
                self.cleared = self.cleared | flag if clear else self.cleared & ~flag
            elif option in PROPAGATION:
                self.propagation.append(PROPAGATION[option])
            elif option in RECURSIVE:
                clear, attr = RECURSIVE[option]
                self._set_attr(attr, clear)
            elif option in RECURSIVE_ATIME:
                self.attr_set = (self.attr_set & ~s.MOUNT_ATTR__ATIME) | RECURSIVE_ATIME[option]
                self.attr_clr |= s.MOUNT_ATTR__ATIME
            elif option in IDMAP:
                self.idmap.append(option)
            elif option not in IGNORED:
                data.append(option)
        self.data = ",".join(data)
        if fstype == "bind":
            self.flags |= s.MS_BIND

    def _set_attr(self, attr: int, clear: bool) -> None:
        """Later options win, as for the flags: an attribute is either set or cleared."""
        if clear:
            self.attr_set &= ~attr
            self.attr_clr |= attr
        else:
            self.attr_clr &= ~attr
            self.attr_set |= attr

    @property
    def recursive(self) -> bool:
        """True when the options ask for mount_setattr on the whole tree."""
        return bool(self.attr_set or self.attr_clr)

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & s.MS_BIND)


def all_options() -> list[str]:
    """Every option name understood (for ``ocirt features``)."""
    return sorted([*FLAGS, *PROPAGATION, *RECURSIVE, *RECURSIVE_ATIME, *IGNORED])
