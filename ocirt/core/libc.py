"""The process's libc through ctypes' C core (``_ctypes``), without the ``ctypes`` package.

``import ctypes`` costs about 1.9 ms here, as much as the mounts of a container:
some forty classes, and the ``struct``, ``types`` and ``_endian`` imports. The
syscall layer (``ocirt.core.syscalls``) needs a handful of integer types,
``Structure``, ``byref``, ``sizeof``, ``get_errno`` and calls into libc. As with
``_signal`` and ``_json`` elsewhere in ocirt, the hot path takes them from the
C module the stdlib package is built on: ``ctypes.Structure`` *is*
``_ctypes.Structure``, and the integer types below are declared as
``ctypes/__init__.py`` declares its own. Code that needs more of ctypes
(arrays of bytes, callbacks, other libraries) imports ``ctypes`` itself.
"""

from __future__ import annotations

import _ctypes
from _ctypes import Structure, byref, get_errno, sizeof

__all__ = [
    "Structure",
    "byref",
    "c_int",
    "c_int32",
    "c_size_t",
    "c_uint",
    "c_uint32",
    "c_uint64",
    "c_ulong",
    "get_errno",
    "libc",
    "sizeof",
]


# ctypes' own names, for code that reads as if it used ctypes.
class c_int(_ctypes._SimpleCData):
    _type_ = "i"


class c_uint(_ctypes._SimpleCData):
    _type_ = "I"


class c_ulong(_ctypes._SimpleCData):
    _type_ = "L"


# Linux's ABIs on 64-bit machines (x86_64, aarch64): int is 32 bits, long 64.
c_int32, c_uint32 = c_int, c_uint
c_uint64 = c_size_t = c_ulong


class _Function(_ctypes.CFuncPtr):
    """A libc function returning int, errno kept for ``get_errno`` (``use_errno``)."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _Library:
    """``ctypes.CDLL(None, use_errno=True)``: the symbols already in the process."""

    def __init__(self) -> None:
        self._handle = _ctypes.dlopen(None, 0)  # type: ignore[arg-type]  # NULL: the process

    def __getattr__(self, name: str) -> _Function:
        function = _Function((name, self))  # type: ignore[arg-type]  # any object with _handle
        setattr(self, name, function)
        return function


libc = _Library()
