"""What the container's process may do: identity, capabilities, privileges, leaks.

Real containers, as root. Capabilities are read from ``/proc/self/status``
and compared with exact masks, and with runc on the same bundle when it is
installed. The runtime's own leaks are checked from both sides: the fds a
container sees and a ``process.cwd`` naming a runtime fd (the class of
CVE-2024-21626); the init's /proc files while it waits in ``created`` (the
class of CVE-2019-5736).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Bundle, Ocirt, default_config, unique_id, wait_for

from ocirt.plugins.security import caps

SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")
STATUS_CAPS = "grep -E '^(Cap|NoNewPrivs|Groups)' /proc/self/status"
HOST_ID, MAP_SIZE = 100000, 65536


def own_bounding() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))


RUNTIME_LACKS_SYS_RESOURCE = not own_bounding() >> caps.NUMBERS["CAP_SYS_RESOURCE"] & 1
needs_runc = pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")


# ---------------------------------------------------------------------- helpers


def run(ocirt: Ocirt, bundle: Bundle, script: str, *flags: str, **kw: Any) -> str:
    """``sh -c script`` in a container; its stdout (it must succeed)."""
    bundle.write(args=["sh", "-c", script])
    result = ocirt("run", *flags, "--bundle", str(bundle.path), unique_id("sec"), **kw)
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(ocirt: Ocirt, bundle: Bundle, *fragments: str) -> str:
    """create fails with one line naming the problem, leaving nothing behind."""
    bundle.write()
    result = ocirt.detached("create", "--bundle", str(bundle.path), unique_id("bad"))
    assert result.returncode != 0, "create succeeded"
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message, message
    assert ocirt.ids() == []
    return message


def status(output: str) -> dict[str, str]:
    """``Key:\\tvalue`` lines as a dict."""
    return {k: v.strip() for k, _, v in (line.partition(":") for line in output.splitlines()) if v}


def stat_fields(line: str) -> list[str]:
    """/proc/<pid>/stat split after the command name: index N-3 is field N of proc(5)."""
    return line.rsplit(")", 1)[1].split()


def mask(*names: str) -> str:
    return f"{sum(1 << caps.NUMBERS[n] for n in names):016x}"


# ------------------------------------------------------------ user and groups


def test_groups_are_exactly_additional_gids(ocirt: Ocirt, bundle: Bundle) -> None:
    """The runtime's own supplementary groups (here 4242) never reach the container."""
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [1003, 1002], "umask": 7}
    out = run(ocirt, bundle, f"{STATUS_CAPS}; id; umask", extra_groups=[4242])
    seen = status(out)
    assert seen["Groups"].split() == ["1002", "1003"]
    assert "uid=1000 gid=1001 groups=1002,1003" in out
    assert out.rstrip().endswith("0007")

    bundle.config["process"]["user"] = {"uid": 0, "gid": 0}
    seen = status(run(ocirt, bundle, STATUS_CAPS, extra_groups=[4242]))
    assert seen["Groups"] == ""


# ---------------------------------------------------------------- capabilities


def test_name_table() -> None:
    assert len(caps.NAMES) == 41
    assert caps.NUMBERS["CAP_CHOWN"] == 0
    assert caps.NUMBERS["CAP_SYS_RESOURCE"] == 24
    assert caps.NUMBERS["CAP_AUDIT_READ"] == 37
    assert caps.NUMBERS["CAP_CHECKPOINT_RESTORE"] == 40


def test_no_capabilities_object_means_no_capabilities(ocirt: Ocirt, bundle: Bundle) -> None:
    del bundle.config["process"]["capabilities"]
    seen = status(run(ocirt, bundle, STATUS_CAPS))
    assert {k: seen[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == dict.fromkeys(
        ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), "0" * 16
    )


#: Distinct sets, so a mix-up of any two shows.
SPLIT_SETS = {
    "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
    "permitted": ["CAP_CHOWN", "CAP_KILL"],
    "effective": ["CAP_KILL"],
    "inheritable": ["CAP_CHOWN", "CAP_KILL"],
    "ambient": ["CAP_KILL"],
}


def test_five_sets_for_a_non_root_user(ocirt: Ocirt, bundle: Bundle) -> None:
    """After the exec, a non-root process keeps only its ambient set in permitted and effective."""
    bundle.config["process"]["capabilities"] = SPLIT_SETS
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    seen = status(run(ocirt, bundle, STATUS_CAPS))
    assert seen["CapBnd"] == mask("CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW") == "0000000000002021"
    assert seen["CapInh"] == mask("CAP_CHOWN", "CAP_KILL")
    assert seen["CapAmb"] == seen["CapPrm"] == seen["CapEff"] == mask("CAP_KILL")
    assert seen["NoNewPrivs"] == "1"


def test_five_sets_for_root(ocirt: Ocirt, bundle: Bundle) -> None:
    """Root's exec grants its bounding and inheritable sets, unless no_new_privs holds it to what it had."""
    bundle.config["process"]["capabilities"] = SPLIT_SETS
    for no_new_privs, granted in ((False, "0000000000002021"), (True, "0000000000000021")):
        bundle.config["process"]["noNewPrivileges"] = no_new_privs
        seen = status(run(ocirt, bundle, STATUS_CAPS))
        assert seen["CapBnd"] == "0000000000002021"
        assert seen["CapPrm"] == seen["CapEff"] == granted
        assert seen["CapInh"] == "0000000000000021"
        assert seen["CapAmb"] == "0000000000000020"


@needs_runc
@pytest.mark.parametrize("user", [{"uid": 0, "gid": 0}, {"uid": 1000, "gid": 1000}], ids=["root", "uid-1000"])
@pytest.mark.parametrize(
    "sets",
    [
        SPLIT_SETS,
        {key: ["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SETPCAP"] for key in SETS},
        {"bounding": ["CAP_KILL"], "effective": [], "permitted": []},
        {key: [n for n in caps.NAMES if n != "CAP_SYS_RESOURCE"] for key in SETS},
    ],
    ids=["split", "admin", "bounding-only", "all-held"],
)
def test_same_capabilities_as_runc(
    ocirt: Ocirt, bundle: Bundle, tmp_path: Path, user: dict[str, int], sets: dict[str, list[str]]
) -> None:
    if not RUNTIME_LACKS_SYS_RESOURCE:
        sets = {k: [*v, "CAP_SYS_RESOURCE"] if len(v) > 30 else v for k, v in sets.items()}
    bundle.config["process"]["capabilities"] = sets
    bundle.config["process"]["user"] = user
    bundle.config["process"]["noNewPrivileges"] = False
    bundle.write(args=["sh", "-c", STATUS_CAPS])
    mine = ocirt("run", "--bundle", str(bundle.path), unique_id(), check=True).stdout
    theirs = subprocess.run(
        ["runc", "--root", str(tmp_path / "runc"), "run", "--bundle", str(bundle.path), unique_id()],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert theirs.returncode == 0, theirs.stderr
    assert mine == theirs.stdout


def test_unknown_capability_is_refused(ocirt: Ocirt, bundle: Bundle) -> None:
    bundle.config["process"]["capabilities"]["effective"] = ["CAP_KILL", "CAP_FLY"]
    refused(ocirt, bundle, "process.capabilities.effective[1]", "unknown capability 'CAP_FLY'")
    bundle.config["process"]["capabilities"]["effective"] = ["kill"]  # runc's names only
    refused(ocirt, bundle, "process.capabilities.effective[0]", "'kill'")
    bundle.config["process"]["capabilities"]["effective"] = "CAP_KILL"
    refused(ocirt, bundle, "process.capabilities.effective", "must be a list")


@pytest.mark.skipif(not RUNTIME_LACKS_SYS_RESOURCE, reason="this runtime has CAP_SYS_RESOURCE")
def test_capability_the_runtime_lacks_is_refused(ocirt: Ocirt, bundle: Bundle) -> None:
    everything = {key: list(caps.NAMES) for key in SETS}
    bundle.config["process"]["capabilities"] = everything
    refused(ocirt, bundle, "process.capabilities.bounding[24]", "CAP_SYS_RESOURCE", "bounding set")


def test_sets_the_kernel_would_refuse_are_refused(ocirt: Ocirt, bundle: Bundle) -> None:
    config = bundle.config["process"]
    config["capabilities"] = {"bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"], "effective": ["CAP_CHOWN"]}
    refused(ocirt, bundle, "process.capabilities.effective", "CAP_CHOWN not in permitted")
    config["capabilities"] = {"bounding": ["CAP_KILL"], "inheritable": ["CAP_CHOWN"]}
    refused(ocirt, bundle, "process.capabilities.inheritable", "CAP_CHOWN not in bounding")


def test_ambient_not_inheritable_is_skipped_as_runc_does(ocirt: Ocirt, bundle: Bundle) -> None:
    """runc's own default config asks for ambient capabilities it does not make
    inheritable; the kernel cannot raise them, and the container still starts."""
    config = bundle.config["process"]
    config["capabilities"] = {key: ["CAP_KILL"] for key in ("bounding", "permitted", "effective", "ambient")}
    seen = status(run(ocirt, bundle, STATUS_CAPS))
    assert seen["CapAmb"] == "0000000000000000"
    assert seen["CapPrm"] == "0000000000000020"  # CAP_KILL is bit 5


def test_no_new_privileges(ocirt: Ocirt, bundle: Bundle) -> None:
    for flag, shown in ((True, "1"), (False, "0")):
        bundle.config["process"]["noNewPrivileges"] = flag
        assert status(run(ocirt, bundle, STATUS_CAPS))["NoNewPrivs"] == shown


def test_features_list_capabilities(ocirt: Ocirt) -> None:
    features = json.loads(ocirt("features", check=True).stdout)
    assert features["linux"]["capabilities"] == list(caps.NAMES)
    assert set(features["linux"]["apparmor"]) == {"enabled"}
    assert set(features["linux"]["selinux"]) == {"enabled"}


# ------------------------------------------------------- OOM score, scheduler


def _set_own_oom(value: int) -> None:
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(value))


def test_oom_score_adj(ocirt: Ocirt, bundle: Bundle) -> None:
    bundle.config["process"]["oomScoreAdj"] = 500
    assert run(ocirt, bundle, "cat /proc/self/oom_score_adj").strip() == "500"
    # Unset: the runtime must not change it (its caller's 123 goes through).
    del bundle.config["process"]["oomScoreAdj"]
    out = run(ocirt, bundle, "cat /proc/self/oom_score_adj", preexec_fn=lambda: _set_own_oom(123))
    assert out.strip() == "123"


def test_oom_score_adj_range(ocirt: Ocirt, bundle: Bundle) -> None:
    bundle.config["process"]["oomScoreAdj"] = 1001
    refused(ocirt, bundle, "process.oomScoreAdj", "-1000 to 1000")


@pytest.mark.skipif(not RUNTIME_LACKS_SYS_RESOURCE, reason="this runtime has CAP_SYS_RESOURCE")
def test_lower_oom_score_needs_sys_resource(ocirt: Ocirt, bundle: Bundle) -> None:
    bundle.config["process"]["oomScoreAdj"] = -500
    refused(ocirt, bundle, "process.oomScoreAdj", "-500", "CAP_SYS_RESOURCE")


def test_scheduler_batch_with_nice(ocirt: Ocirt, bundle: Bundle) -> None:
    bundle.config["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 7}
    fields = stat_fields(run(ocirt, bundle, "cat /proc/self/stat"))
    assert (fields[16], fields[38]) == ("7", "3")  # nice, policy SCHED_BATCH


def test_scheduler_fifo(ocirt: Ocirt, bundle: Bundle) -> None:
    bundle.config["process"]["scheduler"] = {"policy": "SCHED_FIFO", "priority": 10}
    fields = stat_fields(run(ocirt, bundle, "cat /proc/self/stat"))
    assert (fields[37], fields[38]) == ("10", "1")  # rt_priority, policy SCHED_FIFO


@pytest.mark.parametrize(
    ("scheduler", "fragments"),
    [
        ({"policy": "SCHED_LATER"}, ("process.scheduler.policy", "SCHED_LATER")),
        ({"policy": "SCHED_ISO"}, ("process.scheduler.policy", "not implemented")),
        ({"policy": "SCHED_RR"}, ("process.scheduler.priority", "1 to 99")),
        ({"policy": "SCHED_OTHER", "priority": 5}, ("process.scheduler.priority", "must be 0")),
        ({"policy": "SCHED_OTHER", "nice": 20}, ("process.scheduler.nice",)),
        ({"policy": "SCHED_OTHER", "runtime": 5}, ("process.scheduler.runtime", "SCHED_DEADLINE only")),
        ({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_FAST"]}, ("process.scheduler.flags[0]",)),
        ({"policy": "SCHED_DEADLINE", "runtime": 10, "deadline": 5}, ("process.scheduler", "runtime <=")),
    ],
)
def test_scheduler_refused(ocirt: Ocirt, bundle: Bundle, scheduler: Any, fragments: tuple[str, ...]) -> None:
    bundle.config["process"]["scheduler"] = scheduler
    refused(ocirt, bundle, *fragments)


def test_io_priority(ocirt: Ocirt, bundle: Bundle) -> None:
    bundle.config["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 6}
    assert run(ocirt, bundle, "ionice").strip() == "best-effort: prio 6"
    bundle.config["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
    assert run(ocirt, bundle, "ionice").strip() == "idle"
    bundle.config["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_FAST", "priority": 0}
    refused(ocirt, bundle, "process.ioPriority.class", "IOPRIO_CLASS_FAST")
    bundle.config["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 8}
    refused(ocirt, bundle, "process.ioPriority.priority", "0 (highest) to 7")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="LINUX32 shows as i686 on x86_64")
def test_personality(ocirt: Ocirt, bundle: Bundle) -> None:
    bundle.config["linux"]["personality"] = {"domain": "LINUX32", "flags": ["ADDR_NO_RANDOMIZE"]}
    assert run(ocirt, bundle, "uname -m; cat /proc/self/personality").split() == ["i686", "00040008"]
    bundle.config["linux"]["personality"] = {"domain": "LINUX"}
    assert run(ocirt, bundle, "uname -m").strip() == "x86_64"
    bundle.config["linux"]["personality"] = {"domain": "LINUX64"}
    refused(ocirt, bundle, "linux.personality.domain", "LINUX64")


def test_exec_cpu_affinity_is_checked(ocirt: Ocirt, bundle: Bundle) -> None:
    """Checked, not applied: the spec makes it the affinity of exec'd processes, not the init's."""
    bundle.config["process"]["execCPUAffinity"] = {"initial": "0", "final": "0"}
    assert run(ocirt, bundle, "true") == ""
    bundle.config["process"]["execCPUAffinity"] = {"initial": "0-x"}
    refused(ocirt, bundle, "process.execCPUAffinity.initial", "'0-x'")
    bundle.config["process"]["execCPUAffinity"] = {"final": "1000000"}
    refused(ocirt, bundle, "process.execCPUAffinity.final", "this machine has CPUs")


# ------------------------------------------------------------------ LSM labels


def test_lsm_labels_on_a_host_without_them(ocirt: Ocirt, bundle: Bundle) -> None:
    from ocirt.plugins.security import lsm

    if lsm.apparmor_enabled() or lsm.selinux_enabled():
        pytest.skip("this host has AppArmor or SELinux")
    process = bundle.config["process"]
    process["apparmorProfile"] = "docker-default"
    refused(ocirt, bundle, "process.apparmorProfile", "AppArmor is not enabled")
    process["apparmorProfile"] = ""
    process["selinuxLabel"] = "system_u:system_r:container_t:s0"
    refused(ocirt, bundle, "process.selinuxLabel", "SELinux is not enabled")
    process["selinuxLabel"] = ""  # empty strings ask for nothing
    assert run(ocirt, bundle, "echo ok").strip() == "ok"


# ------------------------------------------------------- the init in "created"


def _ptrace_read(pid: int) -> subprocess.CompletedProcess[str]:
    """readlink /proc/<pid>/exe as root without CAP_SYS_PTRACE, as a root process in a container."""
    return subprocess.run(
        ["setpriv", "--bounding-set=-sys_ptrace", "--inh-caps=-all", "readlink", "-v", f"/proc/{pid}/exe"],
        capture_output=True,
        text=True,
    )


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is needed")
def test_created_init_is_not_dumpable(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    """Waiting in ``created``, the init's exe (the host's interpreter) is out of reach; after the exec not."""
    bundle.write(args=["sleep", "30"])
    ocirt.detached("create", "--bundle", str(bundle.path), cid)
    pid = ocirt.state(cid)["pid"]
    denied = _ptrace_read(pid)
    assert denied.returncode != 0 and "ermission denied" in denied.stderr, denied
    assert ocirt("start", cid).returncode == 0
    assert wait_for(lambda: _ptrace_read(pid).stdout.strip().endswith("/bin/busybox")), _ptrace_read(pid)


@pytest.fixture
def userns_bundle(rootfs_template: Path) -> Iterator[Bundle]:
    """A bundle with a user namespace, in a 0755 directory the mapped ids can traverse."""
    top = Path(tempfile.mkdtemp(prefix="ocirt-sec-"))
    try:
        top.chmod(0o755)
        path = top / "bundle"
        path.mkdir()
        shutil.copytree(rootfs_template, path / "rootfs", symlinks=True)
        config = default_config()
        config["linux"]["namespaces"].append({"type": "user"})
        for key in ("uidMappings", "gidMappings"):
            config["linux"][key] = [{"containerID": 0, "hostID": HOST_ID, "size": MAP_SIZE}]
        yield Bundle(path, config).write()
    finally:
        shutil.rmtree(top)


@pytest.mark.parametrize("time_namespace", [False, True], ids=["userns", "userns+timens"])
def test_created_init_in_user_namespace_is_not_dumpable(
    ocirt: Ocirt, userns_bundle: Bundle, cid: str, time_namespace: bool
) -> None:
    """Its /proc files belong to the host's root, not to container root, until the exec.

    The setup child is dumpable for a moment twice: while the runtime writes its
    id maps, and while it writes its time offsets.
    """
    if time_namespace:
        userns_bundle.config["linux"]["namespaces"].append({"type": "time"})
        userns_bundle.config["linux"]["timeOffsets"] = {"boottime": {"secs": 1000, "nanosecs": 0}}
    userns_bundle.write(args=["sleep", "30"])
    result = ocirt.detached("create", "--bundle", str(userns_bundle.path), cid)
    assert result.returncode == 0, result.stderr
    pid = ocirt.state(cid)["pid"]
    assert os.stat(f"/proc/{pid}").st_uid == HOST_ID  # the process: container root
    assert os.stat(f"/proc/{pid}/fd").st_uid == 0  # its files: not dumpable
    assert ocirt("start", cid).returncode == 0
    assert wait_for(lambda: os.stat(f"/proc/{pid}/fd").st_uid == HOST_ID)


# ------------------------------------------------------------ fds and the cwd


def fds(listing: str) -> dict[str, str]:
    """``ls -l /proc/$$/fd`` as {fd: target}."""
    found = {}
    for line in listing.splitlines():
        if " -> " in line:
            left, target = line.split(" -> ", 1)
            found[left.split()[-1]] = target
    return found


def test_caller_fds_do_not_leak_in(ocirt: Ocirt, bundle: Bundle, tmp_path: Path) -> None:
    stray = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    other = os.open("/etc/hostname", os.O_RDONLY)
    try:
        out = run(ocirt, bundle, "ls -l /proc/$$/fd", pass_fds=(stray, other))
        assert set(fds(out)) == {"0", "1", "2"}, out
    finally:
        os.close(stray)
        os.close(other)


def _at(pairs: dict[int, int]) -> Any:
    """A preexec_fn putting fds at fixed numbers in the child (dup2 clears close-on-exec)."""
    return lambda: [os.dup2(fd, target) for target, fd in pairs.items()]


def test_preserve_fds_passes_exactly_those(ocirt: Ocirt, bundle: Bundle, tmp_path: Path) -> None:
    """--preserve-fds 2: fds 3 and 4 cross, 5 does not; the container reads one pipe and writes the other."""
    to_container, from_host = os.pipe()
    from_container, to_host = os.pipe()
    extra = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.write(from_host, b"hello\n")
        os.close(from_host)
        script = 'read line <&3; echo "got $line" >&4; ls -l /proc/$$/fd'
        out = run(
            ocirt,
            bundle,
            script,
            "--preserve-fds",
            "2",
            preexec_fn=_at({3: to_container, 4: to_host, 5: extra}),
            pass_fds=(3, 4, 5),
        )
        os.close(to_host)
        to_host = -1
        assert os.read(from_container, 100) == b"got hello\n"
        seen = fds(out)
        assert set(seen) == {"0", "1", "2", "3", "4"}, out
        assert seen["3"].startswith("pipe:") and seen["4"].startswith("pipe:")
    finally:
        for fd in (to_container, from_container, to_host, extra):
            if fd >= 0:
                os.close(fd)


def test_cwd_cannot_name_a_runtime_fd(ocirt: Ocirt, bundle: Bundle, tmp_path: Path) -> None:
    """A host directory open in the runtime, named through /proc/self/fd, is never the cwd."""
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    fd = os.open(host_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for cwd in ("/proc/self/fd/3", "/proc/self/fd/3/made-on-the-host"):
            bundle.config["process"]["cwd"] = cwd
            bundle.write()
            result = ocirt.detached(
                "create", "--preserve-fds", "1", "--bundle", str(bundle.path), unique_id("cwd")
            )
            assert result.returncode != 0
            assert f"process.cwd '{cwd}'" in result.stderr, result.stderr
            assert ocirt.ids() == []
        assert list(host_dir.iterdir()) == []
    finally:
        os.close(fd)


def test_cwd_is_resolved_inside_the_rootfs(ocirt: Ocirt, bundle: Bundle, tmp_path: Path) -> None:
    """A symlink climbing out of the rootfs stays in it: the cwd is made under the rootfs."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (bundle.rootfs / "climb").symlink_to("../../../../../../.." + str(outside))
    bundle.config["process"]["cwd"] = "/climb/made"
    bundle.config["root"]["readonly"] = False
    assert run(ocirt, bundle, "pwd").strip() == f"{outside}/made"  # as the container resolves it
    assert not (outside / "made").exists()
    assert (bundle.rootfs / str(outside).lstrip("/") / "made").is_dir()
