"""The cgroup v2 device controller: an eBPF program assembled here, loaded with bpf(2).

cgroup v2 has no ``devices.allow``; access to device nodes is decided by a
``BPF_PROG_TYPE_CGROUP_DEVICE`` program attached to the cgroup. The program is
built the way runc's ``devicefilter`` builds it, so both runtimes behave alike:

* the OCI rules are first reduced as cgroup v1 would hold them: a rule of type
  ``a`` (all devices) resets the list and sets the default (allow or deny);
  other rules are kept in order;
* the program tests the kept rules **last first**, so the last matching rule
  wins, and falls through to the default (deny unless an ``a`` rule allowed).

Instructions are emitted as bytes (``struct bpf_insn``) by Python: no compiler
and no library at run time. The license string is runc's ("Apache"): a device
program calls no GPL-only helper.
"""

from __future__ import annotations

import ctypes
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# bpf(2) commands and types (linux/bpf.h).
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

# struct bpf_cgroup_dev_ctx: access_type = (access << 16) | type.
DEV_BLOCK = 1
DEV_CHAR = 2
ACC_MKNOD = 1
ACC_READ = 2
ACC_WRITE = 4
ACC_ALL = ACC_MKNOD | ACC_READ | ACC_WRITE
_ACCESS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}
_TYPES = {"c": DEV_CHAR, "b": DEV_BLOCK}

# Opcodes used (class | op | source).
_LDX_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
_AND32_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RSH32_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K
_MOV32_K = 0xB4  # BPF_ALU | BPF_MOV | BPF_K
_MOV32_X = 0xBC  # BPF_ALU | BPF_MOV | BPF_X
_JNE_K = 0x55  # BPF_JMP | BPF_JNE | BPF_K
_JNE_X = 0x5D  # BPF_JMP | BPF_JNE | BPF_X
_EXIT = 0x95  # BPF_JMP | BPF_EXIT

LICENSE = b"Apache\0"
_SYS_BPF = {"x86_64": 321, "aarch64": 280}


class DeviceRuleError(ValueError):
    """A ``linux.resources.devices`` rule that cannot be expressed."""


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def clean_rules(rules: list[dict[str, Any]]) -> tuple[bool, list[tuple[int, int, int, int, bool]]]:
    """Reduce OCI rules to (default allow, [(type, major, minor, access, allow)...]).

    A major or minor of -1 is a wildcard. Type ``a`` (or no type) resets the
    list, as writing ``a`` to cgroup v1's devices.allow/deny does.
    """
    default_allow = False
    kept: list[tuple[int, int, int, int, bool]] = []
    for i, rule in enumerate(rules):
        where = f"linux.resources.devices[{i}]"
        allow = rule.get("allow")
        if not isinstance(allow, bool):
            raise DeviceRuleError(f"{where}.allow: must be a boolean")
        kind = rule.get("type") or "a"
        access = 0
        for ch in rule.get("access") or "rwm":
            if ch not in _ACCESS:
                raise DeviceRuleError(f"{where}.access: unknown access {ch!r}")
            access |= _ACCESS[ch]
        major, minor = (rule.get(k) for k in ("major", "minor"))
        for key, value in (("major", major), ("minor", minor)):
            if value is not None and (not isinstance(value, int) or not -1 <= value <= 0xFFFFFFFF):
                raise DeviceRuleError(f"{where}.{key}: must be a device number")
        if kind == "a":
            default_allow, kept = allow, []
            continue
        if kind not in _TYPES:
            raise DeviceRuleError(f"{where}.type: must be a, b or c, not {kind!r}")
        major = -1 if major is None else major
        minor = -1 if minor is None else minor
        kept.append((_TYPES[kind], major, minor, access, allow))
    return default_allow, kept


def assemble(rules: list[dict[str, Any]]) -> bytes:
    """The program for ``rules``: R0 = 1 to allow, 0 to deny."""
    default_allow, kept = clean_rules(rules)
    # R2 = type, R3 = access, R4 = major, R5 = minor (R1 -> bpf_cgroup_dev_ctx).
    prologue = [
        _insn(_LDX_W, 2, 1, 0),
        _insn(_AND32_K, 2, imm=0xFFFF),
        _insn(_LDX_W, 3, 1, 0),
        _insn(_RSH32_K, 3, imm=16),
        _insn(_LDX_W, 4, 1, 4),
        _insn(_LDX_W, 5, 1, 8),
    ]
    blocks: list[bytes] = []
    for kind, major, minor, access, allow in reversed(kept):
        # Each test jumps past the block's end (to the next block) on mismatch;
        # the offset counts from the instruction after the jump.
        tests: list[tuple[int, int, int, int]] = [(_JNE_K, 2, 0, kind)]
        moves: list[bytes] = []
        if access != ACC_ALL:
            # Every requested access bit must be in the rule: (R3 & access) == R3.
            tests.append((_JNE_X, 1, 3, 0))
            moves = [_insn(_MOV32_X, 1, 3), _insn(_AND32_K, 1, imm=access)]
        if major >= 0:
            tests.append((_JNE_K, 4, 0, _s32(major)))
        if minor >= 0:
            tests.append((_JNE_K, 5, 0, _s32(minor)))
        accept = [_insn(_MOV32_K, 0, imm=int(allow)), _insn(_EXIT)]
        body: list[bytes] = []
        size = len(tests) + len(moves) + len(accept)
        for code, dst, src, imm in tests:
            if code == _JNE_X:
                body += moves
            body.append(_insn(code, dst, src, off=size - len(body) - 1, imm=imm))
        blocks.append(b"".join(body + accept))
    epilogue = [_insn(_MOV32_K, 0, imm=int(default_allow)), _insn(_EXIT)]
    return b"".join(prologue) + b"".join(blocks) + b"".join(epilogue)


def _s32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


# -- the system calls ---------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    nr = _SYS_BPF.get(os.uname().machine, 321)
    result = _libc.syscall(nr, ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({what}): {os.strerror(err)}")
    return int(result)


def _attr(*fields: tuple[int, str, int]) -> ctypes.Array[ctypes.c_char]:
    """A zeroed union bpf_attr (128 bytes) with (offset, struct format, value) set."""
    buf = ctypes.create_string_buffer(128)
    for offset, fmt, value in fields:
        struct.pack_into(fmt, buf, offset, value)
    return buf


def load(program: bytes) -> int:
    """BPF_PROG_LOAD; returns the program's fd (close-on-exec), with the verifier log on failure."""
    insns = ctypes.create_string_buffer(program, len(program))
    log = ctypes.create_string_buffer(65536)
    license_ = ctypes.create_string_buffer(LICENSE)
    attr = _attr(
        (0, "<I", BPF_PROG_TYPE_CGROUP_DEVICE),
        (4, "<I", len(program) // 8),
        (8, "<Q", ctypes.addressof(insns)),
        (16, "<Q", ctypes.addressof(license_)),
        (24, "<I", 1),
        (28, "<I", len(log)),
        (32, "<Q", ctypes.addressof(log)),
    )
    try:
        return _bpf(BPF_PROG_LOAD, attr, "BPF_PROG_LOAD")
    except OSError as e:
        detail = log.value.decode(errors="replace").strip()
        raise OSError(e.errno, f"{e.strerror}{': ' + detail if detail else ''}") from None


def attach(cgroup_fd: int, prog_fd: int) -> None:
    attr = _attr(
        (0, "<I", cgroup_fd), (4, "<I", prog_fd), (8, "<I", BPF_CGROUP_DEVICE), (12, "<I", BPF_F_ALLOW_MULTI)
    )
    _bpf(BPF_PROG_ATTACH, attr, "BPF_PROG_ATTACH")


def query(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached to this cgroup itself."""
    ids = (ctypes.c_uint32 * 64)()
    attr = _attr(
        (0, "<I", cgroup_fd), (4, "<I", BPF_CGROUP_DEVICE), (16, "<Q", ctypes.addressof(ids)), (24, "<I", 64)
    )
    _bpf(BPF_PROG_QUERY, attr, "BPF_PROG_QUERY")
    count = struct.unpack_from("<I", attr, 24)[0]
    return list(ids[: min(count, 64)])


def detach(cgroup_fd: int, prog_id: int) -> None:
    fd = _bpf(BPF_PROG_GET_FD_BY_ID, _attr((0, "<I", prog_id)), "BPF_PROG_GET_FD_BY_ID")
    try:
        attr = _attr((0, "<I", cgroup_fd), (4, "<I", fd), (8, "<I", BPF_CGROUP_DEVICE))
        _bpf(BPF_PROG_DETACH, attr, "BPF_PROG_DETACH")
    finally:
        os.close(fd)


def apply(cgroup_dir: str, rules: list[dict[str, Any]]) -> list[int]:
    """Attach the program for ``rules`` to ``cgroup_dir``, then detach the ones before it.

    The new program is attached before the old ones go (BPF_F_ALLOW_MULTI: all
    must allow), so no moment is left with no filter. Returns the ids now attached.
    """
    program = assemble(rules)
    dirfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        before = query(dirfd)
        prog_fd = load(program)
        try:
            attach(dirfd, prog_fd)
        finally:
            os.close(prog_fd)
        for prog_id in before:
            detach(dirfd, prog_id)
        return query(dirfd)
    finally:
        os.close(dirfd)
