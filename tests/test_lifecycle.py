"""Container lifecycle with real busybox containers: what the kernel and the state show.

Every test checks an observed fact (a status from ``ocirt state``, a pid in
/proc, a line printed inside the container, an exit status), never only that a
command returned 0.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import OCIRT, REPO, Bundle, Ocirt, unique_id, wait_for

from ocirt import OCI_VERSION, __version__

SLEEP = ["sleep", "30"]

# ---------------------------------------------------------------------- helpers


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], ppid [1]), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def ppid_of(pid: int) -> int:
    fields = proc_stat(pid)
    assert fields is not None, f"process {pid} is gone"
    return int(fields[1])


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return sorted(found)


def caught_signals(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


def status_of(ocirt: Ocirt, cid: str) -> str | None:
    result = ocirt("state", cid)
    return json.loads(result.stdout)["status"] if result.returncode == 0 else None


def create(ocirt: Ocirt, bundle: Bundle, cid: str, *extra: str) -> subprocess.CompletedProcess[str]:
    result = ocirt.detached("create", "--bundle", str(bundle.path), *extra, cid)
    assert result.returncode == 0, result.stderr
    return result


def start_running(ocirt: Ocirt, bundle: Bundle, cid: str, args: list[str]) -> int:
    """create + start a container running ``args``; return its pid once running."""
    bundle.write(args=args)
    create(ocirt, bundle, cid)
    ocirt("start", cid, check=True)
    state = ocirt.state(cid)
    assert state["status"] == "running"
    return int(state["pid"])


def run_in_container(ocirt: Ocirt, bundle: Bundle, script: str) -> subprocess.CompletedProcess[str]:
    bundle.write(args=["sh", "-c", script])
    return ocirt("run", "--bundle", str(bundle.path), unique_id("run"))


# ----------------------------------------------------------- the state machine


def test_create_start_kill_delete(ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path) -> None:
    bundle.write(args=SLEEP)
    pid_file = tmp_path / "init.pid"

    created = create(ocirt, bundle, cid, "--pid-file", str(pid_file))
    assert created.stdout == ""
    assert created.stderr == ""
    raw = pid_file.read_text()  # exists as soon as create has returned
    assert re.fullmatch(r"[1-9][0-9]*", raw), f"pid file holds {raw!r}"
    pid = int(raw)

    state = ocirt.state(cid)
    assert state["status"] == "created"
    assert state["id"] == cid
    assert state["pid"] == pid
    assert state["bundle"] == str(bundle.path)
    assert state["ociVersion"] == OCI_VERSION
    assert (ocirt.root / cid / "exec.fifo").exists()
    assert alive(pid)
    # The init waits for `start` as the runtime's code, not as the user process yet.
    assert cmdline(pid)[:2] != SLEEP
    # Nothing of ocirt stays around as the init's parent.
    parent = ppid_of(pid)
    assert not any("ocirt" in arg for arg in cmdline(parent)), cmdline(parent)

    started = ocirt("start", cid, check=True)
    assert started.stdout == ""
    state = ocirt.state(cid)
    assert state["status"] == "running"
    assert state["pid"] == pid
    assert cmdline(pid) == SLEEP
    assert not (ocirt.root / cid / "exec.fifo").exists()

    ocirt("kill", cid, "KILL", check=True)
    assert wait_for(lambda: status_of(ocirt, cid) == "stopped"), ocirt.state(cid)
    assert ocirt.state(cid)["pid"] == 0
    assert wait_for(lambda: not alive(pid))

    assert (ocirt.root / cid).is_dir()
    deleted = ocirt("delete", cid, check=True)
    assert deleted.stdout == ""
    assert not (ocirt.root / cid).exists()
    assert ocirt("state", cid).returncode != 0


def test_container_that_exits_shows_stopped(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    bundle.write(args=["true"])
    create(ocirt, bundle, cid)
    ocirt("start", cid, check=True)
    assert wait_for(lambda: status_of(ocirt, cid) == "stopped")
    ocirt("delete", cid, check=True)
    assert ocirt.ids() == []


# ---------------------------------------------------------- inside the container


def test_init_is_pid_1(ocirt: Ocirt, bundle: Bundle) -> None:
    result = run_in_container(ocirt, bundle, "echo $$")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\n"
    assert ocirt.ids() == []  # run deletes the container once it exited


def test_hostname_from_config(ocirt: Ocirt, bundle: Bundle) -> None:
    bundle.config["hostname"] = "lifecycle-host"
    result = run_in_container(ocirt, bundle, "hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "lifecycle-host\n"
    assert os.uname().nodename != "lifecycle-host"


def _host_path_in_its_filesystem(path: Path) -> str:
    """``path`` as mountinfo's 'root' field shows it: relative to its filesystem's root."""
    best_point, best_root = "/", "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = fields[4]
        if (str(path) == point or str(path).startswith(point.rstrip("/") + "/")) and len(point) >= len(
            best_point
        ):
            best_point, best_root = point, fields[3]
    return os.path.normpath(os.path.join(best_root, os.path.relpath(path, best_point)))


def test_mount_table_inside(ocirt: Ocirt, bundle: Bundle) -> None:
    result = run_in_container(ocirt, bundle, "cat /proc/self/mountinfo")
    assert result.returncode == 0, result.stderr
    mounts: dict[str, tuple[str, str, str]] = {}  # mount point -> (root, options, fstype)
    for line in result.stdout.splitlines():
        fields = line.split()
        separator = fields.index("-")
        mounts[fields[4]] = (fields[3], fields[5], fields[separator + 1])

    root, options, _ = mounts["/"]
    assert root == _host_path_in_its_filesystem(bundle.rootfs.resolve())
    assert "ro" in options.split(",")  # root.readonly in the config
    assert mounts["/proc"][2] == "proc"
    assert mounts["/dev"][2] == "tmpfs"
    assert mounts["/sys"][2] == "sysfs"
    # The host's mounts stay outside.
    assert not [point for point in mounts if "pytest-of" in point]


def test_run_exit_status_is_the_containers(ocirt: Ocirt, bundle: Bundle) -> None:
    result = run_in_container(ocirt, bundle, "echo out; echo err >&2; exit 42")
    assert result.returncode == 42
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert ocirt.ids() == []


def test_run_killed_by_signal_exits_128_plus_n(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    bundle.write(args=SLEEP)
    cmd = [OCIRT, "--root", str(ocirt.root), "--log", str(ocirt.log), "--log-format", "json"]
    proc = subprocess.Popen(
        [*cmd, "run", "--bundle", str(bundle.path), cid],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ocirt.env,
    )
    try:
        assert wait_for(lambda: status_of(ocirt, cid) == "running"), proc.poll()
        assert cmdline(ocirt.state(cid)["pid"]) == SLEEP
        ocirt("kill", cid, "9", check=True)
        assert proc.wait(timeout=10) == 128 + 9
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert ocirt.ids() == []


def test_run_signal_status_without_pid_namespace(ocirt: Ocirt, bundle: Bundle) -> None:
    # Outside a pid namespace the shell is no init: it can kill itself.
    namespaces = bundle.config["linux"]["namespaces"]
    bundle.config["linux"]["namespaces"] = [ns for ns in namespaces if ns["type"] != "pid"]
    result = run_in_container(ocirt, bundle, "kill -TERM $$; sleep 5")
    assert result.returncode == 128 + 15, result.stderr


# ------------------------------------------------------------------------ kill


@pytest.mark.parametrize("signal", ["9", "SIGKILL", "KILL", "sigkill"])
def test_kill_stops_container(ocirt: Ocirt, bundle: Bundle, cid: str, signal: str) -> None:
    pid = start_running(ocirt, bundle, cid, SLEEP)
    result = ocirt("kill", cid, signal)
    assert result.returncode == 0, result.stderr
    assert wait_for(lambda: not alive(pid))
    assert status_of(ocirt, cid) == "stopped"


@pytest.mark.parametrize("signal", ["TERM", "15", "SIGTERM"])
def test_kill_term_reaches_a_handler(ocirt: Ocirt, bundle: Bundle, cid: str, signal: str) -> None:
    # A pid namespace's init only receives the signals it handles: give it a trap.
    script = 'trap "exit 0" TERM; while :; do sleep 0.05; done'
    pid = start_running(ocirt, bundle, cid, ["sh", "-c", script])
    assert wait_for(lambda: caught_signals(pid) & (1 << (15 - 1)) != 0), "trap never installed"
    ocirt("kill", cid, signal, check=True)
    assert wait_for(lambda: not alive(pid))
    assert status_of(ocirt, cid) == "stopped"


def test_kill_default_signal_is_term(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    script = 'trap "exit 0" TERM; while :; do sleep 0.05; done'
    pid = start_running(ocirt, bundle, cid, ["sh", "-c", script])
    assert wait_for(lambda: caught_signals(pid) & (1 << (15 - 1)) != 0), "trap never installed"
    ocirt("kill", cid, check=True)
    assert wait_for(lambda: not alive(pid))


def test_kill_created_container(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    bundle.write(args=SLEEP)
    create(ocirt, bundle, cid)
    pid = ocirt.state(cid)["pid"]
    ocirt("kill", cid, "KILL", check=True)
    assert wait_for(lambda: not alive(pid))
    assert status_of(ocirt, cid) == "stopped"
    ocirt("delete", cid, check=True)
    assert not (ocirt.root / cid).exists()


def test_kill_all(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    pid = start_running(ocirt, bundle, cid, ["sh", "-c", "sleep 30 & sleep 30 & wait"])
    assert wait_for(lambda: len(children(pid)) == 2), children(pid)
    everyone = [pid, *children(pid)]
    assert [cmdline(p) for p in everyone[1:]] == [SLEEP, SLEEP]

    result = ocirt("kill", "--all", cid, "KILL")
    assert result.returncode == 0, result.stderr
    assert wait_for(lambda: not any(alive(p) for p in everyone)), [p for p in everyone if alive(p)]
    assert status_of(ocirt, cid) == "stopped"


# ------------------------------------------------------- parenting of the init

SUBREAPER_HELPER = textwrap.dedent(
    """
    import ctypes, json, os, subprocess, sys

    PR_SET_CHILD_SUBREAPER = 36
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    create, delete, pid_file = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]

    # Files, not pipes, for the container's stdio: it inherits them.
    with open(pid_file + ".err", "w+") as err:
        created = subprocess.run(create, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        err.seek(0)
        out = {"self": os.getpid(), "create_rc": created.returncode, "create_err": err.read()}
    if created.returncode == 0:
        pid = int(open(pid_file).read())
        stat = open(f"/proc/{pid}/stat").read()
        out["init"] = pid
        out["ppid"] = int(stat[stat.rfind(")") + 2 :].split()[1])
        out["children"] = sorted(
            int(c)
            for task in os.listdir("/proc/self/task")
            for c in open(f"/proc/self/task/{task}/children").read().split()
        )
        out["delete_rc"] = subprocess.run(delete, capture_output=True).returncode
        reaped, status = os.waitpid(pid, 0)  # our child: reap it
        out["reaped"] = reaped
        out["signal"] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    print(json.dumps(out))
    """
)


def test_init_is_reparented_to_a_subreaper_caller(
    ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    bundle.write(args=SLEEP)
    helper = tmp_path / "subreaper.py"
    helper.write_text(SUBREAPER_HELPER)
    pid_file = tmp_path / "init.pid"
    base = [OCIRT, "--root", str(ocirt.root), "--log", str(ocirt.log), "--log-format", "json"]
    create_cmd = [*base, "create", "--bundle", str(bundle.path), "--pid-file", str(pid_file), cid]
    delete_cmd = [*base, "delete", "--force", cid]

    result = subprocess.run(
        [sys.executable, str(helper), json.dumps(create_cmd), json.dumps(delete_cmd), str(pid_file)],
        capture_output=True,
        text=True,
        timeout=30,
        env=ocirt.env,
    )
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout)
    assert out["create_rc"] == 0, out["create_err"]
    # The init's parent is the caller itself, and it is the caller's only child:
    # no setup process or ocirt process lingers between them.
    assert out["ppid"] == out["self"]
    assert out["children"] == [out["init"]]
    assert out["delete_rc"] == 0
    assert out["reaped"] == out["init"]
    assert out["signal"] == 9
    assert not (ocirt.root / cid).exists()


# ------------------------------------------------------------------ list, misc


def test_list(ocirt: Ocirt, bundle: Bundle) -> None:
    bundle.write(args=SLEEP)
    first, second = sorted([unique_id("a"), unique_id("b")])
    create(ocirt, bundle, first)
    create(ocirt, bundle, second)
    ocirt("start", second, check=True)
    pids = {first: ocirt.state(first)["pid"], second: ocirt.state(second)["pid"]}

    table = ocirt("list", check=True).stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rows = {row.split()[0]: row.split() for row in table[1:]}
    assert set(rows) == {first, second}
    assert rows[first][1:4] == [str(pids[first]), "created", str(bundle.path)]
    assert rows[second][1:4] == [str(pids[second]), "running", str(bundle.path)]
    assert rows[first][5] == "root"

    listed = json.loads(ocirt("list", "--format", "json", check=True).stdout)
    by_id = {entry["id"]: entry for entry in listed}
    assert set(by_id) == {first, second}
    assert by_id[first]["status"] == "created"
    assert by_id[second]["status"] == "running"
    assert by_id[second]["pid"] == pids[second]
    assert by_id[first]["bundle"] == str(bundle.path)
    # As runc: `list` names the state directory's owner, `state` leaves it empty.
    assert by_id[first]["owner"] == "root"
    assert ocirt.state(first)["owner"] == ""

    assert ocirt("list", "--quiet", check=True).stdout == f"{first}\n{second}\n"
    assert ocirt("list", "-q", check=True).stdout == f"{first}\n{second}\n"


def test_list_empty(ocirt: Ocirt) -> None:
    assert json.loads(ocirt("list", "--format", "json", check=True).stdout) == []
    assert ocirt("list", "--quiet", check=True).stdout == ""
    assert ocirt("list", check=True).stdout.split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]


@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version(flag: str) -> None:
    result = subprocess.run([OCIRT, flag], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout
    assert lines[0] == f"ocirt version {__version__}"
    assert lines[2] == f"spec: {OCI_VERSION}"
    match = re.fullmatch(r"commit: ([0-9a-f]{12}|release)", lines[1])
    assert match, lines[1]
    if match.group(1) != "release":
        known = subprocess.run(
            ["git", "-C", str(REPO), "cat-file", "-t", match.group(1)], capture_output=True, text=True
        )
        assert known.stdout.strip() == "commit"


def test_checkpoint_help(ocirt: Ocirt) -> None:
    result = ocirt("checkpoint", "--help")
    assert result.returncode == 0, result.stderr
    assert "checkpoint" in result.stdout.lower()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["checkpoint", "some-id"], "ocirt: container 'some-id' does not exist"),
        (["restore", "--image-path", "/nonexistent-images", "some-id"], "ocirt: restore: image path "
         "/nonexistent-images: no such file or directory"),
    ],
)  # fmt: skip
def test_checkpoint_restore_errors_are_one_line(
    ocirt: Ocirt, bundle: Bundle, args: list[str], message: str
) -> None:
    """The commands exist (tests/test_checkpoint.py runs them); their errors are one line."""
    result = ocirt(*args, cwd=bundle.path)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines == [message], result.stderr
    assert ocirt.log_lines()[-1]["msg"] == lines[0].removeprefix("ocirt: ")
    assert ocirt.log_lines()[-1]["level"] == "error"
    assert ocirt.ids() == []


# ------------------------------------------------------- flags as engines send them


def _global_forms(root: Path, log: Path) -> dict[str, list[str]]:
    return {
        "separate": ["--root", str(root), "--log", str(log), "--log-format", "json"],
        "equals": [f"--root={root}", f"--log={log}", "--log-format=json"],
        "go-style": ["-root", str(root), "-log", str(log), "-log-format", "json"],
        "go-style-equals": [f"-root={root}", f"-log={log}", "-log-format=json"],
    }


@pytest.mark.parametrize("form", ["separate", "equals", "go-style", "go-style-equals"])
def test_global_flag_forms(ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path, form: str) -> None:
    bundle.write(args=SLEEP)
    log = tmp_path / "engine.log"
    globals_ = _global_forms(ocirt.root, log)[form]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return ocirt.detached(*args, cwd=tmp_path, globals_=globals_)

    created = run("create", "--bundle", str(bundle.path), cid)
    assert created.returncode == 0, created.stderr
    assert ocirt.state(cid)["status"] == "created"  # under the --root given
    assert json.loads(run("state", cid).stdout)["id"] == cid
    listed = run("list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [entry["id"] for entry in json.loads(listed.stdout)] == [cid]

    failed = run("state", "no-such-container")
    assert failed.returncode != 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines[-1]["level"] == "error"
    assert "no-such-container" in lines[-1]["msg"]
    assert set(lines[-1]) == {"level", "msg", "time"}


@pytest.mark.parametrize(
    "bundle_args",
    [
        lambda b: ["--bundle", b],
        lambda b: [f"--bundle={b}"],
        lambda b: ["-bundle", b],
        lambda b: [f"-bundle={b}"],
        lambda b: ["-b", b],
    ],
    ids=["--bundle X", "--bundle=X", "-bundle X", "-bundle=X", "-b X"],
)
def test_bundle_flag_forms(ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path, bundle_args: Any) -> None:
    bundle.write(args=SLEEP)
    pid_file = tmp_path / "pid"
    # Run from elsewhere, so that a bundle flag that is not understood cannot fall back on ".".
    result = ocirt.detached(
        "create", *bundle_args(str(bundle.path)), "-pid-file", str(pid_file), cid, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    state = ocirt.state(cid)
    assert state["bundle"] == str(bundle.path)
    assert state["status"] == "created"
    assert int(pid_file.read_text()) == state["pid"]


def test_bundle_defaults_to_cwd(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    bundle.write(args=SLEEP)
    result = ocirt.detached("create", cid, cwd=bundle.path)
    assert result.returncode == 0, result.stderr
    assert ocirt.state(cid)["bundle"] == str(bundle.path)


def test_run_detach_then_delete_force(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    bundle.write(args=SLEEP)
    result = ocirt.detached("run", "-d", "--bundle", str(bundle.path), cid)
    assert result.returncode == 0, result.stderr
    state = ocirt.state(cid)
    assert state["status"] == "running"
    assert cmdline(state["pid"]) == SLEEP
    # run releases its init over the handshake channel: no exec.fifo was ever made,
    # and the container is not startable again.
    assert sorted(p.name for p in (ocirt.root / cid).iterdir()) == ["state.json"]
    again = ocirt("start", cid)
    assert again.returncode == 1
    assert "it is running, not created" in again.stderr
    ocirt("delete", "--force", cid, check=True)
    assert wait_for(lambda: not alive(state["pid"]))
    assert not (ocirt.root / cid).exists()
