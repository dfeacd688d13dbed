"""Writing a /proc control file (uid_map, timens_offsets, a sysctl) in one write."""

from __future__ import annotations

import os

from ocirt.core.errors import OcirtError


def write_proc(path: str, text: str, what: str) -> None:
    """Write ``text`` to ``path`` with a single write(2), as these files require.

    ``what`` starts the error message (``linux.sysctl: setting x to '1'``).
    Symlinks are not followed: under /proc/sys none is expected.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as e:
        reason = (e.strerror or str(e)).lower()
        raise OcirtError(f"{what}: {path}: {reason}") from None
