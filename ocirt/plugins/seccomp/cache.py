"""Compiled seccomp programs kept between containers, so a known profile skips libseccomp.

Engines send the same profile with every container (podman's and docker's
defaults are several hundred rules). Importing pyseccomp, adding the rules and
letting libseccomp generate the BPF program at load time costs about 50 ms per
container here, for a program that is the same every time. So the first
container with a profile compiles it through libseccomp (``libseccomp.build``),
and its program, exported with ``seccomp_export_bpf``, is kept in
``<prefix>/.ocirt-seccomp/`` with the ``seccomp(2)`` flags libseccomp would
pass and the warnings the build gave. Later containers with the same profile
load that program with one ``seccomp(2)`` call and never import pyseccomp.

An entry is keyed on the profile's JSON, the kernel release and the machine,
and records which libseccomp made it (path, inode, size, mtime): a different
kernel or an upgraded libseccomp, which may know more syscall names, compiles
again. Profiles with SCMP_ACT_NOTIFY are never kept: their listener fd comes
from libseccomp's own load. Entries are written as the runtime's user into the
install's prefix, as hook plans are (``ocirt.core.hookplan``); where that is
not writable, nothing is kept and every container compiles.
"""

from __future__ import annotations

import _sha256
import ctypes
import os
import sys

from ocirt.core import fileio, jsonio
from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CACHE_DIR = os.path.join(sys.prefix, ".ocirt-seccomp")

#: seccomp(2) (linux/seccomp.h): operation and filter flags.
SECCOMP_SET_MODE_FILTER = 1
FLAG_BITS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
}
_NR_SECCOMP = {"x86_64": 317, "aarch64": 277}.get(os.uname().machine, 317)

#: One BPF instruction (struct sock_filter) is 8 bytes.
INSN_SIZE = 8

_libc = ctypes.CDLL(None, use_errno=True)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Program:
    """A compiled filter ready for ``seccomp(2)``: made in the runtime, loaded in the init."""

    def __init__(self, bpf: bytes, flags: int, unknown: list[str]) -> None:
        if not bpf or len(bpf) % INSN_SIZE:
            raise ValueError("not a BPF program")
        self.flags = flags
        self.unknown = unknown
        # Built now: after pivot_root the init cannot load anything, not even a ctypes type.
        self._buffer = ctypes.create_string_buffer(bpf, len(bpf))
        self._fprog = _SockFprog(len(bpf) // INSN_SIZE, ctypes.addressof(self._buffer))

    def load(self, no_new_privs: bool) -> None:
        """seccomp(SECCOMP_SET_MODE_FILTER): from here on the process is filtered."""
        ret = _libc.syscall(_NR_SECCOMP, SECCOMP_SET_MODE_FILTER, self.flags, ctypes.byref(self._fprog))
        if ret == 0:
            return
        err = ctypes.get_errno()
        if err == 13 and not no_new_privs:  # EACCES
            raise OcirtError(
                "loading the seccomp filter: permission denied: without process.noNewPrivileges "
                "it needs CAP_SYS_ADMIN, which the container process no longer holds"
            )
        raise OcirtError(f"loading the seccomp filter: {os.strerror(err).lower()}")


def key(section: dict[str, Any]) -> str:
    uname = os.uname()
    text = jsonio.dumps([section, uname.release, uname.machine])
    return _sha256.sha256(text.encode()).hexdigest()


def lookup(section: dict[str, Any]) -> Program | None:
    """The kept program for this profile, if one was made by the libseccomp installed now."""
    try:
        entry = jsonio.loads(fileio.read_bytes(os.path.join(CACHE_DIR, key(section) + ".json")))
        if entry["library"] != _identity(entry["library"][0]):
            return None
        return Program(bytes.fromhex(entry["bpf"]), int(entry["flags"]), list(entry["unknown"]))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def store(section: dict[str, Any], bpf: bytes, flags: int, unknown: list[str]) -> None:
    """Keep a program libseccomp just built (in this process) for later containers."""
    library = _loaded_libseccomp()
    if library is None:
        return
    entry = {"library": _identity(library), "flags": flags, "unknown": unknown, "bpf": bpf.hex()}
    path = os.path.join(CACHE_DIR, key(section) + ".json")
    try:
        os.makedirs(CACHE_DIR, mode=0o755, exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(jsonio.dumps(entry))
        os.rename(tmp, path)
    except OSError:
        pass  # read-only install: compile every time


def _identity(path: str) -> list[Any]:
    st = os.stat(path)
    return [path, st.st_ino, st.st_size, st.st_mtime_ns]


def _loaded_libseccomp() -> str | None:
    """The file of the libseccomp this process has mapped (pyseccomp loads it by soname)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if "/libseccomp.so" in path:
                    return path
    except OSError:
        pass
    return None
