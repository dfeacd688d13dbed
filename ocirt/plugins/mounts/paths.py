"""Resolve a container path to a host path without leaving the rootfs.

A rootfs is untrusted: ``/proc`` may be a symlink to ``/`` on the host. Every
component is resolved as if ``root`` were ``/``: absolute symlinks restart at
``root``, ``..`` never climbs above it.
"""

from __future__ import annotations

import os
import stat

MAX_LINKS = 255


def secure_join(root: str, unsafe: str) -> str:
    """The host path of container path ``unsafe``, all symlinks resolved inside ``root``.

    Components that do not exist yet are kept literally, so the result can be
    created with makedirs.
    """
    root = os.path.abspath(root)
    pending = [p for p in unsafe.split("/") if p]
    pending.reverse()
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        host = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            resolved.append(part)
            continue
        links += 1
        if links > MAX_LINKS:
            raise OSError(40, "too many levels of symbolic links", unsafe)
        target = os.readlink(host)
        if target.startswith("/"):
            resolved = []
        pending.extend(reversed([p for p in target.split("/") if p]))
    return os.path.join(root, *resolved)
