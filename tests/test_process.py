"""The process plugin: what the container's process is given (rlimits, user, cwd)."""

from __future__ import annotations

from conftest import Bundle, Ocirt, unique_id


def run(ocirt: Ocirt, bundle: Bundle, script: str) -> str:
    bundle.write(args=["sh", "-c", script])
    result = ocirt("run", "--bundle", str(bundle.path), unique_id("proc"))
    assert result.returncode == 0, result.stderr
    return result.stdout


def limits(output: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in output.splitlines()[1:]:
        name, soft, hard = line[:26].strip(), *line[26:].split()[:2]
        rows[name] = (soft, hard)
    return rows


def test_rlimits_seen_in_proc(ocirt: Ocirt, bundle: Bundle) -> None:
    bundle.config["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 1234, "hard": 2345},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        {"type": "RLIMIT_NPROC", "soft": 77, "hard": 88},
    ]
    seen = limits(run(ocirt, bundle, "cat /proc/self/limits"))
    assert seen["Max open files"] == ("1234", "2345")
    assert seen["Max core file size"] == ("0", "0")
    assert seen["Max processes"] == ("77", "88")


def test_user_group_umask_and_cwd(ocirt: Ocirt, bundle: Bundle) -> None:
    bundle.config["process"]["user"] = {
        "uid": 1000,
        "gid": 1001,
        "additionalGids": [1002, 1003],
        "umask": 0o27,
    }
    bundle.config["process"]["cwd"] = "/work/dir"  # created if missing
    out = run(ocirt, bundle, "id -u; id -g; id -G; umask; pwd")
    assert out.split() == ["1000", "1001", "1001", "1002", "1003", "0027", "/work/dir"]


def test_signal_dispositions_are_defaults(ocirt: Ocirt, bundle: Bundle) -> None:
    """Nothing the runtime ignores (Python ignores SIGPIPE) reaches the container."""
    out = run(ocirt, bundle, "grep -E '^Sig(Ign|Blk)' /proc/self/status; yes | head -n 2")
    lines = out.split("\n")
    assert lines[0] == "SigBlk:\t0000000000000000"
    assert lines[1] == "SigIgn:\t0000000000000000"
    assert lines[2:4] == ["y", "y"]
