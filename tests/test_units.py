"""Unit tests without containers: path resolution in a rootfs, mount options,
config.json checks, signal names and the state store."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import default_config

from ocirt.cli.commands import parse_signal
from ocirt.core import spec as spec_mod
from ocirt.core.errors import ContainerNotFound, OcirtError, SpecError
from ocirt.core.state import (
    ContainerState,
    StateStore,
    check_id,
    process_start_time,
    wait_gone,
)
from ocirt.plugins.mounts.options import MountOptions, all_options
from ocirt.plugins.mounts.paths import make_in_root, open_in_root, open_root, reopen

# The kernel's values (include/uapi/linux/mount.h), not ocirt's constants.
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC = 4096, 16384
MS_PRIVATE, MS_SLAVE, MS_SHARED = 1 << 18, 1 << 19, 1 << 20
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24

# ------------------------------------------------------- paths inside a rootfs


@pytest.fixture
def evil_root(tmp_path: Path) -> Path:
    """A rootfs built to escape: links to /, climbing links, loops, dangling links."""
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "deep" / "a" / "b").mkdir(parents=True)
    links = {
        "proc": "/",
        "escape": "../../../../../../../..",
        "up": "..",
        "deep/a/b/back": "../../../../../../etc",
        "deep/a/to_proc": "/proc",
        "abs_tmp": "/tmp",
        "host_etc": "/etc",
        "chain1": "chain2",
        "chain2": "/chain3",
        "chain3": "host_etc",
        "loop1": "loop2",
        "loop2": "/loop1",
        "selfloop": "./selfloop",
        "dotlink": ".",
        "dangling": str(tmp_path / "host-dir" / "sub"),
        "dangling_up": "../../../host-only/x",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    return root


def resolve(root: Path, unsafe: str, directory: bool = True) -> str:
    """The host path ``make_in_root`` opened for ``unsafe`` (what a mount would land on)."""
    root_fd = open_root(str(root))
    try:
        fd = make_in_root(root_fd, unsafe, directory)
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)


@pytest.mark.parametrize(
    ("unsafe", "inside"),
    [
        ("/", ""),
        ("", ""),
        ("/etc/passwd", "etc/passwd"),
        ("etc/passwd", "etc/passwd"),
        ("/etc/./passwd", "etc/passwd"),
        ("/proc", ""),
        ("/proc/etc/passwd", "etc/passwd"),
        ("/proc/proc/proc/etc", "etc"),
        ("/../../../etc/passwd", "etc/passwd"),
        ("/etc/../../../../etc/passwd", "etc/passwd"),
        ("/escape/etc/passwd", "etc/passwd"),
        ("/up/up/up/etc", "etc"),
        ("/deep/a/b/back/passwd", "etc/passwd"),
        ("/deep/a/to_proc/etc", "etc"),
        ("/abs_tmp/x", "tmp/x"),
        ("/host_etc/shadow", "etc/shadow"),
        ("/chain1/passwd", "etc/passwd"),
        ("/dotlink/dotlink/etc", "etc"),
        ("/missing/../etc", "etc"),
        ("/missing/deeper/file", "missing/deeper/file"),
        ("//etc//passwd", "etc/passwd"),
        ("/dangling", "tmp/pytest-host-dir/sub"),
        ("/dangling_up/y", "host-only/x/y"),
    ],
)
def test_make_in_root(evil_root: Path, unsafe: str, inside: str) -> None:
    if inside.startswith("tmp/pytest-host-dir"):  # the dangling link's host target, inside
        inside = str(evil_root.parent / "host-dir" / "sub").lstrip("/")
    expected = os.path.realpath(evil_root / inside)
    assert resolve(evil_root, unsafe) == expected
    assert os.path.isdir(expected) or os.path.isfile(expected)


def test_make_in_root_touches_nothing_outside(evil_root: Path) -> None:
    host_dir = evil_root.parent / "host-dir"
    host_dir.mkdir()
    before = sorted(os.listdir(evil_root.parent))
    resolve(evil_root, "/dangling/deeper")
    resolve(evil_root, "/dangling_up/file", directory=False)
    resolve(evil_root, "/escape/new/dir")
    assert sorted(os.listdir(evil_root.parent)) == before
    assert os.listdir(host_dir) == []
    assert os.path.isdir(evil_root / str(host_dir).lstrip("/") / "sub" / "deeper")
    assert os.path.isfile(evil_root / "host-only" / "x" / "file")
    assert os.path.isdir(evil_root / "new" / "dir")


def test_make_in_root_drops_missing_parents_of_dotdot(evil_root: Path) -> None:
    resolve(evil_root, "/missing/../etc/created")
    assert not (evil_root / "missing").exists()
    assert (evil_root / "etc" / "created").is_dir()


def test_make_in_root_file(evil_root: Path) -> None:
    path = resolve(evil_root, "/proc/srv/hostname", directory=False)
    assert path == os.path.realpath(evil_root / "srv" / "hostname")
    assert os.path.isfile(path) and os.path.getsize(path) == 0
    # An existing file is opened as it is.
    assert resolve(evil_root, "/etc/passwd", directory=False) == os.path.realpath(evil_root / "etc/passwd")
    assert (evil_root / "etc" / "passwd").read_text().startswith("root:")


@pytest.mark.parametrize("unsafe", ["/loop1", "/loop2/x", "/selfloop", "/deep/../selfloop/etc"])
def test_make_in_root_loops(evil_root: Path, unsafe: str) -> None:
    with pytest.raises(OSError) as info:
        resolve(evil_root, unsafe)
    assert info.value.errno == errno.ELOOP


def test_open_in_root_forms(evil_root: Path) -> None:
    expected = os.path.realpath(evil_root / "etc" / "passwd")
    for root in (str(evil_root) + "/", os.path.relpath(evil_root)):
        root_fd = open_root(root)
        try:
            fd = open_in_root(root_fd, "/proc/etc/passwd")
            assert os.readlink(f"/proc/self/fd/{fd}") == expected
            os.close(fd)
            with pytest.raises(FileNotFoundError):
                open_in_root(root_fd, "/proc/missing")
        finally:
            os.close(root_fd)


def test_reopen_follows_the_inode_not_the_old_path(evil_root: Path, tmp_path: Path) -> None:
    root_fd = open_root(str(evil_root))
    try:
        fd = make_in_root(root_fd, "/deep/a/b/c")
        # The rootfs swaps a directory for a link to /: reopen still finds the
        # directory that was opened, by its new name, never what the old path now shows.
        os.rename(evil_root / "deep" / "a", evil_root / "deep" / "a.moved")
        os.symlink("/", evil_root / "deep" / "a")
        (evil_root / "b" / "c").mkdir(parents=True)
        again = reopen(root_fd, fd)
        assert os.path.samestat(os.fstat(again), os.fstat(fd))
        os.close(again)
        # Moved out of the rootfs altogether: refused.
        os.rename(evil_root / "deep" / "a.moved", tmp_path / "out")
        with pytest.raises(OSError) as info:
            reopen(root_fd, fd)
        assert info.value.errno == errno.EXDEV
        os.close(fd)
    finally:
        os.close(root_fd)


def test_make_in_root_never_leaves_root(evil_root: Path) -> None:
    parts = [
        "proc", "escape", "up", "deep", "a", "b", "back", "to_proc", "abs_tmp", "host_etc",
        "chain1", "loop1", "selfloop", "dotlink", "dangling", "dangling_up", "etc", "passwd",
        "x", "..", ".", "",
    ]  # fmt: skip
    rng = random.Random(20240601)
    resolved = 0
    outside = sorted(os.listdir(evil_root.parent))
    real_root = os.path.realpath(evil_root)
    for _ in range(1500):
        unsafe = "/".join(rng.choice(parts) for _ in range(rng.randint(1, 8)))
        if rng.random() < 0.5:
            unsafe = "/" + unsafe
        try:
            result = resolve(evil_root, unsafe, directory=rng.random() < 0.7)
        except OSError as e:
            # A loop, or a path continuing below a regular file (etc/passwd/x).
            assert e.errno in (errno.ELOOP, errno.ENOTDIR), (unsafe, e)
            continue
        assert result == real_root or result.startswith(real_root + "/"), (unsafe, result)
        resolved += 1
    assert resolved > 500
    assert sorted(os.listdir(evil_root.parent)) == outside


# ----------------------------------------------------------------- MountOptions


@pytest.mark.parametrize(
    ("options", "flags", "data", "propagation"),
    [
        ([], 0, "", []),
        (["nosuid", "nodev", "noexec"], MS_NOSUID | MS_NODEV | MS_NOEXEC, "", []),
        (["ro"], MS_RDONLY, "", []),
        (["ro", "rw"], 0, "", []),  # later options win
        (["rw", "ro"], MS_RDONLY, "", []),
        (["noexec", "exec"], 0, "", []),
        (["nosuid", "suid", "nodev"], MS_NODEV, "", []),
        (["bind"], MS_BIND, "", []),
        (["rbind", "ro"], MS_BIND | MS_REC | MS_RDONLY, "", []),
        (["relatime", "norelatime"], 0, "", []),
        (["strictatime"], MS_STRICTATIME, "", []),
        (["defaults"], 0, "", []),
        (["tmpcopyup"], 0, "", []),  # accepted and ignored, as runc does
        (
            ["nosuid", "strictatime", "mode=755", "size=65536k"],
            MS_NOSUID | MS_STRICTATIME,
            "mode=755,size=65536k",
            [],
        ),
        (["newinstance", "ptmxmode=0666", "gid=5"], 0, "newinstance,ptmxmode=0666,gid=5", []),
        (["rprivate"], 0, "", [MS_PRIVATE | MS_REC]),
        (["rbind", "rslave", "shared"], MS_BIND | MS_REC, "", [MS_SLAVE | MS_REC, MS_SHARED]),
    ],
)
def test_mount_options(options: list[str], flags: int, data: str, propagation: list[int]) -> None:
    parsed = MountOptions(options)
    assert parsed.flags == flags
    assert parsed.data == data
    assert parsed.propagation == propagation
    assert parsed.is_bind == bool(flags & MS_BIND)


# The kernel's mount_setattr attributes (include/uapi/linux/mount.h).
ATTR_RDONLY, ATTR_NOSUID, ATTR_NODEV, ATTR_NOEXEC = 1, 2, 4, 8
ATTR__ATIME, ATTR_NOATIME, ATTR_STRICTATIME, ATTR_NODIRATIME = 0x70, 0x10, 0x20, 0x80
ATTR_NOSYMFOLLOW = 0x200000


@pytest.mark.parametrize(
    ("options", "attr_set", "attr_clr"),
    [
        ([], 0, 0),
        (["rbind", "rro"], ATTR_RDONLY, 0),
        (["rro", "rrw"], 0, ATTR_RDONLY),  # later options win
        (["rrw", "rro"], ATTR_RDONLY, 0),
        (["rnosuid", "rnodev", "rnoexec"], ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC, 0),
        (["rsuid", "rdev", "rexec"], 0, ATTR_NOSUID | ATTR_NODEV | ATTR_NOEXEC),
        (["rnodiratime"], ATTR_NODIRATIME, 0),
        (["rdiratime"], 0, ATTR_NODIRATIME),
        (["rnosymfollow"], ATTR_NOSYMFOLLOW, 0),
        (["rsymfollow"], 0, ATTR_NOSYMFOLLOW),
        # The atime mode is one value: set with the whole atime field cleared.
        (["rnoatime"], ATTR_NOATIME, ATTR__ATIME),
        (["rstrictatime"], ATTR_STRICTATIME, ATTR__ATIME),
        (["rrelatime"], 0, ATTR__ATIME),
        (["rnoatime", "ratime"], 0, ATTR__ATIME),
        (["rnostrictatime"], 0, ATTR__ATIME),
        (["rnorelatime"], ATTR_STRICTATIME, ATTR__ATIME),
        (["rro", "rnoatime", "nosuid"], ATTR_RDONLY | ATTR_NOATIME, ATTR__ATIME),
    ],
)
def test_recursive_options(options: list[str], attr_set: int, attr_clr: int) -> None:
    parsed = MountOptions(options)
    assert (parsed.attr_set, parsed.attr_clr) == (attr_set, attr_clr)
    assert parsed.recursive == bool(attr_set or attr_clr)
    assert not any(o.startswith("r") and o in parsed.data.split(",") for o in options), parsed.data


def test_idmap_options_are_named_not_data() -> None:
    parsed = MountOptions(["rbind", "idmap", "ridmap", "mode=755"])
    assert parsed.idmap == ["idmap", "ridmap"]
    assert parsed.data == "mode=755"


def test_all_options() -> None:
    names = all_options()
    assert names == sorted(names)
    assert {"ro", "rw", "rbind", "nosuid", "rprivate", "runbindable", "tmpcopyup"} <= set(names)
    assert {"rro", "rrw", "rnoatime", "ratime", "rnosymfollow", "rsymfollow"} <= set(names)
    assert "mode=755" not in names
    assert "idmap" not in names


# ---------------------------------------------------------------- config.json


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def _write(bundle: Path, config: Any) -> None:
    text = config if isinstance(config, str) else json.dumps(config)
    (bundle / "config.json").write_text(text)


def test_load_valid(bundle_dir: Path) -> None:
    config = default_config()
    config["annotations"] = {"a": "b"}
    _write(bundle_dir, config)
    loaded = spec_mod.load(str(bundle_dir))
    assert loaded.rootfs == str(bundle_dir / "rootfs")
    assert loaded.bundle == str(bundle_dir)
    assert loaded.annotations == {"a": "b"}
    assert loaded.process is not None and loaded.process["args"] == ["/bin/true"]
    assert loaded.root_readonly is True


def test_load_relative_bundle_and_absolute_root(bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = default_config()
    config["root"] = {"path": str(bundle_dir / "rootfs")}
    del config["process"]  # only ``start`` needs it
    _write(bundle_dir, config)
    monkeypatch.chdir(bundle_dir.parent)
    loaded = spec_mod.load(bundle_dir.name)
    assert loaded.bundle == str(bundle_dir)
    assert loaded.rootfs == str(bundle_dir / "rootfs")
    assert loaded.process is None
    assert loaded.root_readonly is False


def _set(path: str, value: Any) -> Any:
    """A change to the default config: set (or, with value ..., delete) a dotted field."""

    def change(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = config
        for part in parents:
            target = target[part]
        if value is ...:
            del target[last]
        else:
            target[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("ociVersion", ...), "ociVersion: missing"),
        (_set("ociVersion", 1), "ociVersion: missing"),
        (_set("ociVersion", "2.0.0"), "ociVersion: '2.0.0' is not supported"),
        (_set("ociVersion", "one"), "ociVersion: 'one' is not supported"),
        (_set("root", ...), "root.path: missing"),
        (_set("root", "rootfs"), "root: must be an object"),
        (_set("root.path", ""), "root.path: missing"),
        (_set("root.path", 5), "root.path: missing"),
        (_set("root.path", "nope"), "root.path: "),
        (_set("root.readonly", "yes"), "root.readonly: must be a boolean"),
        (_set("hostname", 5), "hostname: must be a string"),
        (_set("annotations", []), "annotations: must be an object"),
        (_set("annotations", {"k": 1}), "annotations.k: must be a string"),
        (_set("process", []), "process: must be an object"),
        (_set("process.args", ...), "process.args: must be a non-empty list of strings"),
        (_set("process.args", []), "process.args: must be a non-empty list of strings"),
        (_set("process.args", "sh"), "process.args: must be a non-empty list of strings"),
        (_set("process.args", ["sh", 1]), "process.args: must be a non-empty list of strings"),
        (_set("process.cwd", "tmp"), "process.cwd: must be an absolute path, not 'tmp'"),
        (_set("process.cwd", 5), "process.cwd: must be an absolute path"),
        (_set("process.env", "PATH=/bin"), "process.env: must be a list"),
        (_set("process.env", ["A=1", "B"]), "process.env[1]: 'B' is not KEY=VALUE"),
        (_set("process.env", ["A=1", 2]), "process.env[1]: 2 is not KEY=VALUE"),
        (_set("process.terminal", "yes"), "process.terminal: must be a boolean"),
    ],
)
def test_load_errors_name_the_field(bundle_dir: Path, change: Any, message: str) -> None:
    config = default_config()
    change(config)
    _write(bundle_dir, config)
    with pytest.raises(SpecError) as info:
        spec_mod.load(str(bundle_dir))
    assert str(info.value).startswith(f"{bundle_dir}/config.json: {message}"), str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "no such file or directory"),
        ("{", "not valid JSON"),
        ("[]", "must hold a JSON object"),
        ('"config"', "must hold a JSON object"),
    ],
)
def test_load_unreadable(bundle_dir: Path, text: str | None, message: str) -> None:
    if text is not None:
        _write(bundle_dir, text)
    with pytest.raises(SpecError, match=message) as info:
        spec_mod.load(str(bundle_dir))
    assert str(info.value).startswith(f"{bundle_dir}/config.json: ")


def test_section(bundle_dir: Path) -> None:
    config = default_config()
    config["linux"]["namespaces"] = "pid"
    _write(bundle_dir, config)
    loaded = spec_mod.load(str(bundle_dir))
    assert loaded.section("linux.maskedPaths", list)
    assert loaded.section("linux.nothing", list) is None
    assert loaded.section("no.such.field") is None
    with pytest.raises(SpecError, match=r"config\.json: linux\.namespaces: must be a list"):
        loaded.section("linux.namespaces", list)


# -------------------------------------------------------------------- signals


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("9", 9),
        ("1", 1),
        ("64", 64),
        ("KILL", 9),
        ("SIGKILL", 9),
        ("kill", 9),
        ("sigterm", 15),
        ("TERM", 15),
        ("HUP", 1),
        ("USR1", 10),
        ("WINCH", 28),
        ("IOT", 6),
        ("RTMIN", 34),
        ("SIGRTMIN", 34),
        ("RTMIN+1", 35),
        ("SIGRTMIN+15", 49),
        ("RTMIN+30", 64),
        ("RTMAX", 64),
        ("RTMAX-1", 63),
        ("rtmax-30", 34),
    ],
)
def test_parse_signal(value: str, number: int) -> None:
    assert parse_signal(value) == number


@pytest.mark.parametrize(
    "value",
    ["", "0", "65", "100", "-9", "+9", "9x", "NOPE", "SIG", "SIGSIGKILL", "RTMIN+", "RTMIN+x", "RTMINX",
     "RTMIN+31", "RTMAX+1", "RTMAX-31", "RTMIN-1", "RTMIN 1", "\u00b2", "\u0663", "RTMIN+\u00b2"],
)  # fmt: skip
def test_parse_signal_refuses(value: str) -> None:
    with pytest.raises(OcirtError, match="invalid signal"):
        parse_signal(value)


# ------------------------------------------------------------------- state ids


@pytest.mark.parametrize("container_id", ["a", "abc", "A-b_c.d+e", "1234567890abcdef", "..x", "x..", "_"])
def test_check_id_accepts(container_id: str) -> None:
    check_id(container_id)


@pytest.mark.parametrize(
    "container_id",
    [
        "",
        ".",
        "..",
        "a/b",
        "../x",
        "/abs",
        "a b",
        "a\n",
        "\na",
        "a\x00b",
        "a\tb",
        "a:b",
        "a*",
        "caf\u00e9",
        "\u0661",
    ],
)
def test_check_id_refuses(container_id: str) -> None:
    with pytest.raises(OcirtError, match="invalid container id"):
        check_id(container_id)


# ------------------------------------------------------------------ the store


def _state(store: StateStore, container_id: str, **data: Any) -> ContainerState:
    directory = store.reserve(container_id)
    state = ContainerState(
        {"ociVersion": "1.2.0", "id": container_id, "status": "created", "bundle": "/b", **data}, directory
    )
    store.save(state)
    return state


def test_store_reserve_save_load(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "root"))
    state = _state(store, "c1", pid=0)
    assert store.exists("c1")
    assert store.load("c1").data == state.data
    with pytest.raises(OcirtError, match="'c1' already exists"):
        store.reserve("c1")
    with pytest.raises(ContainerNotFound):
        store.load("c2")
    with pytest.raises(OcirtError, match="invalid container id"):
        store.dir("../c1")


def test_store_save_is_atomic(tmp_path: Path) -> None:
    """save writes a new file and renames it over the old: a reader holds a whole file."""
    store = StateStore(str(tmp_path / "root"))
    state = _state(store, "c1", pid=1)
    path = Path(state.dir) / "state.json"
    inode = path.stat().st_ino
    with open(path) as reader:
        state.data["pid"] = 2
        state.data["big"] = "x" * 100_000
        store.save(state)
        assert json.loads(reader.read())["pid"] == 1  # the old file, whole
    assert path.stat().st_ino != inode
    assert json.loads(path.read_text())["pid"] == 2
    assert sorted(p.name for p in Path(state.dir).iterdir()) == ["state.json"]


def test_store_corrupt_state(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "root"))
    state = _state(store, "c1")
    (Path(state.dir) / "state.json").write_text('{"id": ')
    with pytest.raises(OcirtError, match="corrupt state file"):
        store.load("c1")


def test_store_ids_and_remove(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "root"))
    assert store.ids() == []
    for container_id in ("b", "a", "c"):
        _state(store, container_id)
    store.reserve("half-made")  # no state.json yet
    assert store.ids() == ["a", "b", "c"]
    store.remove("b")
    store.remove("half-made")
    assert store.ids() == ["a", "c"]
    assert sorted(os.listdir(store.root)) == ["a", "c"]


def test_store_lock_is_exclusive(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "root"))
    _state(store, "c1")
    with store.lock("c1"):
        fd = os.open(store.dir("c1"), os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    fd = os.open(store.dir("c1"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    assert sorted(os.listdir(store.dir("c1"))) == ["state.json"]  # no lock file
    with pytest.raises(ContainerNotFound), store.lock("missing"):
        pass


def test_remove_unsaved_waits_for_the_create(tmp_path: Path) -> None:
    """delete --force of a directory without state.json: a crashed create's goes at
    once; one whose create is under way waits for it, and is left if it saved."""
    store = StateStore(str(tmp_path / "root"))
    store.reserve("crashed")
    assert store.remove_unsaved("crashed")
    assert not os.path.exists(store.dir("crashed"))
    assert store.remove_unsaved("never-made")

    store.reserve("busy")
    saved = threading.Event()

    def create() -> None:
        with store.lock("busy"):
            saved.set()
            time.sleep(0.2)
            store.save(ContainerState({"id": "busy", "status": "creating"}, store.dir("busy")))

    worker = threading.Thread(target=create)
    worker.start()
    saved.wait(5)
    began = time.monotonic()
    assert not store.remove_unsaved("busy")
    assert time.monotonic() - began >= 0.1
    worker.join()
    assert store.exists("busy")


# ------------------------------------------------------- processes and status


def test_process_start_time_and_wait_gone() -> None:
    assert (process_start_time(os.getpid()) or "").isdigit()
    child = subprocess.Popen(["sleep", "30"])
    try:
        start = process_start_time(child.pid)
        assert start is not None
        began = time.monotonic()
        assert not wait_gone(child.pid, start, 0.1)
        assert not wait_gone(child.pid, None, 0.1)
        assert time.monotonic() - began >= 0.2
        child.kill()
        # A zombie counts as gone, with or without its start time.
        assert wait_gone(child.pid, start, 5)
        assert wait_gone(child.pid, None, 5)
        assert process_start_time(child.pid) is None
    finally:
        child.kill()
        child.wait()
    began = time.monotonic()
    assert wait_gone(child.pid, None, 5)  # long gone: no waiting for the timeout
    assert time.monotonic() - began < 1


def test_status_follows_the_init(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "root"))
    me = os.getpid()
    state = _state(store, "c1", pid=me, init_start=process_start_time(me))
    Path(state.fifo).touch()
    assert state.status() == "created"
    os.unlink(state.fifo)
    assert state.status() == "running"
    state.data["status"] = "paused"
    assert state.status() == "paused"
    state.data["init_start"] = "1"  # another process under that pid
    assert state.status() == "stopped"
    assert state.oci_state()["pid"] == 0
    state.data["status"] = "creating"
    assert state.status() == "creating"


def test_status_files_name_the_shown_status(tmp_path: Path) -> None:
    """``Container.show_status``: state and list read the file a plugin named at create."""
    store = StateStore(str(tmp_path / "root"))
    me = os.getpid()
    state = _state(store, "c1", pid=me, init_start=process_start_time(me))
    from ocirt.core.context import Container
    from ocirt.core.log import Logger

    ctx = Container("c1", None, state, Logger())
    freezer = tmp_path / "freezer.state"
    ctx.show_status("paused", str(freezer), "THAWED")
    assert state.shown_status() == "running"  # no file (a removed cgroup): no say
    freezer.write_text("THAWED\n")
    assert state.shown_status() == "running"
    freezer.write_text("FROZEN\n")
    assert state.shown_status() == state.oci_state()["status"] == "paused"
    assert state.status() == "running"  # what start, kill and delete go by
    state.data["init_start"] = "1"
    assert state.shown_status() == "stopped"  # only a live container is shown paused


def test_oci_state_shape(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "root"))
    state = _state(store, "c1", pid=os.getpid(), init_start=process_start_time(os.getpid()))
    shown = state.oci_state()
    assert set(shown) == {"ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"}
    assert shown["status"] == "running" and shown["pid"] == os.getpid()
    state.data["annotations"] = {"a": "b"}
    assert state.oci_state()["annotations"] == {"a": "b"}


@pytest.mark.parametrize(
    "value",
    [
        {"ociVersion": "1.2.0", "id": "c", "pid": 7, "annotations": {}, "empty": [], "é": 'ü\n"'},
        [1, 2.5, None, True, {"a": [{"b": []}]}],
        {},
        "plain",
    ],
)
def test_indented_json_as_json_writes_it(value: Any) -> None:
    """``ocirt state`` prints through jsonio, byte for byte what ``json.dumps(indent=2)`` gives."""
    from ocirt.core import jsonio

    assert jsonio.dumps_indented(value) == json.dumps(value, indent=2)


@pytest.mark.parametrize("text", ['{"a" 1}', "{", '{"a": 1,}', "[1 2]", '"unterminated', "{\n"])
def test_jsonio_syntax_errors_are_value_errors(text: str) -> None:
    """Every malformed document gives json's ValueError, also in a process that never
    imported json (as ocirt's commands), where _json cannot find its exception class."""
    code = (
        "import sys; from ocirt.core import jsonio\n"
        "assert 'json' not in sys.modules\n"
        "try:\n    jsonio.loads(sys.argv[1])\nexcept ValueError as e:\n    print(e)\n"
    )
    python = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python")
    done = subprocess.run([python, "-c", code, text], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    try:
        json.loads(text)
    except ValueError as e:
        expected = str(e)
    assert done.stdout.strip() in (expected, f"expecting a value: {expected.split(': ', 1)[-1]}")


# ------------------------------------------------------------------------- libc


def test_libc_types_are_ctypes_own() -> None:
    """ocirt.core.libc declares what the syscall layer needs over ``_ctypes``: the
    same sizes and behaviour as the ctypes package's types, calls and errno."""
    import ctypes

    from ocirt.core import libc

    for name in ("c_int", "c_int32", "c_uint", "c_uint32", "c_uint64", "c_ulong", "c_size_t"):
        assert libc.sizeof(getattr(libc, name)) == ctypes.sizeof(getattr(ctypes, name)), name
        assert getattr(libc, name)(7).value == 7
    assert libc.Structure is ctypes.Structure and libc.byref is ctypes.byref

    class Pair(libc.Structure):
        _fields_ = [("a", libc.c_uint32), ("b", libc.c_int)]

    assert libc.sizeof(Pair) == 8 and libc.sizeof(Pair * 2) == 16
    assert libc.libc.getpid() == os.getpid()
    assert libc.libc.close(-1) == -1
    assert libc.get_errno() == errno.EBADF
    with pytest.raises(OSError) as raised:
        from ocirt.core import syscalls

        syscalls.setns(-1, 0)
    assert raised.value.errno == errno.EBADF


def test_log_lines_to_a_closed_stderr_are_lost_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that stopped reading stderr (a closed pipe) must not turn a warning
    into an exception that aborts the cleanup after it."""
    import io

    from ocirt.core.log import Logger

    class Closed(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(sys, "stderr", Closed())
    log = Logger()
    log.warning("left behind?")
    log.error("no")


@pytest.mark.parametrize(
    ("path", "own", "mount_root", "expected"),
    [
        ("/ocirt-test/c1", "/user.slice", "/", "/sys/fs/cgroup/pids/ocirt-test/c1"),  # no "//"
        ("c1", "/user.slice", "/", "/sys/fs/cgroup/pids/user.slice/c1"),
        ("/outer/inner/c1", "/", "/outer", "/sys/fs/cgroup/pids/inner/c1"),  # a sub-cgroup mount
        ("//a//b/", "/", "/", "/sys/fs/cgroup/pids/a/b"),
    ],
)
def test_cgroup_path_in_a_v1_hierarchy(path: str, own: str, mount_root: str, expected: str) -> None:
    from ocirt.plugins.cgroups import paths

    assert paths.resolve(path, "/sys/fs/cgroup/pids", mount_root, own) == expected


@pytest.mark.parametrize("path", ["/", "//", "/a/../.."])
def test_cgroup_path_must_name_a_cgroup_of_its_own(path: str) -> None:
    from ocirt.plugins.cgroups import paths

    with pytest.raises(ValueError):
        paths.resolve(path, "/sys/fs/cgroup/pids", "/", "/")
