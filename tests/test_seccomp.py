"""The seccomp plugin: ``linux.seccomp`` filters in real containers, as runc applies them."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import socket
import struct
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import Bundle, Ocirt, unique_id, wait_for
from test_engine_configs import engine_config

from ocirt.plugins.seccomp.plugin import load_point

SIGSYS_EXIT = 128 + 31
MKDIR = ["mkdir", "mkdirat"]


def seccomp(bundle: Bundle, profile: dict[str, Any], args: list[str], **process: Any) -> Bundle:
    bundle.config["linux"]["seccomp"] = profile
    bundle.config["root"]["readonly"] = False  # so that what the filter lets through shows
    bundle.config["process"].update(process)
    return bundle.write(args=args)


def run(ocirt: Ocirt, bundle: Bundle) -> Any:
    return ocirt("run", "--bundle", str(bundle.path), unique_id("sc"))


def deny(names: list[str], action: str = "SCMP_ACT_ERRNO", **rule: Any) -> dict[str, Any]:
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": names, "action": action, **rule}]}


# ------------------------------------------------------------------ actions


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({}, "Operation not permitted"),  # errnoRet defaults to EPERM
        ({"errnoRet": errno.ENOSPC}, "No space left on device"),
        ({"action": "SCMP_ACT_TRACE"}, "Function not implemented"),  # no tracer: ENOSYS
    ],
)
def test_denied_syscall_returns_the_errno(
    ocirt: Ocirt, bundle: Bundle, rule: dict[str, Any], message: str
) -> None:
    script = "mkdir /tmp/x; grep Seccomp /proc/self/status"
    result = run(ocirt, seccomp(bundle, deny(MKDIR, **rule), ["sh", "-c", script]))
    assert result.returncode == 0, result.stderr
    assert f"can't create directory '/tmp/x': {message}" in result.stderr
    assert "Seccomp:\t2\nSeccomp_filters:\t1\n" in result.stdout
    assert not (bundle.rootfs / "tmp" / "x").exists()


def test_errno_default_with_an_allow_list(ocirt: Ocirt, bundle: Bundle) -> None:
    """Docker's allow-list without mkdir, and podman's ENOSYS default."""
    docker = json.loads((Path(__file__).parent / "data" / "docker-config.json").read_text())
    profile = docker["linux"]["seccomp"]
    for entry in profile["syscalls"]:
        if entry["action"] == "SCMP_ACT_ALLOW":
            entry["names"] = [n for n in entry["names"] if n not in MKDIR]
    profile["defaultErrnoRet"] = errno.ENOSYS
    result = run(ocirt, seccomp(bundle, profile, ["sh", "-c", "mkdir /tmp/x; echo listed && ls /"]))
    assert result.returncode == 0, result.stderr
    assert "can't create directory '/tmp/x': Function not implemented" in result.stderr
    assert "listed\n" in result.stdout and "bin" in result.stdout


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS"])
def test_kill_actions_end_the_process_with_sigsys(ocirt: Ocirt, bundle: Bundle, action: str) -> None:
    result = run(ocirt, seccomp(bundle, deny(MKDIR, action), ["mkdir", "/tmp/x"]))
    assert result.returncode == SIGSYS_EXIT, result.stderr


def test_trap_raises_sigsys_a_handler_can_catch(ocirt: Ocirt, bundle: Bundle) -> None:
    bundle = seccomp(
        bundle, deny(["kill"], "SCMP_ACT_TRAP"), ["sh", "-c", "trap 'echo caught SIGSYS' SYS; kill -0 $$"]
    )
    result = run(ocirt, bundle)
    assert "caught SIGSYS" in result.stdout, result.stderr
    bundle.write(args=["kill", "-0", "1"])  # uncaught: the signal's default action ends it
    assert run(ocirt, bundle).returncode == SIGSYS_EXIT


def test_log_allows_the_syscall(ocirt: Ocirt, bundle: Bundle) -> None:
    result = run(ocirt, seccomp(bundle, deny(MKDIR, "SCMP_ACT_LOG"), ["mkdir", "/tmp/x"]))
    assert result.returncode == 0, result.stderr
    assert (bundle.rootfs / "tmp" / "x").is_dir()


# ---------------------------------------------------------------- arguments

#: kill(2)'s signal argument (index 1): 0 probes, 17 (SIGCHLD) and 28 (SIGWINCH) are ignored.
SIGNALS = (0, 17, 28)


@pytest.mark.parametrize(
    ("args", "denied"),
    [
        ([{"index": 1, "op": "SCMP_CMP_EQ", "value": 17}], {17}),
        ([{"index": 1, "op": "SCMP_CMP_NE", "value": 0}], {17, 28}),
        ([{"index": 1, "op": "SCMP_CMP_LT", "value": 17}], {0}),
        ([{"index": 1, "op": "SCMP_CMP_LE", "value": 17}], {0, 17}),
        ([{"index": 1, "op": "SCMP_CMP_GE", "value": 17}], {17, 28}),
        ([{"index": 1, "op": "SCMP_CMP_GT", "value": 17}], {28}),
        ([{"index": 1, "op": "SCMP_CMP_MASKED_EQ", "value": 0x10, "valueTwo": 0x10}], {17, 28}),
        # Two conditions on one index: one rule each, as runc does (either denies).
        (
            [{"index": 1, "op": "SCMP_CMP_EQ", "value": 0}, {"index": 1, "op": "SCMP_CMP_EQ", "value": 28}],
            {0, 28},
        ),
        # Conditions on different indexes: one rule, all must hold (the shell is pid 1).
        (
            [{"index": 0, "op": "SCMP_CMP_EQ", "value": 1}, {"index": 1, "op": "SCMP_CMP_EQ", "value": 17}],
            {17},
        ),
        (
            [{"index": 0, "op": "SCMP_CMP_EQ", "value": 2}, {"index": 1, "op": "SCMP_CMP_EQ", "value": 17}],
            set(),
        ),
    ],
)
def test_argument_operators(
    ocirt: Ocirt, bundle: Bundle, args: list[dict[str, Any]], denied: set[int]
) -> None:
    script = "; ".join(f"kill -{n} $$ 2>/dev/null && echo {n}:ok || echo {n}:denied" for n in SIGNALS)
    result = run(ocirt, seccomp(bundle, deny(["kill"], args=args), ["sh", "-c", script]))
    assert result.returncode == 0, result.stderr
    seen = dict(line.split(":") for line in result.stdout.split())
    assert {int(n) for n, verdict in seen.items() if verdict == "denied"} == denied


def test_personality_blocked_for_one_argument(ocirt: Ocirt, bundle: Bundle) -> None:
    rule = {"args": [{"index": 0, "op": "SCMP_CMP_EQ", "value": 0x8}]}  # PER_LINUX32
    script = "linux64 uname -m; linux32 uname -m"
    result = run(ocirt, seccomp(bundle, deny(["personality"], **rule), ["sh", "-c", script]))
    assert result.stdout.split() == [os.uname().machine], result.stderr
    assert "Operation not permitted" in result.stderr


# ------------------------------------------------------- architectures, flags


def test_architectures_and_flags(ocirt: Ocirt, bundle: Bundle) -> None:
    profile = deny(MKDIR)
    profile["architectures"] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    profile["flags"] = [
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    ]
    result = run(ocirt, seccomp(bundle, profile, ["mkdir", "/tmp/x"]))
    assert "Operation not permitted" in result.stderr
    assert result.returncode == 1


def test_unknown_syscall_names_warn_once(ocirt: Ocirt, bundle: Bundle) -> None:
    profile = deny(["nosuchcall", *MKDIR])
    profile["syscalls"].append({"names": ["nosuchcall", "getcwd"], "action": "SCMP_ACT_ERRNO"})
    result = run(ocirt, seccomp(bundle, profile, ["mkdir", "/tmp/x"]))
    assert "Operation not permitted" in result.stderr  # the known names still apply
    warnings = [line["msg"] for line in ocirt.log_lines() if line["level"] == "warning"]
    assert [w for w in warnings if "nosuchcall" in w] == [
        "linux.seccomp: unknown syscall 'nosuchcall' ignored (in linux.seccomp.syscalls[0].names)"
    ]


def test_features(ocirt: Ocirt) -> None:
    features = json.loads(ocirt("features", check=True).stdout)["linux"]["seccomp"]
    assert features["enabled"] is True
    assert len(features["actions"]) == 9 and "SCMP_ACT_NOTIFY" in features["actions"]
    assert features["operators"] == sorted(features["operators"]) and len(features["operators"]) == 7
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"} <= set(features["archs"])
    assert features["knownFlags"] == [
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    ]
    assert {"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"} <= set(features["supportedFlags"])
    assert set(features["supportedFlags"]) <= set(features["knownFlags"])


# ----------------------------------------------------------------- refusals


def _refusal_cases() -> list[tuple[dict[str, Any], str]]:
    def rule(**changes: Any) -> dict[str, Any]:
        profile = deny(MKDIR)
        profile["syscalls"][0].update(changes)
        return profile

    return [
        ({"defaultAction": "SCMP_ACT_FOO"}, "linux.seccomp.defaultAction: unknown action 'SCMP_ACT_FOO'"),
        ({"syscalls": [{"names": ["mkdir"]}]}, "linux.seccomp.defaultAction: missing"),
        (rule(action="SCMP_ACT_BAR"), "linux.seccomp.syscalls[0].action: unknown action 'SCMP_ACT_BAR'"),
        (rule(names=[]), "linux.seccomp.syscalls[0].names: must be a non-empty list"),
        (
            rule(action="SCMP_ACT_ALLOW", errnoRet=1),
            "linux.seccomp.syscalls[0].errnoRet: SCMP_ACT_ALLOW takes no errno",
        ),
        (
            rule(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]),
            "linux.seccomp.syscalls[0].args[0].op: unknown operator 'SCMP_CMP_ABOUT'",
        ),
        (
            rule(args=[{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]),
            "linux.seccomp.syscalls[0].args[0].index: must be a syscall argument index from 0 to 5",
        ),
        (
            rule(args=[{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]),
            "linux.seccomp.syscalls[0].args[0].value: must be an unsigned 64-bit integer",
        ),
        (
            {**deny(MKDIR), "architectures": ["SCMP_ARCH_VAX"]},
            "linux.seccomp.architectures[0]: unknown value",
        ),
        (
            {**deny(MKDIR), "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_S390X"]},
            "linux.seccomp.architectures[1]: SCMP_ARCH_S390X cannot share a filter with this host's "
            "byte order",
        ),
        ({**deny(MKDIR), "flags": ["SECCOMP_FILTER_FLAG_FAST"]}, "linux.seccomp.flags[0]: unknown value"),
        (
            {**deny(MKDIR), "defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": 1},
            "linux.seccomp.defaultErrnoRet: SCMP_ACT_KILL takes no errno",
        ),
        ({**deny(MKDIR), "listenerMetadata": "x"}, "linux.seccomp.listenerMetadata: must not be set without"),
        (deny(MKDIR, "SCMP_ACT_NOTIFY"), "linux.seccomp.listenerPath: required: SCMP_ACT_NOTIFY is used"),
        (
            {**deny(["write"], "SCMP_ACT_NOTIFY"), "listenerPath": "/x"},
            "linux.seccomp.syscalls[0].names: SCMP_ACT_NOTIFY cannot be used for 'write'",
        ),
        (
            {"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"},
            "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action",
        ),
    ]


@pytest.mark.parametrize(("profile", "message"), _refusal_cases())
def test_refused_at_validation(
    ocirt: Ocirt, bundle: Bundle, cid: str, profile: dict[str, Any], message: str
) -> None:
    seccomp(bundle, profile, ["true"])
    result = ocirt.detached("create", "--bundle", str(bundle.path), cid)
    assert result.returncode == 1
    assert f"config.json: {message}" in result.stderr
    assert ocirt.ids() == []


def test_unsupported_flag_refused(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    features = json.loads(ocirt("features", check=True).stdout)["linux"]["seccomp"]
    missing = [f for f in features["knownFlags"] if f not in features["supportedFlags"]]
    if not missing:
        pytest.skip("this libseccomp supports every known flag")
    seccomp(bundle, {**deny(MKDIR), "flags": missing[:1]}, ["true"])
    result = ocirt.detached("create", "--bundle", str(bundle.path), cid)
    assert f"linux.seccomp.flags[0]: {missing[0]} is not supported by this libseccomp" in result.stderr
    assert ocirt.ids() == []


def test_empty_profile_means_no_filter(ocirt: Ocirt, bundle: Bundle) -> None:
    result = run(ocirt, seccomp(bundle, {}, ["grep", "^Seccomp:", "/proc/self/status"]))
    assert result.stdout == "Seccomp:\t0\n", result.stderr


# ------------------------------------------------------------ load point


#: Syscalls the runtime's init makes between finalize_process and the exec: the
#: handshake, the exec fifo (opened through /proc), closing fds, finding the program.
RUNTIME_SYSCALLS = [
    "getcwd", "openat", "open", "sendmsg", "recvmsg", "getdents64", "fcntl", "newfstatat",
    "faccessat", "faccessat2", "pipe2", "close", "read", "lseek", "mmap", "munmap", "ioctl",
]  # fmt: skip


@pytest.mark.parametrize("no_new_privs", [True, False])
def test_filter_loads_after_the_runtimes_own_syscalls(
    ocirt: Ocirt, bundle: Bundle, no_new_privs: bool
) -> None:
    """Loaded just before execve: a profile denying what the runtime uses still starts."""
    caps = bundle.config["process"]["capabilities"]
    if not no_new_privs:  # then loading needs CAP_SYS_ADMIN, kept until the exec
        for name in ("bounding", "effective", "permitted"):
            caps[name] = [*caps[name], "CAP_SYS_ADMIN"]
    bundle = seccomp(bundle, deny(RUNTIME_SYSCALLS), ["echo", "started"], noNewPrivileges=no_new_privs)
    assert load_point(bundle.config["process"], notify=False) == "exec"
    result = ocirt.detached("run", "--bundle", str(bundle.path), unique_id("sc"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "started\n"


@pytest.mark.parametrize("uid", [0, 1000])
def test_without_no_new_privs_loaded_before_capabilities_go(ocirt: Ocirt, bundle: Bundle, uid: int) -> None:
    """noNewPrivileges false and no CAP_SYS_ADMIN at the exec: loaded while privileged."""
    process = {"noNewPrivileges": False, "user": {"uid": uid, "gid": uid}}
    script = "mkdir /tmp/x; grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status"
    bundle = seccomp(bundle, deny(MKDIR), ["sh", "-c", script], **process)
    assert load_point(bundle.config["process"], notify=False) == "early"
    result = run(ocirt, bundle)
    assert result.returncode == 0, result.stderr
    assert "Operation not permitted" in result.stderr
    status = dict(line.split(":\t") for line in result.stdout.splitlines())
    assert (status["Seccomp"], status["NoNewPrivs"]) == ("2", "0")
    assert not int(status["CapEff"], 16) & (1 << 21)  # CAP_SYS_ADMIN is gone by the exec


def test_load_points() -> None:
    admin = {"effective": ["CAP_SYS_ADMIN"]}
    assert load_point({"noNewPrivileges": True}, notify=False) == "exec"
    assert load_point({"noNewPrivileges": True}, notify=True) == "create"
    assert load_point({"capabilities": admin}, notify=False) == "exec"
    assert load_point({"capabilities": admin}, notify=True) == "create"
    assert load_point({"capabilities": admin, "user": {"uid": 1}}, notify=False) == "early"
    assert load_point({"capabilities": {"effective": ["CAP_CHOWN"]}}, notify=True) == "early"
    assert load_point({}, notify=False) == "early"  # no capabilities object: none at all


# ------------------------------------------------------------ engine profiles


@pytest.mark.parametrize("shape", ["docker", "podman", "containerd"])
def test_engine_default_profiles_run_a_working_shell(ocirt: Ocirt, bundle: Bundle, shape: str) -> None:
    config = engine_config(shape, bundle.path)
    assert config["linux"]["seccomp"]["syscalls"]
    script = "mkdir /tmp/d && echo made; ls /bin/sh; echo hi | wc -c; grep '^Seccomp:' /proc/self/status"
    config["process"].update(args=["sh", "-c", script], terminal=False)
    bundle.config = config
    result = run(ocirt, bundle.write())
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["made", "/bin/sh", "3", "Seccomp:", "2"]


# ------------------------------------------------------------------- notify

SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif), 80 bytes
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp), 24 bytes


class Agent(threading.Thread):
    """A seccomp agent: takes the notify fd at ``path``, answers every syscall with ``error``."""

    def __init__(self, path: Path, error: int) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.error = error
        self.state: dict[str, Any] = {}
        self.fds: list[int] = []
        self.syscalls: list[int] = []
        self.stopping = threading.Event()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.server.settimeout(0.1)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
                break
            except TimeoutError:
                continue
        else:
            return
        with conn:
            message, self.fds, _, _ = socket.recv_fds(conn, 65536, 4)
            self.state = json.loads(message)
        poller = select.poll()
        poller.register(self.fds[0], select.POLLIN)
        while not self.stopping.is_set():
            events = poller.poll(100)
            if not events or not events[0][1] & select.POLLIN:
                continue
            request = bytearray(80)
            try:
                fcntl.ioctl(self.fds[0], SECCOMP_IOCTL_NOTIF_RECV, request, True)
            except OSError:
                continue  # the process went away meanwhile
            notification_id, _pid, _flags, nr = struct.unpack_from("=QIIi", request)
            self.syscalls.append(nr)
            response = bytearray(struct.pack("=QqiI", notification_id, 0, -self.error, 0))
            try:
                fcntl.ioctl(self.fds[0], SECCOMP_IOCTL_NOTIF_SEND, response, True)
            except OSError:
                pass

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
        self.server.close()
        for fd in self.fds:
            os.close(fd)


def notify_profile(listener: Path) -> dict[str, Any]:
    profile = deny(MKDIR, "SCMP_ACT_NOTIFY")
    profile.update(listenerPath=str(listener), listenerMetadata="MKDIR=erofs")
    return profile


@pytest.mark.parametrize("no_new_privs", [True, False])
def test_notify_hands_the_fd_to_the_agent(
    ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path, no_new_privs: bool
) -> None:
    """Loaded at create (before "ready"), or earlier when capabilities go (noNewPrivileges false)."""
    agent = Agent(tmp_path / "agent.sock", errno.EROFS)
    agent.start()
    try:
        script = "mkdir /tmp/x 2>/result; echo $? >>/result; grep Seccomp: /proc/self/status >>/result"
        bundle.config["annotations"] = {"org.example": "yes"}
        seccomp(bundle, notify_profile(agent.path), ["sh", "-c", script], noNewPrivileges=no_new_privs)
        assert load_point(bundle.config["process"], notify=True) == ("create" if no_new_privs else "early")
        created = ocirt.detached("create", "--bundle", str(bundle.path), cid)
        assert created.returncode == 0, created.stderr
        # The agent has the fd once create returns, before the process runs.
        assert wait_for(lambda: bool(agent.state), 5)
        pid = ocirt.state(cid)["pid"]
        assert agent.state == {
            "ociVersion": agent.state["ociVersion"],
            "fds": ["seccompFd"],
            "pid": pid,
            "metadata": "MKDIR=erofs",
            "state": {
                "ociVersion": agent.state["ociVersion"],
                "id": cid,
                "status": "creating",
                "pid": pid,
                "bundle": str(bundle.path),
                "annotations": {"org.example": "yes"},
            },
        }
        assert len(agent.fds) == 1 and agent.syscalls == []
        ocirt("start", cid, check=True)
        assert wait_for(lambda: ocirt.state(cid)["status"] == "stopped")
    finally:
        agent.stop()
    result = (bundle.rootfs / "result").read_text()
    assert result == "mkdir: can't create directory '/tmp/x': Read-only file system\n1\nSeccomp:\t2\n"
    assert len(agent.syscalls) == 1


def test_notify_without_an_agent_fails_create_cleanly(
    ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    listener = tmp_path / "nobody.sock"
    seccomp(bundle, notify_profile(listener), ["true"])
    result = ocirt.detached("create", "--bundle", str(bundle.path), cid)
    assert result.returncode == 1
    assert result.stderr == (  # one clear line: nothing from the init killed meanwhile
        f"ocirt: seccomp: cannot send the notify fd to the agent at {listener} "
        "(linux.seccomp.listenerPath): no such file or directory\n"
    )
    assert ocirt.ids() == []
    assert not _processes_in(bundle.rootfs)


def _processes_in(rootfs: Path) -> list[int]:
    """Processes whose root is ``rootfs``: a container init left behind."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/root") == str(rootfs):
                    found.append(int(entry))
            except OSError:
                pass
    return found


def test_seccomp_imported_only_when_used(ocirt: Ocirt, bundle: Bundle) -> None:
    """The check of test_imports can fail: a spec with a new linux.seccomp profile imports pyseccomp."""
    from test_imports import imported

    seccomp(bundle, deny([*MKDIR, f"ocirt_new_{unique_id('x')}"]), ["true"])  # a profile never seen
    assert "pyseccomp" in imported(ocirt, "run", "--bundle", str(bundle.path), unique_id("imp"))


def test_a_known_profile_is_loaded_without_libseccomp(ocirt: Ocirt, bundle: Bundle) -> None:
    """The second container with a profile loads the kept program: no pyseccomp, the same
    filter in force, the same warnings."""
    from test_imports import imported

    unknown = f"ocirt_new_{unique_id('x')}"
    seccomp(bundle, deny([*MKDIR, unknown]), ["sh", "-c", "mkdir /made || echo denied"])
    first = run(ocirt, bundle)
    assert (first.returncode, first.stdout) == (0, "denied\n"), first.stderr
    assert "pyseccomp" not in imported(ocirt, "run", "--bundle", str(bundle.path), unique_id("imp"))
    second = run(ocirt, bundle)
    assert (second.returncode, second.stdout) == (0, "denied\n"), second.stderr
    warnings = [line["msg"] for line in ocirt.log_lines() if unknown in line["msg"]]
    assert len(warnings) == 2  # the first run compiled, the second loaded the kept program
    assert len(set(warnings)) == 1
