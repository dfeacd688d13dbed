"""Bad configs, bad ids, commands in the wrong state: a clear error and nothing left behind.

Each failure must give one line on stderr, a non-zero exit status and a JSON
error line in the ``--log`` file, as engines read them. A failed ``create``
must leave no state directory, no process and no mount.

Processes are found by a marker: every ocirt call of a test gets a unique
environment variable, and so does the container process (``process.env``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import OCIRT, Bundle, Ocirt, wait_for

SLEEP = ["sleep", "30"]
MARKER = "BAD_INPUT_TEST_MARKER"
TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _nofile_hard_limit() -> int:
    for line in Path("/proc/self/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[4])
    raise AssertionError("no 'Max open files' in /proc/self/limits")


def _has_cap_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << 24))
    return False


#: Raising RLIMIT_NOFILE's hard limit to 30000 needs CAP_SYS_RESOURCE when it is above ours.
NOFILE_HARD = _nofile_hard_limit()
RAISE_NOFILE_FAILS = NOFILE_HARD < 30000 and not _has_cap_sys_resource()
needs_nofile_below_30000 = pytest.mark.skipif(
    not RAISE_NOFILE_FAILS, reason=f"RLIMIT_NOFILE hard {NOFILE_HARD} or CAP_SYS_RESOURCE: 30000 is allowed"
)


def alive(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return raw[raw.rfind(")") + 2 :].split()[0] not in ("Z", "X")


class Probe:
    """Runs ocirt for one test with a marker in the environment, and checks the aftermath."""

    def __init__(self, ocirt: Ocirt, bundle: Bundle, tmp_path: Path) -> None:
        self.ocirt = ocirt
        self.bundle = bundle
        self.tmp_path = tmp_path
        self.marker = f"{MARKER}={uuid.uuid4().hex}"
        self.env = {**ocirt.env, MARKER: self.marker.split("=", 1)[1]}
        self.bundle.config["process"]["env"].append(self.marker)
        self.bundle.write()

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``ocirt --root R --log L --log-format json ARGS``, stdio in files.

        A container created by the call inherits stdout and stderr (as with runc):
        with pipes, waiting for end-of-file would wait for the container to exit.
        """
        cmd = [OCIRT, "--root", str(self.ocirt.root), "--log", str(self.ocirt.log), "--log-format", "json"]
        cmd += args
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            returncode = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=30, env=self.env
            ).returncode
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(cmd, returncode, out.read(), err.read())

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self(*args)
        assert result.returncode == 0, f"{args}: {result.stderr}"
        return result

    def create(self, cid: str) -> int:
        """Create a container from the bundle; return its init's pid."""
        self.ok("create", "--bundle", str(self.bundle.path), cid)
        state = self.ocirt.state(cid)
        assert state["status"] == "created"
        pid = int(state["pid"])
        assert pid in self.processes()  # what assert_nothing_left looks for is there
        return pid

    def fail(self, *args: str, expect: tuple[str, ...] = ()) -> str:
        """Run a command that must fail; check how it reports; return the message."""
        errors_before = len(self.errors())
        result = self(*args)
        assert result.returncode != 0, f"{args} succeeded: {result.stdout}"
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, f"not one line on stderr: {result.stderr!r}"
        assert lines[0].startswith("ocirt: "), lines[0]
        message = lines[0].removeprefix("ocirt: ")
        for fragment in expect:
            assert fragment in message, f"{fragment!r} not in {message!r}"
        errors = self.errors()
        assert len(errors) == errors_before + 1, errors
        assert set(errors[-1]) == {"level", "msg", "time"}
        assert errors[-1]["msg"] == message
        assert TIME_RE.fullmatch(errors[-1]["time"]), errors[-1]["time"]
        return message

    def errors(self) -> list[dict[str, Any]]:
        return [line for line in self.ocirt.log_lines() if line.get("level") == "error"]

    def processes(self) -> list[int]:
        """Live processes carrying this test's marker (ocirt's or the container's)."""
        needle = self.marker.encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0") and alive(int(entry)):
                found.append(int(entry))
        return found

    def mounts(self) -> list[str]:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
        return [line for line in lines if str(self.tmp_path) in line]

    def assert_nothing_left(self) -> None:
        assert self.ocirt.ids() == [], "state directory left behind"
        assert wait_for(lambda: self.processes() == [], timeout=3), f"processes left: {self.processes()}"
        assert self.mounts() == [], "mounts left behind"


@pytest.fixture
def probe(ocirt: Ocirt, bundle: Bundle, tmp_path: Path) -> Probe:
    return Probe(ocirt, bundle, tmp_path)


def namespaces(bundle: Bundle) -> list[dict[str, Any]]:
    return bundle.config["linux"]["namespaces"]  # type: ignore[no-any-return]


# ------------------------------------------------------------ bad create input


def _no_config(b: Bundle) -> None:
    (b.path / "config.json").unlink()


def _malformed(b: Bundle) -> None:
    (b.path / "config.json").write_text('{"ociVersion": "1.2.0", "process": ')


def _missing_colon(b: Bundle) -> None:
    (b.path / "config.json").write_text('{"ociVersion" "1.2.0"}')


def _unclosed_object(b: Bundle) -> None:
    (b.path / "config.json").write_text("{\n")


def _ociversion_2(b: Bundle) -> None:
    b.write(ociVersion="2.0.0")


def _relative_cwd(b: Bundle) -> None:
    b.config["process"]["cwd"] = "tmp"
    b.write()


def _relative_mount(b: Bundle) -> None:
    b.config["mounts"].append({"destination": "relative", "type": "tmpfs", "source": "tmpfs"})
    b.write()


def _unknown_namespace(b: Bundle) -> None:
    namespaces(b).append({"type": "bogus"})
    b.write()


def _duplicate_namespace(b: Bundle) -> None:
    namespaces(b).append({"type": "pid"})
    b.write()


def _missing_executable(b: Bundle) -> None:
    b.write(args=["/bin/no-such-program"])


def _missing_from_path(b: Bundle) -> None:
    b.write(args=["no-such-program"])


def _not_executable(b: Bundle) -> None:
    (b.rootfs / "bin" / "plain-file").write_text("#!/bin/sh\necho hi\n")
    (b.rootfs / "bin" / "plain-file").chmod(0o644)
    b.write(args=["/bin/plain-file"])


def _missing_bind_source(b: Bundle) -> None:
    source = str(b.path / "no-such-source")
    b.config["mounts"].append({"destination": "/mnt", "type": "bind", "source": source, "options": ["rbind"]})
    b.write()


def _rlimit_above_hard(b: Bundle) -> None:
    b.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 30000}]
    b.write()


def _root_cgroup(b: Bundle) -> None:
    b.config["linux"]["cgroupsPath"] = "/"
    b.write()


BAD_CONFIGS = {
    "no config.json": (_no_config, ("config.json", "no such file or directory")),
    "malformed json": (_malformed, ("config.json", "not valid JSON")),
    "json without a colon": (_missing_colon, ("config.json", "not valid JSON", "Expecting ':' delimiter")),
    "unclosed json object": (_unclosed_object, ("config.json", "not valid JSON", "line 2 column 1")),
    "ociVersion 2.0.0": (_ociversion_2, ("ociVersion", "2.0.0", "not supported")),
    "relative process.cwd": (_relative_cwd, ("process.cwd", "absolute path", "'tmp'")),
    "relative mount destination": (_relative_mount, ("destination", "absolute path", "'relative'")),
    "unknown namespace": (_unknown_namespace, ("linux.namespaces", "unknown namespace type", "bogus")),
    "duplicate namespace": (_duplicate_namespace, ("linux.namespaces", "'pid'", "twice")),
    "missing executable": (_missing_executable, ("/bin/no-such-program", "no such file or directory")),
    "missing from PATH": (_missing_from_path, ("no-such-program", "no such file or directory")),
    "not executable": (_not_executable, ("/bin/plain-file", "permission denied")),
    "missing bind source": (_missing_bind_source, ("mounts[", "no-such-source", "no such file or directory")),
    "rlimit above hard limit": (_rlimit_above_hard, ("RLIMIT_NOFILE", "30000")),
    "the root cgroup": (_root_cgroup, ("cgroupsPath", "'/'", "does not name a cgroup of its own")),
}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, marks=[needs_nofile_below_30000] if case.startswith("rlimit") else [])
        for case in BAD_CONFIGS
    ],
)
def test_bad_config_fails_cleanly(probe: Probe, bundle: Bundle, cid: str, case: str) -> None:
    spoil, expect = BAD_CONFIGS[case]
    spoil(bundle)
    probe.fail("create", "--bundle", str(bundle.path), cid, expect=expect)
    probe.assert_nothing_left()
    assert probe.ocirt("state", cid).returncode != 0


@pytest.mark.parametrize(
    "case",
    [
        "missing bind source",
        "missing executable",
        pytest.param("rlimit above hard limit", marks=needs_nofile_below_30000),
    ],
)
def test_bad_config_fails_run_cleanly(probe: Probe, bundle: Bundle, cid: str, case: str) -> None:
    spoil, expect = BAD_CONFIGS[case]
    spoil(bundle)
    probe.fail("run", "--bundle", str(bundle.path), cid, expect=expect)
    probe.assert_nothing_left()


@needs_nofile_below_30000
def test_rlimit_error_names_both_limits(probe: Probe, bundle: Bundle, cid: str) -> None:
    _rlimit_above_hard(bundle)
    message = probe.fail("create", "--bundle", str(bundle.path), cid)
    assert message.startswith("setting RLIMIT_NOFILE to soft 1024 hard 30000: ")
    assert "not allowed to raise maximum limit" in message
    assert f"hard {NOFILE_HARD}" in message  # the runtime's own limit, to compare
    probe.assert_nothing_left()


def test_pid_file_in_missing_directory(probe: Probe, bundle: Bundle, cid: str, tmp_path: Path) -> None:
    """Fails after the init exists and the state says created: all of it is undone."""
    bundle.write(args=SLEEP)
    pid_file = tmp_path / "no-such-dir" / "init.pid"
    args = ["create", "--bundle", str(bundle.path), "--pid-file", str(pid_file), cid]
    probe.fail(*args, expect=("no-such-dir", "no such file or directory"))
    assert not pid_file.parent.exists()
    probe.assert_nothing_left()


def test_a_good_create_after_a_failed_one(probe: Probe, bundle: Bundle, cid: str) -> None:
    """The failed create released the id: the same id works with a fixed config."""
    _missing_bind_source(bundle)
    probe.fail("create", "--bundle", str(bundle.path), cid)
    bundle.config["mounts"].pop()
    bundle.write(args=SLEEP)
    pid = probe.create(cid)
    assert alive(pid)
    probe.ok("delete", "--force", cid)
    probe.assert_nothing_left()


# -------------------------------------------------------------------- bad ids


@pytest.mark.parametrize("bad_id", ["a/b", "..", ".", "../escape", "/abs", "x/../y", "sp ace", ""])
def test_invalid_id(probe: Probe, bundle: Bundle, tmp_path: Path, bad_id: str) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    probe.fail("create", "--bundle", str(bundle.path), bad_id, expect=("invalid container id",))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, probe.ocirt.log.name])
    assert not (tmp_path / "escape").exists()
    probe.assert_nothing_left()


@pytest.mark.parametrize("command", ["state", "start", "delete", "kill"])
def test_invalid_id_other_commands(probe: Probe, command: str) -> None:
    probe.fail(command, "../escape", expect=("invalid container id",))


def test_duplicate_id(probe: Probe, bundle: Bundle, cid: str) -> None:
    bundle.write(args=SLEEP)
    pid = probe.create(cid)
    before = probe.ocirt.state(cid)
    stat_before = Path(f"/proc/{pid}/stat").read_text().split()[21]

    probe.fail("create", "--bundle", str(bundle.path), cid, expect=("already exists", cid))

    assert probe.ocirt.state(cid) == before
    assert alive(pid)
    assert Path(f"/proc/{pid}/stat").read_text().split()[21] == stat_before
    assert (probe.ocirt.root / cid / "exec.fifo").exists()
    # ... and it still starts.
    probe.ok("start", cid)
    assert probe.ocirt.state(cid)["status"] == "running"
    assert probe.ocirt.state(cid)["pid"] == pid
    probe.ok("delete", "--force", cid)
    probe.assert_nothing_left()


# ------------------------------------------------------- commands in the wrong state


def test_start_running_container(probe: Probe, bundle: Bundle, cid: str) -> None:
    bundle.write(args=SLEEP)
    pid = probe.create(cid)
    probe.ok("start", cid)
    probe.fail("start", cid, expect=(cid, "running", "not created"))
    assert probe.ocirt.state(cid)["status"] == "running"
    assert probe.ocirt.state(cid)["pid"] == pid
    assert alive(pid)


def test_start_twice_after_exit(probe: Probe, bundle: Bundle, cid: str) -> None:
    bundle.write(args=["true"])
    probe.create(cid)
    probe.ok("start", cid)
    assert wait_for(lambda: probe.ocirt.state(cid)["status"] == "stopped")
    probe.fail("start", cid, expect=(cid, "stopped", "not created"))
    assert probe.ocirt.state(cid)["status"] == "stopped"


@pytest.mark.parametrize("status", ["created", "running"])
def test_delete_without_force_refused(probe: Probe, bundle: Bundle, cid: str, status: str) -> None:
    bundle.write(args=SLEEP)
    pid = probe.create(cid)
    if status == "running":
        probe.ok("start", cid)
    before = probe.ocirt.state(cid)
    assert before["status"] == status

    probe.fail("delete", cid, expect=(cid, status, "--force"))

    assert probe.ocirt.state(cid) == before
    assert alive(pid)
    assert (probe.ocirt.root / cid / "state.json").exists()
    probe.ok("delete", "--force", cid)
    assert wait_for(lambda: not alive(pid))
    probe.assert_nothing_left()


def test_delete_force_unknown_id(probe: Probe) -> None:
    result = probe("delete", "--force", "no-such-container")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert probe.errors() == []


@pytest.mark.parametrize("command", ["state", "start", "delete", "kill"])
def test_unknown_id(probe: Probe, command: str) -> None:
    probe.fail(command, "no-such-container", expect=("no-such-container", "does not exist"))
    assert probe.ocirt.ids() == []


@pytest.mark.parametrize("signal", ["NOPE", "SIGNOPE", "0", "65", "9x"])
def test_kill_invalid_signal(probe: Probe, bundle: Bundle, cid: str, signal: str) -> None:
    bundle.write(args=SLEEP)
    pid = probe.create(cid)
    probe.ok("start", cid)
    probe.fail("kill", cid, signal, expect=("invalid signal", signal))
    assert probe.ocirt.state(cid)["status"] == "running"
    assert alive(pid)


def test_config_without_process(probe: Probe, bundle: Bundle, cid: str) -> None:
    del bundle.config["process"]
    bundle.write()
    pid = probe.create(cid)
    assert alive(pid)

    message = probe.fail("start", cid, expect=(cid, "process"))
    assert "config.json" in message
    assert probe.ocirt.state(cid)["status"] == "created"
    assert alive(pid)

    probe.ok("delete", "--force", cid)
    assert wait_for(lambda: not alive(pid))
    probe.assert_nothing_left()


def test_run_without_process(probe: Probe, bundle: Bundle, cid: str) -> None:
    del bundle.config["process"]
    bundle.write()
    probe.fail("run", "--bundle", str(bundle.path), cid, expect=(cid, "process"))
    probe.assert_nothing_left()


def test_kill_stopped_container(probe: Probe, bundle: Bundle, cid: str) -> None:
    bundle.write(args=["true"])
    probe.create(cid)
    probe.ok("start", cid)
    assert wait_for(lambda: probe.ocirt.state(cid)["status"] == "stopped")
    probe.fail("kill", cid, "KILL", expect=(cid, "not running"))
    assert probe.ocirt.state(cid)["status"] == "stopped"
    probe.ok("delete", cid)
    probe.assert_nothing_left()


def test_bad_input_reports_through_text_log(probe: Probe, bundle: Bundle, cid: str, tmp_path: Path) -> None:
    """--log-format text (runc's default) keeps one line per error too."""
    log = tmp_path / "text.log"
    _ociversion_2(bundle)
    result = subprocess.run(
        [OCIRT, "--root", str(probe.ocirt.root), "--log", str(log), "create", "-b", str(bundle.path), cid],
        capture_output=True,
        text=True,
        timeout=30,
        env=probe.env,
    )
    assert result.returncode != 0
    assert len(result.stderr.splitlines()) == 1
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r'time="[^"]+" level=error msg=".*ociVersion.*"', lines[0]), lines[0]
    probe.assert_nothing_left()


def test_error_without_log_file(probe: Probe, bundle: Bundle, cid: str) -> None:
    result = subprocess.run(
        [OCIRT, "--root", str(probe.ocirt.root), "state", cid], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert result.stderr == f"ocirt: container {cid!r} does not exist\n"


def test_unknown_command_and_option(probe: Probe) -> None:
    for args in (["frobnicate"], ["create", "--no-such-option", "x"]):
        result = probe(*args)
        assert result.returncode != 0, args
        assert result.stdout == ""
        assert probe.ocirt.ids() == []


def test_json_log_is_appended(probe: Probe) -> None:
    probe.fail("state", "first-missing")
    probe.fail("state", "second-missing")
    messages = [e["msg"] for e in probe.errors()]
    assert len(messages) == 2
    assert "first-missing" in messages[0]
    assert "second-missing" in messages[1]
    for line in probe.ocirt.log.read_text().splitlines():
        json.loads(line)
