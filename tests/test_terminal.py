"""``process.terminal`` with real containers: the engine's console socket and ``run``'s relay.

The tests play the engine's part as containerd's shim does: listen on a unix
socket, pass it as ``--console-socket``, receive the pty master with
``recv_fds``, then ``start`` and talk to the container through the master. A
foreground ``run`` is given a pseudo-terminal of the test's as its stdin and
stdout, like a user's terminal.
"""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import OCIRT, REPO, Bundle, Ocirt, default_config, unique_id, wait_for
from test_namespaces import UNPRIVILEGED, Rootless, _unprivileged_python, give_rootfs, rootless_config

TIOCGPTN = 0x80045430
PYTHON = str(REPO / ".venv" / "bin" / "python")


# ---------------------------------------------------------------------- helpers


class Engine:
    """The engine's side: a listening console socket that receives one master."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.listener.settimeout(10)
        self.masters: list[int] = []

    def receive(self) -> tuple[bytes, int]:
        """(the name sent with it, the master fd), as one SCM_RIGHTS message."""
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(10)
            name, fds, _, _ = socket.recv_fds(conn, 4096, 4)
        assert len(fds) == 1, fds
        self.masters.append(fds[0])
        return name, fds[0]

    def close(self) -> None:
        self.listener.close()
        for fd in self.masters:
            os.close(fd)


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short private directory (sun_path holds 108 bytes), as engines use."""
    path = Path(tempfile.mkdtemp(prefix="ocirt-tty-"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture
def engine(sockdir: Path) -> Iterator[Engine]:
    listening = Engine(sockdir / "console.sock")
    try:
        yield listening
    finally:
        listening.close()


def with_terminal(bundle: Bundle, script: str, **process: object) -> Bundle:
    bundle.config["process"].update(terminal=True, **process)
    return bundle.write(args=["sh", "-c", script])


def read_until(fd: int, want: bytes | None = None, timeout: float = 10) -> bytes:
    """What a pty master gives until ``want`` appears or its slave closes (EIO)."""
    out = b""
    deadline = time.monotonic() + timeout
    while want is None or want not in out:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {want!r}; got {out!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every process holding the slave is gone
            chunk = b""
        if not chunk:
            assert want is None, f"terminal closed before {want!r}; got {out!r}"
            break
        out += chunk
    return out


def lines(out: bytes) -> list[str]:
    """Output lines as a terminal delivers them (onlcr turns \\n into \\r\\n)."""
    return out.decode().split("\r\n")


def create_with(ocirt: Ocirt, bundle: Bundle, cid: str, engine: Engine) -> int:
    """``create --console-socket``, then the master the engine received."""
    result = ocirt("create", "--bundle", str(bundle.path), "--console-socket", str(engine.path), cid)
    assert result.returncode == 0, result.stderr
    name, master = engine.receive()
    assert name == b"/dev/ptmx"  # runc's payload
    return master


def winsize(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8)))
    return rows, cols


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def refused(ocirt: Ocirt, *args: str, expect: tuple[str, ...]) -> str:
    result = ocirt(*args)
    assert result.returncode != 0
    for fragment in expect:
        assert fragment in result.stderr, result.stderr
    assert ocirt.ids() == []  # rolled back
    return result.stderr


# -------------------------------------------------- the engine's console socket


def test_engine_receives_the_master_and_drives_the_container(
    ocirt: Ocirt, bundle: Bundle, cid: str, engine: Engine
) -> None:
    script = (
        "tty; stty size; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-ttys; "
        "for fd in 0 1 2; do readlink /proc/self/fd/$fd; done; "
        'echo ctty > /dev/tty; read line; echo "got:$line"'
    )
    with_terminal(bundle, script, consoleSize={"height": 25, "width": 91})
    master = create_with(ocirt, bundle, cid, engine)
    assert winsize(master) == (25, 91)  # applied before start

    ocirt("start", cid, check=True)
    out = read_until(master, b"ctty\r\n")
    os.write(master, b"hello\n")
    out += read_until(master)

    assert lines(out) == [
        "/dev/pts/0",
        "25 91",
        "all-ttys",
        *["/dev/pts/0"] * 3,
        "ctty",  # /dev/tty opens: the pty is the controlling terminal
        "hello",  # echoed by the pty
        "got:hello",
        "",
    ]
    assert wait_for(lambda: ocirt.state(cid)["status"] == "stopped")


def test_the_pty_is_in_the_containers_own_devpts(
    ocirt: Ocirt, bundle: Bundle, cid: str, engine: Engine
) -> None:
    with_terminal(bundle, "ls /dev/pts; echo via-console > /dev/console")
    master = create_with(ocirt, bundle, cid, engine)
    # The master belongs to the container's devpts instance, not to the host's.
    assert os.fstat(master).st_dev != os.stat("/dev/pts").st_dev
    assert struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, bytes(4))) == (0,)
    ocirt("start", cid, check=True)
    out = lines(read_until(master))
    assert out[0].split() == ["0", "ptmx"]  # no host terminal in view
    assert out[1] == "via-console"  # /dev/console is the pty, as with runc


def test_terminal_belongs_to_the_process_user(ocirt: Ocirt, bundle: Bundle, cid: str, engine: Engine) -> None:
    with_terminal(
        bundle, "id -u; stat -c '%u %g' /dev/pts/0; echo mine > /dev/tty", user={"uid": 1000, "gid": 1000}
    )
    master = create_with(ocirt, bundle, cid, engine)
    ocirt("start", cid, check=True)
    assert lines(read_until(master))[:3] == ["1000", "1000 5", "mine"]  # the group is devpts' gid=5


def test_run_detached_sends_the_master(ocirt: Ocirt, bundle: Bundle, cid: str, engine: Engine) -> None:
    with_terminal(bundle, "read line; echo got:$line")
    result = ocirt.detached(
        "run", "-d", "--bundle", str(bundle.path), "--console-socket", str(engine.path), cid
    )
    assert result.returncode == 0, result.stderr
    _, master = engine.receive()
    os.write(master, b"x\n")
    assert "got:x" in lines(read_until(master))


def test_long_console_socket_path(ocirt: Ocirt, bundle: Bundle, cid: str, sockdir: Path) -> None:
    """A path longer than sun_path (engines' temp dirs can be deep) is reached through its directory."""
    deep = sockdir / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    here = os.getcwd()
    os.chdir(deep)  # bind by a short relative path
    try:
        engine = Engine(Path("console.sock"))
    finally:
        os.chdir(here)
    engine.path = deep / "console.sock"
    assert len(str(engine.path)) > 108
    try:
        with_terminal(bundle, "tty")
        master = create_with(ocirt, bundle, cid, engine)
        ocirt("start", cid, check=True)
        assert lines(read_until(master))[0] == "/dev/pts/0"
    finally:
        engine.close()


@pytest.fixture
def open_bundle(rootfs_template: Path) -> Iterator[Bundle]:
    """A bundle the ids of a user namespace can reach (pytest's tmp dirs are 0700)."""
    top = Path(tempfile.mkdtemp(prefix="ocirt-tty-ns-"))
    try:
        top.chmod(0o755)
        shutil.copytree(rootfs_template, top / "bundle" / "rootfs", symlinks=True)
        yield Bundle(top / "bundle", default_config()).write()
    finally:
        shutil.rmtree(top)


def test_user_namespace_with_a_socket_its_root_cannot_reach(
    ocirt: Ocirt, open_bundle: Bundle, cid: str, engine: Engine
) -> None:
    """The socket is connected before the user namespace: container root (host 100000)
    could not even traverse the engine's 0700 directory."""
    assert os.stat(engine.path.parent).st_mode & 0o777 == 0o700
    open_bundle.config["linux"]["namespaces"].append({"type": "user"})
    for key in ("uidMappings", "gidMappings"):
        open_bundle.config["linux"][key] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    with_terminal(open_bundle, "tty; stat -c %u /dev/pts/0; cat /proc/self/uid_map")
    master = create_with(ocirt, open_bundle, cid, engine)
    ocirt("start", cid, check=True)
    out = lines(read_until(master))
    assert out[:2] == ["/dev/pts/0", "0"]
    assert out[2].split() == ["0", "100000", "65536"]


@pytest.fixture
def rootless(open_bundle: Bundle) -> Iterator[Rootless]:
    """test_namespaces' runner of ocirt as an unprivileged user, for ``open_bundle``."""
    python = _unprivileged_python()
    if python is None:
        pytest.skip(f"no Python >= 3.11 that uid {UNPRIVILEGED} can start")
    runner = Rootless(python, open_bundle.path.parent)
    os.chown(open_bundle.path, UNPRIVILEGED, UNPRIVILEGED)  # `ocirt spec` writes config.json there
    yield runner
    for cid in runner.ids():
        runner("delete", "--force", cid)
    assert runner.ids() == []


def test_rootless_foreground_run(rootless: Rootless, open_bundle: Bundle) -> None:
    """Without root: a user namespace of one id, devpts without gid=, the runtime's own socket."""
    give_rootfs(open_bundle, UNPRIVILEGED)
    script = "tty; stat -c %u /dev/pts/0; read line; echo got:$line"
    config = rootless_config(rootless, open_bundle, ["sh", "-c", script])
    config["process"]["terminal"] = True
    Bundle(open_bundle.path, config).write()
    result = subprocess.run(
        [*rootless.command, "run", "--bundle", str(open_bundle.path), "rootless-tty"],
        input="hi\n", capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert {"/dev/pts/0", "0", "got:hi"} <= set(result.stdout.splitlines())


# ------------------------------------------------------------------------ exec


def running_sleeper(ocirt: Ocirt, bundle: Bundle, cid: str) -> int:
    bundle.write(args=["sleep", "60"])
    result = ocirt.detached("run", "-d", "--bundle", str(bundle.path), cid)
    assert result.returncode == 0, result.stderr
    return int(ocirt.state(cid)["pid"])


def test_exec_tty_through_a_console_socket(ocirt: Ocirt, bundle: Bundle, cid: str, engine: Engine) -> None:
    """As containerd's shim and conmon call it: ``exec --tty --console-socket S``, in the foreground."""
    init = running_sleeper(ocirt, bundle, cid)
    script = "tty; echo ctty > /dev/tty; readlink /proc/self/ns/mnt; read x; echo got:$x; exit 3"
    cmd = [OCIRT, "--root", str(ocirt.root), "exec", "-t", "--console-socket", str(engine.path), cid]
    proc = subprocess.Popen([*cmd, "sh", "-c", script], stdin=subprocess.DEVNULL)
    try:
        name, master = engine.receive()
        assert name == b"/dev/ptmx"
        assert os.fstat(master).st_dev != os.stat("/dev/pts").st_dev  # the container's devpts
        out = read_until(master, b"]\r\n")  # all but the echo, which must come after
        os.write(master, b"yes\n")
        out += read_until(master)
        assert proc.wait(timeout=10) == 3  # the process's status
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert lines(out) == ["/dev/pts/0", "ctty", os.readlink(f"/proc/{init}/ns/mnt"), "yes", "got:yes", ""]


def test_exec_detached_tty_is_a_child_of_the_engine(
    ocirt: Ocirt, bundle: Bundle, cid: str, engine: Engine, sockdir: Path
) -> None:
    running_sleeper(ocirt, bundle, cid)
    pid_file = sockdir / "exec.pid"
    result = ocirt.detached(
        "exec", "-d", "-t", "--console-socket", str(engine.path), "--pid-file", str(pid_file),
        cid, "sh", "-c", "read x; echo got:$x",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    _, master = engine.receive()
    pid = int(pid_file.read_text())
    assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sh\0")
    os.write(master, b"z\n")
    assert "got:z" in lines(read_until(master))


def test_exec_tty_in_the_foreground_relays_the_callers_terminal(
    ocirt: Ocirt, bundle: Bundle, cid: str
) -> None:
    """``ocirt exec -t`` at a shell: the runtime makes the socket and relays, as ``run`` does."""
    running_sleeper(ocirt, bundle, cid)
    user_master, user_slave = os.openpty()
    set_winsize(user_slave, 30, 100)
    cmd = [
        OCIRT,
        "--root",
        str(ocirt.root),
        "exec",
        "-t",
        cid,
        "sh",
        "-c",
        "tty; stty size; read x; echo got:$x",
    ]
    proc = subprocess.Popen(cmd, stdin=user_slave, stdout=user_slave, stderr=user_slave)
    os.close(user_slave)
    try:
        out = read_until(user_master, b"30 100")
        os.write(user_master, b"typed\n")
        out += read_until(user_master, b"got:typed")
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(user_master)
    assert "/dev/pts/0" in lines(out)
    assert not list(Path(os.environ.get("TMPDIR") or "/tmp").glob("ocirt-console-*"))  # its socket is gone


def test_exec_tty_refusals(ocirt: Ocirt, bundle: Bundle, cid: str, engine: Engine) -> None:
    running_sleeper(ocirt, bundle, cid)
    detached = ocirt.detached("exec", "-d", "-t", cid, "true")
    assert detached.returncode != 0
    assert "--tty needs --console-socket" in detached.stderr
    no_tty = ocirt.detached("exec", "--console-socket", str(engine.path), cid, "true")
    assert no_tty.returncode != 0
    assert "--console-socket" in no_tty.stderr


# ------------------------------------------------------------------- refusals


def test_missing_console_socket(ocirt: Ocirt, bundle: Bundle, cid: str, sockdir: Path) -> None:
    with_terminal(bundle, "true")
    missing = sockdir / "nothing-here.sock"
    refused(
        ocirt, "create", "--bundle", str(bundle.path), "--console-socket", str(missing), cid,
        expect=(f"console socket {missing}", "no such file or directory"),
    )  # fmt: skip


def test_console_socket_nobody_listens_on(ocirt: Ocirt, bundle: Bundle, cid: str, sockdir: Path) -> None:
    with_terminal(bundle, "true")
    path = sockdir / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound, never listening: connect is refused
    try:
        refused(
            ocirt, "create", "--bundle", str(bundle.path), "--console-socket", str(path), cid,
            expect=(f"console socket {path}", "connection refused"),
        )  # fmt: skip
    finally:
        stale.close()


def test_console_socket_that_is_a_file(ocirt: Ocirt, bundle: Bundle, cid: str, sockdir: Path) -> None:
    with_terminal(bundle, "true")
    path = sockdir / "plain-file"
    path.write_text("")
    refused(
        ocirt, "create", "--bundle", str(bundle.path), "--console-socket", str(path), cid,
        expect=(f"console socket {path}", "not a socket"),
    )  # fmt: skip


@pytest.mark.parametrize("command", [["create"], ["run", "-d"], ["run", "--detach"]])
def test_detached_terminal_needs_a_console_socket(
    ocirt: Ocirt, bundle: Bundle, cid: str, command: list[str]
) -> None:
    with_terminal(bundle, "true")
    refused(
        ocirt, *command, "--bundle", str(bundle.path), cid, expect=("process.terminal", "--console-socket")
    )


def test_console_socket_without_terminal(ocirt: Ocirt, bundle: Bundle, cid: str, engine: Engine) -> None:
    """An engine would wait forever for a master: refused, as runc does."""
    refused(
        ocirt, "create", "--bundle", str(bundle.path), "--console-socket", str(engine.path), cid,
        expect=("process.terminal", "--console-socket"),
    )  # fmt: skip


def test_terminal_without_the_terminal_plugin(ocirt: Ocirt, bundle: Bundle, cid: str, engine: Engine) -> None:
    with_terminal(bundle, "true")
    socket_option = ["--console-socket", str(engine.path)]
    refused(
        ocirt, "-p", "no:terminal", "create", "--bundle", str(bundle.path), *socket_option, cid,
        expect=("process.terminal", "no loaded plugin provides terminals"),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("size", "field"),
    [
        ([25, 80], "process.consoleSize"),
        ({"height": -1, "width": 80}, "process.consoleSize.height"),
        ({"height": 25, "width": "80"}, "process.consoleSize.width"),
    ],
)
def test_bad_console_size(
    ocirt: Ocirt, bundle: Bundle, cid: str, engine: Engine, size: object, field: str
) -> None:
    with_terminal(bundle, "true", consoleSize=size)
    refused(
        ocirt, "create", "--bundle", str(bundle.path), "--console-socket", str(engine.path), cid,
        expect=(field,),
    )  # fmt: skip


# ------------------------------------------------ foreground run: the relay


def console_dirs() -> set[str]:
    base = os.environ.get("TMPDIR") or "/tmp"
    return {name for name in os.listdir(base) if name.startswith("ocirt-console-")}


def test_foreground_run_relays_the_users_terminal(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    with_terminal(
        bundle,
        'tty; stty size; while read line; do [ "$line" = q ] && exit 3; stty size; done',
        consoleSize={"height": 25, "width": 91},  # the user's size wins, as with runc
    )
    before_dirs = console_dirs()
    user, user_slave = os.openpty()
    set_winsize(user_slave, 33, 101)
    cooked = termios.tcgetattr(user_slave)

    def take_as_controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [OCIRT, "--root", str(ocirt.root), "run", "--bundle", str(bundle.path), cid],
        stdin=user_slave, stdout=user_slave, stderr=user_slave, env=ocirt.env,
        start_new_session=True, preexec_fn=take_as_controlling_terminal,
    )  # fmt: skip
    try:
        out = read_until(user, b"33 101\r\n")
        assert lines(out)[:2] == ["/dev/pts/0", "33 101"]
        raw = termios.tcgetattr(user_slave)
        assert not raw[3] & (termios.ICANON | termios.ECHO | termios.ISIG)  # raw while relaying

        # A terminal resize signals the session's foreground group, ocirt's: the
        # container's terminal follows. Lines until it shows, the signal being asynchronous.
        set_winsize(user_slave, 40, 120)
        out = b""
        deadline = time.monotonic() + 10
        while b"40 120" not in out:
            assert time.monotonic() < deadline, out
            os.write(user, b"again\r")  # raw: the container's pty turns \r into \n
            out += read_until(user, b"\r\n")
        os.write(user, b"q\r")
        assert proc.wait(timeout=10) == 3
        assert termios.tcgetattr(user_slave) == cooked  # restored
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(user)
        os.close(user_slave)
    assert cid not in ocirt.ids()
    assert console_dirs() == before_dirs


def test_foreground_run_without_a_tty_still_relays(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    with_terminal(
        bundle, 'tty; stty size; read line; echo "got:$line"; exit 4', consoleSize={"height": 25, "width": 91}
    )
    result = ocirt("run", "--bundle", str(bundle.path), cid, input="hello\n")
    assert result.returncode == 4, result.stderr
    out = result.stdout.splitlines()  # text mode already turned \r\n into \n
    # The pty echoes the input whenever it arrives, hence no order.
    assert {"/dev/pts/0", "25 91", "got:hello"} <= set(out)  # no user terminal: consoleSize stays


def test_foreground_run_forwards_signals(ocirt: Ocirt, bundle: Bundle, cid: str) -> None:
    with_terminal(bundle, "trap 'echo term; exit 5' TERM; echo ready; while :; do sleep 0.1; done")
    proc = subprocess.Popen(
        [OCIRT, "--root", str(ocirt.root), "run", "--bundle", str(bundle.path), cid],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ocirt.env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\r\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 5
        assert proc.stdout.read() == b"term\r\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -------------------------------------------------------------------- imports


def imports(ocirt: Ocirt, *args: str) -> set[str]:
    """Modules one ocirt command imports (stdin from /dev/null: never the user's terminal)."""
    cmd = [PYTHON, "-I", "-X", "importtime", "-c", "import sys; from ocirt.cli import main; sys.exit(main())"]
    with tempfile.TemporaryFile("w+") as err:
        code = subprocess.run(
            [*cmd, "--root", str(ocirt.root), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=30,
        ).returncode  # fmt: skip
        err.seek(0)
        report = err.read()
    assert code == 0, report
    return {line.rsplit("|", 1)[1].strip() for line in report.splitlines() if line.startswith("import time:")}


TERMINAL_MODULES = {"ocirt.plugins.terminal.console", "ocirt.cli.console", "termios", "tty"}
HEAVY = {"socket", "selectors", "enum", "re", "json", "pluggy", "typer"}


def test_a_terminal_costs_only_c_modules(ocirt: Ocirt, bundle: Bundle, engine: Engine) -> None:
    ocirt("run", "--bundle", str(bundle.path), unique_id(), check=True)  # makes the hook plan
    with_terminal(bundle, "true")
    created = imports(
        ocirt, "create", "--bundle", str(bundle.path), "--console-socket", str(engine.path), "imp1"
    )
    engine.receive()
    ran = imports(ocirt, "run", "--bundle", str(bundle.path), "imp2")
    assert {"ocirt.plugins.terminal.console", "_socket", "termios"} <= created
    assert {"ocirt.cli.console", "_socket", "termios"} <= ran
    assert (created | ran) & HEAVY == set()


def test_no_terminal_costs_nothing(ocirt: Ocirt, bundle: Bundle) -> None:
    ocirt("run", "--bundle", str(bundle.path), unique_id(), check=True)
    assert imports(ocirt, "run", "--bundle", str(bundle.path), "imp3") & TERMINAL_MODULES == set()
