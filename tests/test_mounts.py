"""The container's filesystem, seen from inside real containers and from the host.

Each test reads what the kernel reports (``/proc/self/mountinfo`` inside,
``stat`` of device nodes, a write that fails) and checks the host afterwards:
its mount table is unchanged, no host directory or device node was touched.
Hostile rootfs layouts (``/proc`` a link to ``/``, ``/dev`` a link to a host
directory, destinations through links and ``..``) must keep every mount and
node inside the rootfs.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Bundle, Ocirt, default_config, unique_id, wait_for

PYTHON = str(REPO / ".venv" / "bin" / "python")

# ---------------------------------------------------------------------- helpers


def host_mountinfo(basetemp: Path) -> list[str]:
    """The host's mount table, without mount ids, ignoring other sessions' pytest dirs."""
    lines = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if point.startswith("/tmp/pytest-of-") and not point.startswith(str(basetemp)):
                continue
            lines.append(line.split(" ", 2)[2])
    return sorted(lines)


def dev_null_state() -> tuple[int, int, int, int]:
    st = os.stat("/dev/null")
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_rdev


@pytest.fixture(autouse=True)
def host_untouched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test leaves the host's mount table and /dev/null as they were."""
    basetemp = tmp_path_factory.getbasetemp()
    mounts, null = host_mountinfo(basetemp), dev_null_state()
    yield
    assert host_mountinfo(basetemp) == mounts, "the host's mount table changed"
    assert dev_null_state() == null == (0, 0, 0o666, os.makedev(1, 3)), "host /dev/null changed"


class HostMounts:
    """Mounts a test makes on the host, undone (recursively) at the end."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def __call__(self, *args: str) -> None:
        subprocess.run(["mount", *args], check=True)

    def bind_shared(self, path: Path) -> None:
        """Make ``path`` a shared mount of its own, so host mounts below it propagate."""
        self("--bind", str(path), str(path))
        self.points.append(path)
        self("--make-shared", str(path))

    def tmpfs(self, path: Path) -> None:
        path.mkdir(exist_ok=True)
        self("-t", "tmpfs", "tmpfs", str(path))
        self.points.append(path)

    def undo(self) -> None:
        for path in reversed(self.points):
            subprocess.run(["umount", "--recursive", "--lazy", str(path)], check=False)


@pytest.fixture
def host_mounts() -> Iterator[HostMounts]:
    mounts = HostMounts()
    yield mounts
    mounts.undo()


def run(
    ocirt: Ocirt, bundle: Bundle, script: str, *flags: str, **config: Any
) -> subprocess.CompletedProcess[str]:
    """``ocirt run`` of ``sh -c script``; ``config`` replaces top-level keys of config.json."""
    bundle.write(args=["sh", "-c", script], **config)
    return ocirt("run", *flags, "--bundle", str(bundle.path), unique_id("m"))


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


class MountInfo:
    """A container's /proc/self/mountinfo, by mount point."""

    def __init__(self, text: str) -> None:
        self.entries: dict[str, tuple[set[str], str, set[str], str]] = {}
        for line in text.splitlines():
            head, sep, tail = line.partition(" - ")
            if not sep:
                continue
            fields, (fstype, _source, super_options) = head.split(), tail.split()
            self.entries[fields[4]] = (
                set(fields[5].split(",")),
                fstype,
                set(super_options.split(",")),
                fields[3],
            )

    def options(self, point: str) -> set[str]:
        return self.entries[point][0]

    def fstype(self, point: str) -> str:
        return self.entries[point][1]

    def super_options(self, point: str) -> set[str]:
        return self.entries[point][2]

    def root(self, point: str) -> str:
        return self.entries[point][3]

    def __contains__(self, point: str) -> bool:
        return point in self.entries


def mountinfo_after(
    ocirt: Ocirt, bundle: Bundle, script: str = "", *flags: str, **config: Any
) -> tuple[MountInfo, str]:
    """Run ``script``, then print the mount table; (table, what the script printed)."""
    out = ok(
        run(ocirt, bundle, f"{script}\necho ===MOUNTINFO===\ncat /proc/self/mountinfo", *flags, **config)
    )
    before, _, table = out.partition("===MOUNTINFO===\n")
    return MountInfo(table), before


def with_mounts(bundle: Bundle, *extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [*bundle.config["mounts"], *extra]


def tmpfs(destination: str, *options: str) -> dict[str, Any]:
    return {"destination": destination, "type": "tmpfs", "source": "tmpfs", "options": list(options)}


def bind(source: Path | str, destination: str, *options: str) -> dict[str, Any]:
    return {"destination": destination, "type": "bind", "source": str(source), "options": list(options)}


def linux(bundle: Bundle, **changes: Any) -> dict[str, Any]:
    return {**bundle.config["linux"], **changes}


# ----------------------------------------------------- the default spec's mounts


def test_default_mounts(ocirt: Ocirt, bundle: Bundle) -> None:
    info, _ = mountinfo_after(ocirt, bundle)
    assert info.fstype("/proc") == "proc"
    assert info.fstype("/sys") == "sysfs"
    assert {"ro", "nosuid", "nodev", "noexec"} <= info.options("/sys")
    assert info.fstype("/dev") == "tmpfs"
    assert "nosuid" in info.options("/dev")
    assert not {"relatime", "noatime"} & info.options("/dev")  # strictatime
    assert {"size=65536k", "mode=755"} <= info.super_options("/dev")
    assert info.fstype("/dev/pts") == "devpts"
    assert {"nosuid", "noexec"} <= info.options("/dev/pts")
    assert {"ptmxmode=666", "mode=620", "gid=5"} <= info.super_options("/dev/pts")
    assert info.fstype("/dev/shm") == "tmpfs"
    assert {"nosuid", "nodev", "noexec"} <= info.options("/dev/shm")
    assert info.fstype("/dev/mqueue") == "mqueue"
    assert {"nosuid", "nodev", "noexec"} <= info.options("/dev/mqueue")
    # cgroup v1 here: a read-only tmpfs with each hierarchy bound read-only below it.
    assert info.fstype("/sys/fs/cgroup") in ("tmpfs", "cgroup2")
    assert "ro" in info.options("/sys/fs/cgroup")
    hierarchies = [p for p in info.entries if p.startswith("/sys/fs/cgroup/")]
    if info.fstype("/sys/fs/cgroup") == "tmpfs":
        assert "/sys/fs/cgroup/memory" in hierarchies
        for point in hierarchies:
            assert info.fstype(point) in ("cgroup", "cgroup2")
            assert {"ro", "nosuid", "nodev", "noexec"} <= info.options(point)
    assert "ro" in info.options("/")  # root.readonly is true in `ocirt spec`'s config


def test_a_writable_cgroup_mount_keeps_its_hierarchies_read_only(ocirt: Ocirt, bundle: Bundle) -> None:
    """Without ``ro`` the cgroup tmpfs stays writable; each hierarchy bound in it is
    still read-only, nosuid, nodev and noexec (the path taken one bind at a time)."""
    mounts = [
        m if m["destination"] != "/sys/fs/cgroup" else {**m, "options": ["nosuid", "noexec", "nodev"]}
        for m in bundle.config["mounts"]
    ]
    info, out = mountinfo_after(
        ocirt, bundle, "touch /sys/fs/cgroup/made && echo made; touch /sys/fs/cgroup/pids/x", mounts=mounts
    )
    if info.fstype("/sys/fs/cgroup") != "tmpfs":
        pytest.skip("a pure cgroup v2 host mounts cgroup2 itself: no tmpfs of binds")
    assert out.startswith("made\n")
    assert "ro" not in info.options("/sys/fs/cgroup")
    hierarchies = [p for p in info.entries if p.startswith("/sys/fs/cgroup/")]
    assert "/sys/fs/cgroup/pids" in hierarchies
    for point in hierarchies:
        assert {"ro", "nosuid", "nodev", "noexec"} <= info.options(point), point


def test_devpts_is_a_new_instance(ocirt: Ocirt, bundle: Bundle) -> None:
    out = ok(run(ocirt, bundle, "stat -c '%a %F' /dev/pts/ptmx; readlink /dev/ptmx; ls /dev/pts"))
    ptmx, link, *entries = out.split("\n")
    assert ptmx == "666 character special file"
    assert link == "pts/ptmx"
    assert [e for e in entries if e] == ["ptmx"]  # no host terminals in a new instance


# ------------------------------------------------------------ mount options


def test_mount_options_in_mountinfo(ocirt: Ocirt, bundle: Bundle) -> None:
    mounts = with_mounts(
        bundle,
        tmpfs("/t/ro", "ro"),
        tmpfs("/t/nosuid", "nosuid", "nodev", "noexec"),
        tmpfs("/t/relatime", "relatime"),
        tmpfs("/t/noatime", "noatime"),
        tmpfs("/t/strictatime", "strictatime"),
        tmpfs("/t/sized", "size=1m", "mode=700"),
        tmpfs("/t/rw", "ro", "rw", "nosuid", "suid"),
    )
    info, _ = mountinfo_after(ocirt, bundle, mounts=mounts)
    assert "ro" in info.options("/t/ro")
    assert {"nosuid", "nodev", "noexec"} <= info.options("/t/nosuid")
    assert "relatime" in info.options("/t/relatime")
    assert "noatime" in info.options("/t/noatime")
    assert not {"relatime", "noatime"} & info.options("/t/strictatime")
    assert {"size=1024k", "mode=700"} <= info.super_options("/t/sized")
    assert "rw" in info.options("/t/rw") and "nosuid" not in info.options("/t/rw")


def test_bind_mounts(ocirt: Ocirt, bundle: Bundle, tmp_path: Path) -> None:
    host_file = tmp_path / "hostname"
    host_file.write_text("from-the-host\n")
    host_dir = tmp_path / "data"
    host_dir.mkdir()
    (host_dir / "inside").write_text("data\n")
    mounts = with_mounts(
        bundle,
        bind(host_file, "/etc/hostname"),  # a file over a file
        bind(host_file, "/new/dir/file", "ro"),  # a file where nothing was
        bind(host_dir, "/data", "ro", "nosuid"),
        bind("rootfs/etc", "/etc-again", "rbind"),  # relative to the bundle
    )
    script = """
        cat /etc/hostname /new/dir/file /data/inside /etc-again/passwd | head -3
        touch /data/x 2>&1 || echo data-read-only
        echo x > /new/dir/file 2>&1 || echo file-read-only
    """
    info, out = mountinfo_after(ocirt, bundle, script, mounts=mounts)
    assert out.split("\n")[:3] == ["from-the-host", "from-the-host", "data"]
    assert "data-read-only" in out and "file-read-only" in out
    assert {"ro", "nosuid"} <= info.options("/data")
    assert "ro" in info.options("/new/dir/file")
    assert "ro" not in info.options("/etc/hostname")
    assert info.root("/etc/hostname").endswith("/hostname")
    assert "/etc-again" in info
    assert host_file.read_text() == "from-the-host\n"
    assert sorted(os.listdir(host_dir)) == ["inside"]
    # The file destination was created in the rootfs, not elsewhere.
    assert (bundle.rootfs / "new" / "dir" / "file").is_file()


def test_bind_source_missing(ocirt: Ocirt, bundle: Bundle, tmp_path: Path) -> None:
    result = run(ocirt, bundle, "true", mounts=with_mounts(bundle, bind(tmp_path / "nope", "/x")))
    assert result.returncode != 0
    assert "mounts[7]: bind source" in result.stderr and "no such file or directory" in result.stderr


@pytest.fixture
def tree(tmp_path: Path, host_mounts: HostMounts) -> Path:
    """A host directory with a tmpfs mounted below it (a tree of two mounts)."""
    top = tmp_path / "tree"
    top.mkdir()
    (top / "top-file").write_text("top\n")
    host_mounts.tmpfs(top / "sub")
    (top / "sub" / "sub-file").write_text("sub\n")
    return top


def test_recursive_read_only(ocirt: Ocirt, bundle: Bundle, tree: Path) -> None:
    mounts = with_mounts(bundle, bind(tree, "/rro", "rbind", "rro"), bind(tree, "/ro", "rbind", "ro"))
    script = (
        "for d in /rro /rro/sub /ro /ro/sub; do touch $d/new 2>/dev/null && echo $d:rw || echo $d:ro; done"
    )
    info, out = mountinfo_after(ocirt, bundle, script, mounts=mounts)
    assert "ro" in info.options("/rro") and "ro" in info.options("/rro/sub")
    # Plain ro reaches only the top of the tree: the difference rro makes.
    assert "ro" in info.options("/ro") and "rw" in info.options("/ro/sub")
    assert out.split() == ["/rro:ro", "/rro/sub:ro", "/ro:ro", "/ro/sub:rw"]
    assert (tree / "sub" / "new").exists()  # the one writable place was the host's tmpfs
    (tree / "sub" / "new").unlink()
    assert "rw" in host_options(tree / "sub")  # the host's mount itself is as it was


def host_options(point: Path) -> set[str]:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(point):
            return set(fields[5].split(","))
    raise AssertionError(f"{point} is not a mount point on the host")


def test_recursive_attributes(ocirt: Ocirt, bundle: Bundle, tree: Path) -> None:
    options = ("rbind", "rnosuid", "rnodev", "rnoexec", "rnoatime", "rnodiratime", "rnosymfollow")
    mounts = with_mounts(
        bundle,
        bind(tree, "/all", *options),
        bind(tree, "/undone", *options, "rsuid", "rdev", "rexec", "ratime", "rdiratime", "rsymfollow"),
    )
    info, _ = mountinfo_after(ocirt, bundle, mounts=mounts)
    for point in ("/all", "/all/sub"):
        assert {"nosuid", "nodev", "noexec", "noatime", "nodiratime", "nosymfollow"} <= info.options(point)
    for point in ("/undone", "/undone/sub"):
        assert not {"nosuid", "nodev", "noexec", "noatime", "nodiratime", "nosymfollow"} & info.options(point)
        assert "relatime" in info.options(point)


def test_recursive_atime_modes(ocirt: Ocirt, bundle: Bundle, tree: Path) -> None:
    mounts = with_mounts(
        bundle,
        bind(tree, "/strict", "rbind", "rstrictatime"),
        bind(tree, "/norel", "rbind", "rnorelatime"),
        bind(tree, "/rel", "rbind", "rnoatime", "rrelatime"),
    )
    info, _ = mountinfo_after(ocirt, bundle, mounts=mounts)
    for point in ("/strict", "/strict/sub", "/norel", "/norel/sub"):
        assert not {"relatime", "noatime"} & info.options(point), point
    assert "relatime" in info.options("/rel") and "relatime" in info.options("/rel/sub")


def test_idmap_refused(ocirt: Ocirt, bundle: Bundle, tmp_path: Path) -> None:
    result = run(ocirt, bundle, "true", mounts=with_mounts(bundle, bind(tmp_path, "/x", "rbind", "idmap")))
    assert result.returncode != 0
    assert "mounts[7].options: idmap: id-mapped mounts are not supported yet" in result.stderr


# --------------------------------------------------------------- propagation


@pytest.mark.parametrize(
    ("propagation", "seen"),
    [
        (None, True),  # rslave, as runc
        ("rslave", True),
        ("shared", True),
        ("rprivate", False),
        # Not recursive: only / changes; the shared bind below keeps its peer.
        ("private", True),
    ],
)
def test_rootfs_propagation(
    ocirt: Ocirt, bundle: Bundle, tmp_path: Path, host_mounts: HostMounts, propagation: str | None, seen: bool
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    host_mounts.bind_shared(shared)
    script = """
        while [ ! -e /shared/go ]; do sleep 0.02; done
        grep -c ' /shared/later ' /proc/self/mountinfo > /shared/result
        mv /shared/result /shared/done
    """
    changes: dict[str, Any] = {"mounts": with_mounts(bundle, bind(shared, "/shared", "rbind"))}
    if propagation is not None:
        changes["linux"] = linux(bundle, rootfsPropagation=propagation)
    bundle.write(args=["sh", "-c", script], **changes)
    cid = unique_id("prop")
    started = ocirt.detached("run", "--detach", "--bundle", str(bundle.path), cid)
    assert started.returncode == 0, started.stderr
    host_mounts.tmpfs(shared / "later")  # made on the host after the container started
    (shared / "go").touch()
    assert wait_for(lambda: (shared / "done").exists()), "the container did not answer"
    assert (shared / "done").read_text().strip() == ("1" if seen else "0")
    ocirt("delete", "--force", cid, check=True)


def test_shared_propagates_to_the_host(
    ocirt: Ocirt, bundle: Bundle, tmp_path: Path, host_mounts: HostMounts
) -> None:
    """rootfsPropagation shared: a mount made inside under a shared bind reaches the host."""
    shared = tmp_path / "shared"
    shared.mkdir()
    host_mounts.bind_shared(shared)
    (shared / "from-container").mkdir()
    mounts = with_mounts(bundle, bind(shared, "/shared", "rbind"))
    bundle.config["process"]["capabilities"] = ALL_SETS_SYS_ADMIN
    for propagation, reaches in (("shared", True), ("rslave", False)):
        result = run(
            ocirt,
            bundle,
            "mount -t tmpfs -o size=1m tmpfs /shared/from-container",
            mounts=mounts,
            linux=linux(bundle, rootfsPropagation=propagation),
        )
        ok(result)
        table = Path("/proc/self/mountinfo").read_text()
        assert (f" {shared}/from-container " in table) == reaches, propagation
        subprocess.run(["umount", "--lazy", str(shared / "from-container")], check=False)


ALL_SETS_SYS_ADMIN = {
    key: ["CAP_SYS_ADMIN"] for key in ("bounding", "effective", "permitted", "inheritable", "ambient")
}


def test_mount_propagation_option(ocirt: Ocirt, bundle: Bundle, tmp_path: Path) -> None:
    mounts = with_mounts(bundle, tmpfs("/p/shared", "rshared"), tmpfs("/p/private", "private"))
    out = ok(run(ocirt, bundle, "grep ' /p/' /proc/self/mountinfo", mounts=mounts))
    shared_line, private_line = out.splitlines()
    assert " /p/shared " in shared_line and "shared:" in shared_line
    assert " /p/private " in private_line and "shared:" not in private_line


# ---------------------------------------------------------- the root and paths


def test_root_readonly(ocirt: Ocirt, bundle: Bundle) -> None:
    script = "touch /x 2>&1 && echo rw || echo ro; awk '$5 == \"/\"' /proc/self/mountinfo"
    out = ok(run(ocirt, bundle, script))
    assert out.startswith("touch: /x: Read-only file system\nro\n")
    assert " ro," in out.splitlines()[-1]
    bundle.config["root"]["readonly"] = False
    out = ok(run(ocirt, bundle, script))
    assert out.startswith("rw\n")
    assert (bundle.rootfs / "x").exists()


def test_masked_and_readonly_paths(ocirt: Ocirt, bundle: Bundle) -> None:
    etc = bundle.rootfs / "etc"
    (etc / "secret").write_text("secret file\n")
    (etc / "secret-dir").mkdir()
    (etc / "secret-dir" / "key").write_text("key\n")
    (etc / "frozen").mkdir()
    (etc / "frozen" / "f").write_text("frozen\n")
    changes = linux(
        bundle,
        maskedPaths=["/etc/secret", "/etc/secret-dir", "/etc/absent", *bundle.config["linux"]["maskedPaths"]],
        readonlyPaths=["/etc/frozen", "/etc/absent-too", *bundle.config["linux"]["readonlyPaths"]],
    )
    script = """
        echo "file:[$(cat /etc/secret)]"
        echo "dir:[$(ls /etc/secret-dir)]"
        echo overwritten > /etc/secret; echo "after:[$(cat /etc/secret)]"
        touch /etc/secret-dir/new 2>/dev/null && echo dir-writable || echo dir-read-only
        touch /etc/frozen/new 2>/dev/null && echo frozen-writable || echo frozen-read-only
        cat /etc/frozen/f
        echo "keys:[$(cat /proc/keys)]"
        ls /sys/firmware | wc -l
        echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo sys-writable || echo sys-read-only
    """
    bundle.config["root"]["readonly"] = False
    out = ok(run(ocirt, bundle, script, linux=changes))
    assert out.split("\n") == [
        "file:[]",
        "dir:[]",
        "after:[]",  # writes to a masked file go nowhere
        "dir-read-only",
        "frozen-read-only",
        "frozen",
        "keys:[]",
        "0",
        "sys-read-only",
        "",
    ]
    assert (etc / "secret").read_text() == "secret file\n"
    assert os.listdir(etc / "secret-dir") == ["key"]


def test_mask_refuses_a_fake_dev_null(ocirt: Ocirt, bundle: Bundle) -> None:
    """A rootfs whose /dev/null is a plain file must not be what masks show."""
    (bundle.rootfs / "dev" / "null").write_text("not the null device\n")
    mounts = [m for m in bundle.config["mounts"] if not m["destination"].startswith("/dev")]
    result = run(ocirt, bundle, "cat /proc/keys", mounts=mounts)
    assert result.returncode != 0
    assert "the container's /dev/null is not the null device" in result.stderr


def test_no_pivot(ocirt: Ocirt, bundle: Bundle) -> None:
    (bundle.rootfs / "marker").write_text("in the rootfs\n")
    info, out = mountinfo_after(ocirt, bundle, "cat /marker; ls /", "--no-pivot")
    assert out.split("\n")[0] == "in the rootfs"
    assert "marker" in out.split("\n")
    assert {"/", "/proc", "/dev", "/dev/pts", "/sys"} <= set(info.entries)
    assert "ro" in info.options("/")
    assert "ro" in info.options("/proc/sys")  # read-only paths after the move too


# ------------------------------------------------------------------- devices

DEFAULTS = {
    "/dev/null": "1 3 666 0 0 character special file",
    "/dev/zero": "1 5 666 0 0 character special file",
    "/dev/full": "1 7 666 0 0 character special file",
    "/dev/random": "1 8 666 0 0 character special file",
    "/dev/urandom": "1 9 666 0 0 character special file",
    "/dev/tty": "5 0 666 0 0 character special file",
}


def stat_devices(ocirt: Ocirt, bundle: Bundle, paths: list[str], **config: Any) -> dict[str, str]:
    out = ok(run(ocirt, bundle, f"stat -c '%n %t %T %a %u %g %F' {' '.join(paths)}", **config))
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.splitlines()}


def test_default_devices_and_links(ocirt: Ocirt, bundle: Bundle) -> None:
    assert stat_devices(ocirt, bundle, list(DEFAULTS)) == DEFAULTS
    script = (
        "for l in fd stdin stdout stderr ptmx; do echo $l=$(readlink /dev/$l); done; stat -c '%a %F' /dev/shm"
    )
    out = ok(run(ocirt, bundle, script))
    assert out.split("\n") == [
        "fd=/proc/self/fd",
        "stdin=/proc/self/fd/0",
        "stdout=/proc/self/fd/1",
        "stderr=/proc/self/fd/2",
        "ptmx=pts/ptmx",
        "1777 directory",
        "",
    ]
    out = ok(run(ocirt, bundle, "echo hi > /dev/null && head -c 4 /dev/zero | od -An -tx1 && echo ok"))
    assert out.split() == ["00", "00", "00", "00", "ok"]


def test_spec_devices(ocirt: Ocirt, bundle: Bundle) -> None:
    devices = [
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 5, "gid": 6},
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 7, "gid": 8},
        {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200},
        {"path": "/dev/myloop", "type": "b", "major": 7, "minor": 0, "fileMode": 0o660, "gid": 6},
        {"path": "/dev/unbuffered", "type": "u", "major": 1, "minor": 5, "fileMode": 0o4755},
        {"path": "/dev/myfifo", "type": "p", "fileMode": 0o620},
    ]
    seen = stat_devices(
        ocirt, bundle, [d["path"] for d in devices] + ["/dev/zero"], linux=linux(bundle, devices=devices)
    )
    assert seen == {
        "/dev/mynull": "1 3 600 5 6 character special file",
        "/dev/null": "1 3 640 7 8 character special file",  # the spec's wins over the default
        "/dev/net/tun": "a c8 666 0 0 character special file",
        "/dev/myloop": "7 0 660 0 6 block special file",
        "/dev/unbuffered": "1 5 4755 0 0 character special file",
        "/dev/myfifo": "0 0 620 0 0 fifo",
        "/dev/zero": DEFAULTS["/dev/zero"],
    }
    assert not os.path.exists("/dev/mynull") and not os.path.exists("/dev/myfifo")


def test_devices_without_a_dev_mount(ocirt: Ocirt, bundle: Bundle) -> None:
    """No tmpfs on /dev: nodes go into the rootfs's own /dev, /dev/shm is created."""
    mounts = [m for m in bundle.config["mounts"] if not m["destination"].startswith("/dev")]
    devices = [{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 5}]
    bundle.config["root"]["readonly"] = False
    seen = stat_devices(
        ocirt,
        bundle,
        ["/dev/mynull", "/dev/null", "/dev/shm"],
        mounts=mounts,
        linux=linux(bundle, devices=devices),
    )
    assert seen["/dev/mynull"] == "1 3 600 5 0 character special file"
    assert seen["/dev/null"] == DEFAULTS["/dev/null"]
    assert seen["/dev/shm"] == "0 0 1777 0 0 directory"
    st = os.lstat(bundle.rootfs / "dev" / "mynull")
    assert stat.S_ISCHR(st.st_mode) and st.st_uid == 5 and stat.S_IMODE(st.st_mode) == 0o600


def test_host_dev_bind_creates_nothing(ocirt: Ocirt, bundle: Bundle) -> None:
    """A bind of the host's /dev: no node is made (it would be made on the host)."""
    mounts = [m for m in bundle.config["mounts"] if not m["destination"].startswith("/dev")]
    mounts.append(bind("/dev", "/dev", "rbind"))
    devices = [{"path": "/dev/ocirt-test-node", "type": "c", "major": 1, "minor": 3, "uid": 5}]
    out = ok(
        run(
            ocirt,
            bundle,
            "ls /dev/ocirt-test-node 2>&1; stat -c '%u %a' /dev/null",
            mounts=mounts,
            linux=linux(bundle, devices=devices),
        )
    )
    assert "No such file or directory" in out
    assert out.splitlines()[-1] == "0 666"
    assert not os.path.exists("/dev/ocirt-test-node")


@pytest.mark.parametrize(
    ("device", "message"),
    [
        (
            {"path": "/etc/evil", "type": "c", "major": 1, "minor": 3},
            "linux.devices[0].path: must name a node under /dev/, not '/etc/evil'",
        ),
        (
            {"path": "/dev/../etc/evil", "type": "c", "major": 1, "minor": 3},
            "under /dev/, not '/dev/../etc/evil'",
        ),
        ({"path": "/dev", "type": "c", "major": 1, "minor": 3}, "must name a node under /dev/, not '/dev'"),
        ({"path": "dev/x", "type": "c", "major": 1, "minor": 3}, "must be an absolute path"),
        (
            {"path": "/dev/x", "type": "x", "major": 1, "minor": 3},
            "linux.devices[0].type: must be one of c, b, u, p",
        ),
        ({"path": "/dev/x", "type": "c", "minor": 3}, "linux.devices[0].major: required for a c device"),
        ({"path": "/dev/x", "type": "c", "major": -1, "minor": 3}, "must be a non-negative integer"),
        ({"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "fileMode": 0o17777}, "fileMode: must be"),
        ({"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "uid": -1}, "linux.devices[0].uid"),
        ("nope", "linux.devices[0]: must be an object"),
    ],
)
def test_device_validation(ocirt: Ocirt, bundle: Bundle, cid: str, device: Any, message: str) -> None:
    bundle.write(linux=linux(bundle, devices=[device]))
    result = ocirt("create", "--bundle", str(bundle.path), cid)
    assert result.returncode != 0
    assert message in result.stderr
    assert ocirt.ids() == []
    assert not os.path.exists("/etc/evil")


BIND_NODE = textwrap.dedent(
    """
    import json, os, stat, sys
    from ocirt.core import syscalls as s
    from ocirt.plugins.mounts import devices, paths
    s.unshare(s.CLONE_NEWNS)
    s.mount(None, "/", None, s.MS_PRIVATE | s.MS_REC)
    root = paths.open_root(sys.argv[1])
    for device in devices.wanted(json.loads(sys.argv[2])):
        devices.create_node(root, device, bind=True)
    seen = {}
    for name in ("null", "zero", "mynull"):
        st = os.stat(os.path.join(sys.argv[1], "dev", name))
        seen[name] = [os.major(st.st_rdev), os.minor(st.st_rdev), oct(stat.S_IMODE(st.st_mode)), st.st_uid]
    print(json.dumps(seen))
    """
)


def test_user_namespace_binds_host_nodes_untouched(tmp_path: Path) -> None:
    """Where mknod is impossible the host's node is bound, and never chmod'ed or chown'ed.

    Run in a private mount namespace of its own (user namespaces are not yet
    supported by ocirt); the spec asks for another owner and mode on purpose.
    """
    root = tmp_path / "rootfs"
    (root / "dev").mkdir(parents=True)
    spec_devices = [
        {
            "path": "/dev/null",
            "type": "c",
            "major": 1,
            "minor": 3,
            "fileMode": 0o600,
            "uid": 1000,
            "gid": 1000,
        },
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 1000},
    ]
    result = subprocess.run(
        [PYTHON, "-c", BIND_NODE, str(root), json.dumps(spec_devices)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    # The host's own nodes, as the host has them: 0666 root.
    assert seen == {"null": [1, 3, "0o666", 0], "zero": [1, 5, "0o666", 0], "mynull": [1, 3, "0o666", 0]}
    # Outside that namespace only the empty files the binds covered remain.
    for name in ("null", "mynull"):
        assert stat.S_ISREG(os.lstat(root / "dev" / name).st_mode)


@pytest.fixture
def open_bundle(rootfs_template: Path) -> Iterator[Bundle]:
    """A bundle in a 0755 directory (pytest's are 0700), for ids a user namespace maps."""
    top = Path(tempfile.mkdtemp(prefix="ocirt-mounts-"))
    try:
        top.chmod(0o755)
        (top / "bundle").mkdir()
        shutil.copytree(rootfs_template, top / "bundle" / "rootfs", symlinks=True)
        yield Bundle(top / "bundle", default_config()).write()
    finally:
        shutil.rmtree(top)


def test_user_namespace_devices_in_a_container(ocirt: Ocirt, open_bundle: Bundle) -> None:
    """A container with a user namespace gets the host's nodes, as they are on the host."""
    bundle = open_bundle
    config = bundle.config
    config["linux"]["namespaces"].append({"type": "user"})
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    config["linux"]["devices"] = [
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 5, "gid": 6},
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 1000},
        {"path": "/dev/myfifo", "type": "p", "fileMode": 0o640, "uid": 5},
    ]
    names = [*DEFAULTS, "/dev/mynull", "/dev/myfifo"]
    result = run(ocirt, bundle, f"stat -c '%n %t %T %a %u %g %F' {' '.join(names)}")
    if "user namespaces are not supported yet" in result.stderr:
        pytest.skip("the namespaces plugin does not create user namespaces yet")
    seen = dict(line.split(" ", 1) for line in ok(result).splitlines())
    # Host root is unmapped inside: the nodes show the overflow ids, and keep the
    # host's mode whatever the spec asked for.
    nobody = Path("/proc/sys/kernel/overflowuid").read_text().strip()
    for name, expected in DEFAULTS.items():
        assert seen[name] == expected.replace(" 0 0 ", f" {nobody} {nobody} "), name
    assert seen["/dev/mynull"] == seen["/dev/null"] == f"1 3 666 {nobody} {nobody} character special file"
    # A fifo needs no privilege: made in the container, with the spec's mode and owner.
    assert seen["/dev/myfifo"] == "0 0 640 5 0 fifo"


def test_user_namespace_bind_keeps_locked_flags(
    ocirt: Ocirt, open_bundle: Bundle, host_mounts: HostMounts
) -> None:
    """In a user namespace a ro bind of a nosuid,nodev,noexec mount keeps those flags.

    The kernel refuses a remount that would drop them; asking to (``suid``) fails.
    """
    bundle = open_bundle
    source = bundle.path.parent / "locked"
    source.mkdir()
    host_mounts("-t", "tmpfs", "-o", "nosuid,nodev,noexec,size=1m", "tmpfs", str(source))
    host_mounts.points.append(source)
    for name in ("data", "data2"):
        (bundle.rootfs / name).mkdir()  # container root cannot create them in root's rootfs
    config = bundle.config
    config["linux"]["namespaces"].append({"type": "user"})
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    defaults = config["mounts"]
    result = run(
        ocirt,
        bundle,
        "grep ' /data ' /proc/self/mountinfo",
        mounts=[*defaults, bind(source, "/data", "rbind", "ro")],
    )
    if "user namespaces are not supported yet" in result.stderr:
        pytest.skip("the namespaces plugin does not create user namespaces yet")
    options = set(ok(result).split()[5].split(","))
    assert {"ro", "nosuid", "nodev", "noexec"} <= options
    result = run(ocirt, bundle, "true", mounts=[*defaults, bind(source, "/data2", "rbind", "ro", "suid")])
    assert result.returncode != 0
    assert "mounts[7]: mounting bind on /data2: operation not permitted" in result.stderr


# ------------------------------------------------------------ a hostile rootfs


def test_proc_link_to_root_refused(ocirt: Ocirt, bundle: Bundle) -> None:
    proc = bundle.rootfs / "proc"
    proc.rmdir()
    proc.symlink_to("/")
    result = run(ocirt, bundle, "true")
    assert result.returncode != 0
    assert "mounts[0]: proc must be mounted on an ordinary directory, and /proc is not one" in result.stderr
    assert ocirt.ids() == []


def test_sysfs_link_refused(ocirt: Ocirt, bundle: Bundle) -> None:
    sys_dir = bundle.rootfs / "sys"
    sys_dir.rmdir()
    sys_dir.symlink_to("../../../../sys")
    result = run(ocirt, bundle, "true")
    assert result.returncode != 0
    assert "sysfs must be mounted on an ordinary directory" in result.stderr


def test_dev_link_to_a_host_dir(ocirt: Ocirt, bundle: Bundle, tmp_path: Path) -> None:
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    (host_dir / "marker").write_text("host\n")
    dev = bundle.rootfs / "dev"
    dev.rmdir()
    dev.symlink_to(host_dir)  # absolute: /tmp/pytest-.../host-dir
    devices = [{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 5}]
    script = f"""
        readlink /dev; ls /dev/; stat -c '%t %T %a %u' /dev/null /dev/mynull
        grep ' {host_dir}' /proc/self/mountinfo
    """
    out = ok(run(ocirt, bundle, script, linux=linux(bundle, devices=devices)))
    lines = out.splitlines()
    assert lines[0] == str(host_dir)
    assert "null" in lines and "mynull" in lines and "marker" not in lines
    assert "1 3 666 0" in lines and "1 3 600 5" in lines
    # The /dev mounts went where the link leads inside the rootfs.
    assert any(f" {host_dir} " in line and "tmpfs" in line for line in lines)
    assert any(f" {host_dir}/pts " in line and "devpts" in line for line in lines)
    assert sorted(os.listdir(host_dir)) == ["marker"]
    assert (host_dir / "marker").read_text() == "host\n"
    assert (bundle.rootfs / str(host_dir).lstrip("/")).is_dir()


def test_destinations_through_links_and_dotdot(ocirt: Ocirt, bundle: Bundle, tmp_path: Path) -> None:
    name = unique_id("landed")
    (bundle.rootfs / "mnt").mkdir()
    (bundle.rootfs / "mnt" / "toroot").symlink_to("/")
    (bundle.rootfs / "data").symlink_to("../../../../etc")
    (bundle.rootfs / "hostlink").symlink_to(tmp_path)  # a host path, absolute
    host_file = tmp_path / "file"
    host_file.write_text("bound\n")
    mounts = with_mounts(
        bundle,
        tmpfs(f"/mnt/toroot/{name}", "size=1m"),
        tmpfs("/data", "size=2m"),
        tmpfs(f"/../../../../{name}-dotdot", "size=3m"),
        tmpfs(f"/mnt/../../mnt/toroot/../{name}-mixed", "size=4m"),
        bind(host_file, "/hostlink/file-in-rootfs"),
    )
    script = f"ls /etc | wc -l; cat {tmp_path}/file-in-rootfs"
    info, out = mountinfo_after(ocirt, bundle, script, mounts=mounts)
    assert "size=1024k" in info.super_options(f"/{name}")
    assert "size=2048k" in info.super_options("/etc")  # /data -> /etc of the rootfs
    assert "size=3072k" in info.super_options(f"/{name}-dotdot")
    assert "size=4096k" in info.super_options(f"/{name}-mixed")
    assert out.split("\n")[:2] == ["0", "bound"]
    assert str(tmp_path / "file-in-rootfs") in info
    for path in (f"/{name}", f"/{name}-dotdot", f"/{name}-mixed", str(tmp_path / "file-in-rootfs")):
        assert not os.path.lexists(path), path
        assert os.path.isdir(bundle.rootfs / path.lstrip("/")) or os.path.isfile(
            bundle.rootfs / path.lstrip("/")
        )
    assert (bundle.rootfs / "etc" / "passwd").exists()


def test_bind_over_the_root_through_a_link(ocirt: Ocirt, bundle: Bundle, tmp_path: Path) -> None:
    """A destination linking to / is the container's root: what is bound there is its root."""
    other = tmp_path / "other-root"
    shutil.copytree(bundle.rootfs, other, symlinks=True)
    (other / "marker").write_text("the other root\n")
    (bundle.rootfs / "toroot").symlink_to("/")
    defaults = bundle.config["mounts"]
    mounts = [bind(other, "/toroot", "rbind"), *defaults]
    out = ok(run(ocirt, bundle, "cat /marker; ls /proc/self/fd >/dev/null && echo proc", mounts=mounts))
    # Later mounts went on top of the new root, as they would by path.
    assert out == "the other root\nproc\n"
    assert not os.path.exists("/marker")
    host_file = tmp_path / "file"
    host_file.write_text("x\n")
    result = run(ocirt, bundle, "true", mounts=[*defaults, bind(host_file, "/toroot")])
    assert result.returncode != 0
    assert "mounts[7]: /toroot resolves to the container's root: cannot bind a file over it" in result.stderr


def test_magic_links_refused(ocirt: Ocirt, bundle: Bundle) -> None:
    """/proc/self/root before pivot_root is the host's /: never followed."""
    (bundle.rootfs / "magic").symlink_to("/proc/self/root")
    name = unique_id("magic")
    result = run(ocirt, bundle, "true", mounts=with_mounts(bundle, tmpfs(f"/magic/tmp/{name}")))
    assert result.returncode != 0
    assert "too many levels of symbolic links" in result.stderr
    assert not os.path.exists(f"/tmp/{name}")
    devices = [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3}]
    dev = bundle.rootfs / "dev"
    dev.rmdir()
    dev.symlink_to("/proc/self/root/tmp")
    mounts = [m for m in bundle.config["mounts"] if not m["destination"].startswith("/dev")]
    result = run(ocirt, bundle, "true", mounts=mounts, linux=linux(bundle, devices=devices))
    assert result.returncode != 0
    assert not os.path.exists("/tmp/x")


def test_file_destination_linking_to_a_host_file(ocirt: Ocirt, bundle: Bundle, tmp_path: Path) -> None:
    """A file bind whose destination is a link to a host file lands on the rootfs's copy."""
    (bundle.rootfs / "etc" / "shadow-link").symlink_to("/etc/passwd")
    host_file = tmp_path / "file"
    host_file.write_text("replacement\n")
    before = Path("/etc/passwd").read_bytes()
    out = ok(
        run(ocirt, bundle, "cat /etc/passwd", mounts=with_mounts(bundle, bind(host_file, "/etc/shadow-link")))
    )
    assert out == "replacement\n"
    assert Path("/etc/passwd").read_bytes() == before


# --------------------------------------------------------------- tmpfs details


def test_tmpfs_takes_the_mode_of_the_directory_it_covers(ocirt: Ocirt, bundle: Bundle) -> None:
    for name, mode in (("m700", 0o700), ("m711", 0o711)):
        (bundle.rootfs / name).mkdir()
        (bundle.rootfs / name).chmod(mode)
    mounts = with_mounts(
        bundle, tmpfs("/m700"), tmpfs("/m711", "mode=755"), tmpfs("/new", "mode=750"), tmpfs("/tmp")
    )
    out = ok(run(ocirt, bundle, "stat -c '%n %a' /m700 /m711 /new /tmp", mounts=mounts))
    # An explicit mode= wins; otherwise the covered directory's mode (/tmp is 1777).
    assert out.split("\n") == ["/m700 700", "/m711 755", "/new 750", "/tmp 1777", ""]


def test_read_only_dev_gets_its_nodes_first(ocirt: Ocirt, bundle: Bundle) -> None:
    """A read-only /dev tmpfs is made read-only after the nodes and links are in."""
    bundle.config["mounts"][1]["options"].append("ro")
    devices = [{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 5}]
    script = """
        touch /dev/x 2>/dev/null && echo rw || echo ro
        readlink /dev/fd
        awk '$5 == "/dev"' /proc/self/mountinfo
    """
    paths = ["/dev/null", "/dev/mynull"]
    seen = stat_devices(ocirt, bundle, paths, linux=linux(bundle, devices=devices))
    assert seen == {"/dev/null": DEFAULTS["/dev/null"], "/dev/mynull": "1 3 600 5 0 character special file"}
    out = ok(run(ocirt, bundle, script))
    lines = out.splitlines()
    assert lines[:2] == ["ro", "/proc/self/fd"]
    assert " ro," in lines[2] and "size=65536k" in lines[2]


# ------------------------------------------------------------- side by side


def normalized_mountinfo(text: str) -> list[str]:
    """Mount point, options, type, source and super options: what must match runc's.

    Mount ids, device numbers and cgroup paths differ by nature (runc makes its
    own cgroup), so /sys/fs/cgroup and below are left out.
    """
    lines = []
    for line in text.splitlines():
        head, _, tail = line.partition(" - ")
        fields = head.split()
        if fields[4].startswith("/sys/fs/cgroup"):
            continue
        lines.append(f"{fields[4]} {fields[5]} {tail}")
    return sorted(lines)


def test_same_container_as_runc(ocirt: Ocirt, bundle: Bundle, tree: Path, tmp_path: Path) -> None:
    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("runc is not installed")
    host_file = tmp_path / "file"
    host_file.write_text("x\n")
    (bundle.rootfs / "m700").mkdir(mode=0o700)
    devices = [
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 5, "gid": 6}
    ]
    mounts = with_mounts(
        bundle,
        tmpfs("/t/ro", "ro"),
        tmpfs("/t/flags", "nosuid", "nodev", "noexec", "noatime"),
        tmpfs("/t/strict", "strictatime", "size=1m", "mode=700"),
        tmpfs("/m700"),
        bind(host_file, "/etc/hostname", "bind"),
        bind(host_file, "/new/file", "bind", "ro"),
        bind(tree, "/rro", "rbind", "rro"),
        bind(tree, "/ro", "rbind", "ro", "nosuid"),
        bind(tree, "/rattr", "rbind", "rnosuid", "rnodev", "rnoexec", "rnoatime", "rnodiratime"),
        tmpfs("/p/shared", "rshared"),
    )
    mounts[0] = {
        **mounts[0],
        "options": ["nosuid", "noexec", "nodev"],
    }  # engines' /proc: kept by read-only paths
    cid = unique_id("same")
    script = "cat /proc/self/mountinfo; echo ===; stat -c '%n %t %T %a %u %g %F' /dev/* /m700 | sort"
    bundle.write(
        args=["sh", "-c", script],
        mounts=mounts,
        linux=linux(bundle, devices=devices, cgroupsPath=f"/ocirt-test/{cid}"),
    )
    ours = ok(ocirt("run", "--bundle", str(bundle.path), cid))
    (bundle.rootfs / "new" / "file").unlink()  # made by the first run: let runc make its own
    (bundle.rootfs / "new").rmdir()
    try:
        theirs = subprocess.run(
            [runc, "--root", str(tmp_path / "runc"), "run", "--bundle", str(bundle.path), cid],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            for leftover in (hierarchy / "ocirt-test" / cid, hierarchy / "ocirt-test"):
                if leftover.is_dir():
                    try:
                        leftover.rmdir()
                    except OSError:
                        pass  # not empty: another test's
    assert theirs.returncode == 0, theirs.stderr
    our_table, our_dev = ours.split("===\n")
    their_table, their_dev = theirs.stdout.split("===\n")
    assert normalized_mountinfo(our_table) == normalized_mountinfo(their_table)
    assert our_dev == their_dev
