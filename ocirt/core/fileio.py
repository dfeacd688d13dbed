"""Whole-file reads and writes on plain fds, for the small files of every container start.

Python's ``open()`` wraps the fd in three objects and asks whether it is a
terminal (``ioctl``), where it stands (``lseek``, twice) and how big it is
(``fstat``): about 20 µs around each read or write on this project's test
machine. A container start reads and writes dozens of small files (cgroupfs,
/proc, state.json), so the hot paths use these instead.
"""

from __future__ import annotations

import os


def read_bytes(path: str) -> bytes:
    """The whole file (procfs files may come in several reads)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def write_bytes(path: str, data: bytes, create: int | None = None) -> None:
    """Write ``data`` with one ``write`` (cgroupfs takes each write as one value).

    Without ``create`` the file must exist (a kernel file); with it, the file is
    created with that mode or truncated.
    """
    flags = os.O_WRONLY | os.O_CLOEXEC
    if create is not None:
        flags |= os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o666 if create is None else create)
    try:
        written = os.write(fd, data)
        while written < len(data):  # a regular file may take it in parts
            written += os.write(fd, data[written:])
    finally:
        os.close(fd)


def holds_other_than(path: str, content: str) -> bool:
    """Whether the file holds anything but ``content`` (stripped); False when it
    cannot be read: a status file (a cgroup's freezer) gone with its cgroup has no say."""
    try:
        return read_bytes(path).decode().strip() != content
    except OSError:
        return False
