"""``ocirt exec``: a process joining a live container (real containers, as root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import OCIRT, Bundle, Ocirt, wait_for
from test_lifecycle import alive, create

SLEEP = ["sleep", "60"]


def running(ocirt: Ocirt, bundle: Bundle, cid: str, **changes: object) -> int:
    bundle.write(args=SLEEP, **changes)
    create(ocirt, bundle, cid)
    ocirt("start", cid, check=True)
    return int(ocirt.state(cid)["pid"])


def exec_(ocirt: Ocirt, cid: str, *args: str) -> subprocess.CompletedProcess[str]:
    return ocirt("exec", cid, *args)


def links(pid: int | str) -> dict[str, str]:
    names = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")
    return {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in names}


def test_joins_the_init_namespaces_and_cgroup(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    init = running(ocirt, bundle, cid)
    script = (
        "for n in cgroup ipc mnt net pid user uts; do readlink /proc/self/ns/$n; done; "
        "echo ---; cat /proc/self/cgroup"
    )
    result = exec_(ocirt, cid, "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    ns_part, cgroup_part = result.stdout.split("---\n")
    assert ns_part.split() == list(links(init).values())
    assert cgroup_part == Path(f"/proc/{init}/cgroup").read_text()


def test_is_a_member_of_the_pid_namespace(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    running(ocirt, bundle, cid)
    result = exec_(ocirt, cid, "sh", "-c", "echo $$; ps -o pid,args")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert int(lines[0]) != 1
    assert any(line.split()[:2] == ["1", "sleep"] for line in lines[2:])
    assert any(line.split()[0] == lines[0] for line in lines[2:])


def test_exit_status_is_passed_through(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    running(ocirt, bundle, cid)
    assert exec_(ocirt, cid, "sh", "-c", "exit 7").returncode == 7
    assert exec_(ocirt, cid, "sh", "-c", "kill -9 $$").returncode == 128 + 9


def test_options_after_the_id_belong_to_the_command(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    running(ocirt, bundle, cid)
    result = exec_(ocirt, cid, "echo", "-c", "-e", "-bundle", "--help", "-d")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "-c -e -bundle --help -d\n"


def test_env_cwd_user_overrides(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    running(ocirt, bundle, cid)
    result = ocirt(
        "exec", "-e", "FOO=bar", "--env", "PATH=/bin", "--cwd", "/tmp", "-u", "1000:1001",
        "-g", "5", cid, "sh", "-c", 'echo "$FOO $PATH"; pwd; id -u; id -g; id -G',
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["bar /bin", "/tmp", "1000", "1001", "1001 5"]


def test_process_file_as_engines_send_it(ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path) -> None:
    running(ocirt, bundle, cid)
    process = {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "echo $X; pwd; grep CapEff /proc/self/status; exit 5"],
        "env": ["PATH=/usr/bin:/bin", "X=from-file"],
        "cwd": "/etc",
        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
    }
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    result = ocirt("exec", "--process", str(path), cid)
    assert result.returncode == 5, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["from-file", "/etc"]
    assert lines[2].split() == ["CapEff:", f"{1 << 5:016x}"]


def test_detached_with_pid_file_child_of_a_subreaper(
    ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    running(ocirt, bundle, cid)
    pid_file = tmp_path / "exec.pid"
    helper = tmp_path / "subreaper.py"
    helper.write_text(
        textwrap.dedent(
            """
            import ctypes, json, os, subprocess, sys
            ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
            cmd, pid_file = json.loads(sys.argv[1]), sys.argv[2]
            with open(pid_file + ".err", "w+") as err:
                rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err).returncode
                err.seek(0)
                out = {"rc": rc, "err": err.read(), "self": os.getpid()}
            if rc == 0:
                raw = open(pid_file).read()
                pid = int(raw)
                stat = open(f"/proc/{pid}/stat").read()
                out.update(raw=raw, pid=pid, ppid=int(stat[stat.rfind(")") + 2 :].split()[1]))
                os.kill(pid, 9)
                out["reaped"] = os.waitpid(pid, 0)[0]
            print(json.dumps(out))
            """
        )
    )
    base = [OCIRT, "--root", str(ocirt.root), "--log", str(ocirt.log), "--log-format", "json"]
    cmd = [*base, "exec", "--detach", "--pid-file", str(pid_file), cid, "sleep", "30"]
    result = subprocess.run(
        [sys.executable, str(helper), json.dumps(cmd), str(pid_file)],
        capture_output=True, text=True, timeout=30, env=ocirt.env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["rc"] == 0, out["err"]
    assert out["raw"] == str(out["pid"])  # no newline
    assert out["ppid"] == out["self"]
    assert out["reaped"] == out["pid"]


def test_capabilities_are_the_container_s_or_added(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    init = running(ocirt, bundle, cid)
    status = Path(f"/proc/{init}/status").read_text()
    want = [line for line in status.splitlines() if line.startswith("Cap")]
    result = exec_(ocirt, cid, "grep", "^Cap", "/proc/self/status")
    assert result.stdout.splitlines() == want
    added = ocirt(
        "exec", "--cap", "CAP_SYS_ADMIN", "-c", "net_raw", cid, "grep", "CapEff", "/proc/self/status"
    )
    assert added.returncode == 0, added.stderr
    eff = int(added.stdout.split()[1], 16)
    assert eff & (1 << 21) and eff & (1 << 13)


def test_seccomp_applies(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }
    running(ocirt, bundle, cid)
    result = exec_(ocirt, cid, "sh", "-c", "grep '^Seccomp:' /proc/self/status; mkdir /tmp/x")
    assert result.stdout.split()[:2] == ["Seccomp:", "2"]
    assert result.returncode != 0
    assert "not permitted" in result.stderr.lower()


def test_missing_and_non_executable_binaries(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    running(ocirt, bundle, cid)
    missing = exec_(ocirt, cid, "no-such-binary")
    assert missing.returncode != 0
    assert "no such file or directory" in missing.stderr
    denied = exec_(ocirt, cid, "/etc/passwd")
    assert denied.returncode != 0
    assert "permission denied" in denied.stderr


def test_refused_into_stopped_paused_or_missing(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    init = running(ocirt, bundle, cid)
    missing = exec_(ocirt, "no-such-container", "true")
    assert missing.returncode != 0
    assert "no-such-container" in missing.stderr
    ocirt("kill", cid, "KILL", check=True)
    assert wait_for(lambda: not alive(init))
    stopped = exec_(ocirt, cid, "true")
    assert stopped.returncode != 0
    assert "stopped" in stopped.stderr


def test_exec_in_a_created_container(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    bundle.write(args=SLEEP)
    create(ocirt, bundle, cid)
    result = exec_(ocirt, cid, "sh", "-c", "echo ok")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
    assert ocirt.state(cid)["status"] == "created"


def test_no_runtime_fd_reaches_the_process(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    running(ocirt, bundle, cid)
    result = ocirt("exec", cid, "ls", "/proc/self/fd", stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert sorted(int(fd) for fd in result.stdout.split()) == [0, 1, 2, 3]  # 3: ls's own directory


def test_detached_returns_while_the_process_runs(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    running(ocirt, bundle, cid)
    result = ocirt.detached("exec", "-d", cid, "sleep", "30")
    assert result.returncode == 0, result.stderr
    ps = exec_(ocirt, cid, "ps", "-o", "pid,args")
    assert "sleep 30" in ps.stdout


def test_refused_into_a_paused_container(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    running(ocirt, bundle, cid)
    ocirt("pause", cid, check=True)
    try:
        paused = exec_(ocirt, cid, "true")
        assert paused.returncode != 0
        assert "paused" in paused.stderr
    finally:
        ocirt("resume", cid, check=True)
    assert exec_(ocirt, cid, "true").returncode == 0


WATCHER = r"""
sleep 600 &
while :; do
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = "$$" ] && continue
    if t=$(readlink $p/exe) && cat $p/exe >/dev/null 2>&1; then
      if [ "$t" = /bin/busybox ]; then echo . >> /dev/shm/opened; else echo "exe $t" >> /dev/shm/leaks; fi
    fi
    for f in $p/fd/* $p/cwd; do
      t=$(readlink $f 2>/dev/null) || continue
      case $t in /work*|/root*|*python*|*ocirt*) echo "fd $t" >> /dev/shm/leaks;; esac
    done
  done
done
"""


def test_proc_of_the_joining_process_is_out_of_reach(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    """A container process scanning /proc during execs opens no runtime executable, fd or cwd
    (the joining process is not dumpable until it execs the container's binary)."""
    bundle.write(args=["sh", "-c", WATCHER])
    create(ocirt, bundle, cid)
    ocirt("start", cid, check=True)
    for _ in range(25):
        assert exec_(ocirt, cid, "true").returncode == 0
    leaks = exec_(ocirt, cid, "sh", "-c", "cat /dev/shm/leaks 2>/dev/null || true")
    assert leaks.returncode == 0 and leaks.stdout == "", leaks
    opened = exec_(ocirt, cid, "wc", "-l", "/dev/shm/opened")
    assert int(opened.stdout.split()[0]) > 0  # the watcher can open an exe when allowed: the check works
