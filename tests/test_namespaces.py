"""Namespaces with real containers: what /proc shows inside against the host.

Every namespace type, new or shared; user namespaces (maps, file ownership
through a bind mount, rootless runs as an unprivileged uid); time offsets;
sysctls; joining namespaces by path; and the specs that must be refused.

Bundles of containers with a user namespace live in a world-traversable
directory: pytest's tmp dirs are root's and 0700, out of reach of the host ids
container root maps to.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Bundle, Ocirt, default_config, unique_id, wait_for

#: OCI type -> name under /proc/self/ns.
PROC_NAMES = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}
SHOW_NAMESPACES = (
    'for t in cgroup ipc mnt net pid time user uts; do echo "ns $t $(readlink /proc/self/ns/$t)"; done'
)

HOST_ID, MAP_SIZE = 100000, 65536
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

#: A uid and gid with no account, for rootless runs.
UNPRIVILEGED = 61234
SETPRIV = ["setpriv", f"--reuid={UNPRIVILEGED}", f"--regid={UNPRIVILEGED}", "--clear-groups"]


# ---------------------------------------------------------------------- helpers


@pytest.fixture
def open_bundle(rootfs_template: Path) -> Iterator[Bundle]:
    """A bundle in a 0755 directory of its own under /tmp, removed afterwards."""
    top = Path(tempfile.mkdtemp(prefix="ocirt-ns-"))
    try:
        top.chmod(0o755)
        path = top / "bundle"
        path.mkdir()
        shutil.copytree(rootfs_template, path / "rootfs", symlinks=True)
        yield Bundle(path, default_config()).write()
    finally:
        shutil.rmtree(top)


@pytest.fixture(autouse=True, scope="module")
def host_devices_untouched() -> Iterator[None]:
    """Containers bind the host's device nodes: their owner and mode must not change."""
    before = [(os.stat(f"/dev/{n}").st_uid, os.stat(f"/dev/{n}").st_mode) for n in DEVICES]
    yield
    assert [(os.stat(f"/dev/{n}").st_uid, os.stat(f"/dev/{n}").st_mode) for n in DEVICES] == before


def namespaces(config: dict[str, Any]) -> list[dict[str, Any]]:
    return config["linux"]["namespaces"]


def give_rootfs(bundle: Bundle, uid: int) -> None:
    """Hand the rootfs to the host id container root maps to, as engines do for user namespaces.

    Container root can then create mount targets in it (here: ``/shared``).
    """
    for top, dirs, files in os.walk(bundle.rootfs):
        for name in [*dirs, *files]:
            os.chown(os.path.join(top, name), uid, uid, follow_symlinks=False)
    os.chown(bundle.rootfs, uid, uid)


def add_user_namespace(config: dict[str, Any], host_id: int = HOST_ID, size: int = MAP_SIZE) -> None:
    namespaces(config).append({"type": "user"})
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": host_id, "size": size}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": host_id, "size": size}]


def without_mount_namespace(config: dict[str, Any]) -> None:
    """No mount namespace: no mounts either (the container then runs in the host's /)."""
    config["linux"]["namespaces"] = [ns for ns in namespaces(config) if ns["type"] != "mount"]
    config["mounts"] = []
    config["root"]["readonly"] = False
    config["linux"]["maskedPaths"] = []
    config["linux"]["readonlyPaths"] = []


def all_sets(*caps: str) -> dict[str, list[str]]:
    """``process.capabilities`` with ``caps`` in every set (a root process keeps them across exec)."""
    return {key: list(caps) for key in ("bounding", "effective", "permitted", "inheritable", "ambient")}


def run(ocirt: Ocirt, bundle: Bundle, script: str) -> str:
    """Run ``sh -c script`` in a container; return its stdout (it must succeed)."""
    bundle.write(args=["sh", "-c", script])
    cid = unique_id("ns")
    result = ocirt("run", "--bundle", str(bundle.path), cid)
    assert result.returncode == 0, result.stderr
    assert cid not in ocirt.ids()  # run deletes it
    return result.stdout


def refused(ocirt: Ocirt, bundle: Bundle, *fragments: str) -> str:
    """Create must fail with one line naming the problem and leave nothing behind."""
    bundle.write()
    cid = unique_id("bad")
    result = ocirt.detached("create", "--bundle", str(bundle.path), cid)
    assert result.returncode != 0, "create succeeded"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert cid not in ocirt.ids()
    return lines[0]


def links(output: str) -> dict[str, str]:
    """``ns name link`` lines (SHOW_NAMESPACES) -> {name: 'net:[4026...]'}."""
    found = {}
    for line in output.splitlines():
        if line.startswith("ns "):
            _, name, link = line.split(" ", 2)
            found[name] = link
    return found


def host_link(proc_name: str) -> str:
    return os.readlink(f"/proc/self/ns/{proc_name}")


def words(text: str) -> list[list[str]]:
    """The words of each line, without SHOW_NAMESPACES's lines."""
    return [line.split() for line in text.strip().splitlines() if not line.startswith("ns ")]


# ------------------------------------------------------- every namespace type


def _listed(config: dict[str, Any], ns_type: str) -> None:
    if ns_type == "user":
        add_user_namespace(config)
    elif ns_type not in {ns["type"] for ns in namespaces(config)}:
        namespaces(config).append({"type": ns_type})


def _not_listed(config: dict[str, Any], ns_type: str) -> None:
    if ns_type == "mount":
        without_mount_namespace(config)
    config["linux"]["namespaces"] = [ns for ns in namespaces(config) if ns["type"] != ns_type]
    if ns_type == "uts":
        del config["hostname"]


@pytest.mark.parametrize("ns_type", list(PROC_NAMES))
def test_listed_namespace_is_new(ocirt: Ocirt, open_bundle: Bundle, ns_type: str) -> None:
    _listed(open_bundle.config, ns_type)
    inside = links(run(ocirt, open_bundle, SHOW_NAMESPACES))
    name = PROC_NAMES[ns_type]
    assert inside[name].startswith(f"{name}:[")
    assert inside[name] != host_link(name)


@pytest.mark.parametrize("ns_type", list(PROC_NAMES))
def test_unlisted_namespace_is_the_hosts(ocirt: Ocirt, open_bundle: Bundle, ns_type: str) -> None:
    _not_listed(open_bundle.config, ns_type)
    inside = links(run(ocirt, open_bundle, SHOW_NAMESPACES))
    name = PROC_NAMES[ns_type]
    assert inside[name] == host_link(name)


def test_every_namespace_at_once(ocirt: Ocirt, open_bundle: Bundle) -> None:
    for ns_type in PROC_NAMES:
        _listed(open_bundle.config, ns_type)
    inside = links(run(ocirt, open_bundle, SHOW_NAMESPACES))
    assert sorted(inside) == sorted(PROC_NAMES.values())
    assert [name for name, link in inside.items() if link == host_link(name)] == []


# ------------------------------------------------------------- user namespaces


def test_user_namespace_maps(ocirt: Ocirt, open_bundle: Bundle) -> None:
    add_user_namespace(open_bundle.config)
    out = run(
        ocirt,
        open_bundle,
        "id -u; id -g; cat /proc/self/uid_map; cat /proc/self/gid_map; cat /proc/self/setgroups",
    )
    assert words(out) == [
        ["0"],
        ["0"],
        ["0", str(HOST_ID), str(MAP_SIZE)],
        ["0", str(HOST_ID), str(MAP_SIZE)],
        ["allow"],  # the runtime is root: it may let the container use setgroups
    ]


def test_user_namespace_process_ids(ocirt: Ocirt, open_bundle: Bundle) -> None:
    add_user_namespace(open_bundle.config)
    open_bundle.config["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [1002]}
    assert words(run(ocirt, open_bundle, "id -u; id -g; id -G")) == [["1000"], ["1001"], ["1001", "1002"]]


def test_exec_joins_the_user_namespace(ocirt: Ocirt, open_bundle: Bundle) -> None:
    """exec's process is root of the container's user namespace, with its maps and its other namespaces."""
    add_user_namespace(open_bundle.config)
    give_rootfs(open_bundle, HOST_ID)
    open_bundle.write(args=["sleep", "60"])
    cid = unique_id("usexec")
    assert ocirt.detached("run", "-d", "--bundle", str(open_bundle.path), cid).returncode == 0
    try:
        init = ocirt.state(cid)["pid"]
        result = ocirt(
            "exec",
            "--user",
            "1000:1000",
            cid,
            "sh",
            "-c",
            f"{SHOW_NAMESPACES}; id -u; cat /proc/self/uid_map",
        )
        assert result.returncode == 0, result.stderr
        inside = links(result.stdout)
        for name in ("user", "pid", "ipc", "uts", "mnt", "net"):
            assert inside[name] == os.readlink(f"/proc/{init}/ns/{name}"), name
        assert words(result.stdout) == [["1000"], ["0", str(HOST_ID), str(MAP_SIZE)]]
        status = Path(f"/proc/{init}/status").read_text()
        assert f"Uid:\t{HOST_ID}\t" in status  # the init's host uid: the maps hold
    finally:
        ocirt("delete", "--force", cid)


def test_hooks_of_a_user_namespace_container(ocirt: Ocirt, open_bundle: Bundle) -> None:
    """createRuntime runs in the runtime's namespaces, createContainer in the container's mount
    and user namespaces (as the container's root), each with the init's pid."""
    add_user_namespace(open_bundle.config)
    give_rootfs(open_bundle, HOST_ID)
    hooks = open_bundle.path.parent / "hooks"
    hooks.mkdir()
    (hooks / "seen").touch()
    (hooks / "seen").chmod(0o666)  # createContainer writes it as the container's root, HOST_ID
    script = hooks / "record"
    script.write_text(
        "#!/bin/sh\n"
        "pid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p')\n"
        "ns() { readlink /proc/self/ns/$1; }\n"
        f"echo $1 $pid $(ns user) $(ns mnt) $(id -u) >> {hooks}/seen\n"
    )
    script.chmod(0o755)
    kinds = ("prestart", "createRuntime", "createContainer")
    open_bundle.write(
        args=["sleep", "60"],
        hooks={kind: [{"path": str(script), "args": ["record", kind]}] for kind in kinds},
    )
    cid = unique_id("ushooks")
    result = ocirt.detached("create", "--bundle", str(open_bundle.path), cid)
    assert result.returncode == 0, result.stderr
    try:
        init = ocirt.state(cid)["pid"]
        seen = {line.split()[0]: line.split()[1:] for line in (hooks / "seen").read_text().splitlines()}
        host = [os.readlink("/proc/self/ns/user"), os.readlink("/proc/self/ns/mnt"), "0"]
        theirs = [os.readlink(f"/proc/{init}/ns/user"), os.readlink(f"/proc/{init}/ns/mnt"), "0"]
        assert seen["prestart"] == [str(init), *host]
        assert seen["createRuntime"] == [str(init), *host]
        assert seen["createContainer"] == [str(init), *theirs]
    finally:
        ocirt("delete", "--force", cid)


def test_files_created_in_user_namespace_belong_to_mapped_host_ids(ocirt: Ocirt, open_bundle: Bundle) -> None:
    shared = open_bundle.path.parent / "shared"
    shared.mkdir()
    os.chown(shared, HOST_ID, HOST_ID)  # container root's own directory
    give_rootfs(open_bundle, HOST_ID)
    add_user_namespace(open_bundle.config)
    open_bundle.config["process"]["capabilities"] = all_sets("CAP_CHOWN")  # chown 5:7
    open_bundle.config["mounts"].append(
        {"destination": "/shared", "type": "bind", "source": str(shared), "options": ["rbind", "rw"]}
    )
    out = run(
        ocirt, open_bundle, "touch /shared/by-root /shared/by-5-7; chown 5:7 /shared/by-5-7; ls /shared"
    )
    assert out.split() == ["by-5-7", "by-root"]
    by_root, by_5_7 = (shared / "by-root").stat(), (shared / "by-5-7").stat()
    assert (by_root.st_uid, by_root.st_gid) == (HOST_ID, HOST_ID)
    assert (by_5_7.st_uid, by_5_7.st_gid) == (HOST_ID + 5, HOST_ID + 7)


def test_join_user_namespace_with_other_mappings_is_refused(ocirt: Ocirt, open_bundle: Bundle) -> None:
    """A joined user namespace keeps its maps: a spec asking for others fails at setup."""
    with SleepingContainer(ocirt, open_bundle) as pid:
        config = default_config()
        config["linux"]["namespaces"] = [{"type": "user", "path": f"/proc/{pid}/ns/user"}, {"type": "mount"}]
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": HOST_ID + 1, "size": MAP_SIZE}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": HOST_ID, "size": MAP_SIZE}]
        del config["hostname"]
        refused(ocirt, second_bundle(open_bundle, config), "linux.uidMappings", "joined user namespace")


# --------------------------------------------------------------- time offsets


@pytest.mark.parametrize("with_user_namespace", [False, True], ids=["runtime", "in-user-namespace"])
def test_time_offsets(ocirt: Ocirt, open_bundle: Bundle, with_user_namespace: bool) -> None:
    if with_user_namespace:
        add_user_namespace(open_bundle.config)
    namespaces(open_bundle.config).append({"type": "time"})
    open_bundle.config["linux"]["timeOffsets"] = {
        "boottime": {"secs": 1_000_000, "nanosecs": 0},
        "monotonic": {"secs": 7, "nanosecs": 500},
    }
    before = float(Path("/proc/uptime").read_text().split()[0])
    out = run(ocirt, open_bundle, "cat /proc/uptime; cat /proc/self/timens_offsets")
    after = float(Path("/proc/uptime").read_text().split()[0])
    lines = words(out)
    inside = float(lines[0][0])
    assert before + 1_000_000 <= inside <= after + 1_000_000
    assert sorted(lines[1:]) == [["boottime", "1000000", "0"], ["monotonic", "7", "500"]]


# -------------------------------------------------------------------- sysctl

SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.ip_default_ttl": "42",
    "kernel.shmmax": "12345678",
    "fs.mqueue.msg_max": "77",
    "kernel.domainname": "sysctl.test",  # runc allows it with a new uts namespace
}


def _proc_sys(key: str) -> str:
    return Path("/proc/sys", *key.split(".")).read_text().strip()


@pytest.mark.parametrize("with_user_namespace", [False, True], ids=["root", "in-user-namespace"])
def test_sysctl_inside_only(ocirt: Ocirt, open_bundle: Bundle, with_user_namespace: bool) -> None:
    if with_user_namespace:
        add_user_namespace(open_bundle.config)
    open_bundle.config["linux"]["sysctl"] = SYSCTLS
    host_before = {key: _proc_sys(key) for key in SYSCTLS}
    assert host_before["net.ipv4.ip_default_ttl"] != "42"  # else the test could not see a leak
    script = "; ".join(f"cat /proc/sys/{key.replace('.', '/')}" for key in SYSCTLS)
    out = run(ocirt, open_bundle, script)
    assert out.split() == list(SYSCTLS.values())
    assert {key: _proc_sys(key) for key in SYSCTLS} == host_before


def _drop(config: dict[str, Any], ns_type: str) -> None:
    config["linux"]["namespaces"] = [ns for ns in namespaces(config) if ns["type"] != ns_type]


SYSCTL_REFUSALS: dict[str, tuple[dict[str, Any], str | None, tuple[str, ...]]] = {
    "ipc key, host ipc": ({"kernel.shmmax": "1"}, "ipc", ("linux.sysctl.kernel.shmmax", "ipc namespace")),
    "mqueue key, host ipc": ({"fs.mqueue.msg_max": "20"}, "ipc", ("fs.mqueue.msg_max", "ipc namespace")),
    "net key, host network": ({"net.ipv4.ip_forward": "1"}, "network", ("ip_forward", "network namespace")),
    "hostname": ({"kernel.hostname": "x"}, None, ("kernel.hostname", '"hostname" field')),
    "domainname, host uts": ({"kernel.domainname": "x"}, "uts", ("kernel.domainname", "new uts namespace")),
    "not namespaced": (
        {"vm.swappiness": "10"},
        None,
        ("vm.swappiness", "not in a separate kernel namespace"),
    ),
    "not namespaced, slash form": ({"kernel/panic": "1"}, None, ("kernel/panic", "not in a separate")),
    "not a name": ({"net..x": "1"}, None, ("net..x", "not a sysctl name")),
    "value not a string": ({"net.ipv4.ip_forward": 1}, None, ("ip_forward", "must be a string")),
}


@pytest.mark.parametrize("case", list(SYSCTL_REFUSALS))
def test_sysctl_refused(ocirt: Ocirt, bundle: Bundle, case: str) -> None:
    settings, drop, expect = SYSCTL_REFUSALS[case]
    if drop:
        _drop(bundle.config, drop)
    if drop == "uts":
        del bundle.config["hostname"]
    bundle.config["linux"]["sysctl"] = settings
    refused(ocirt, bundle, *expect)


def test_sysctl_net_refused_in_the_hosts_network_namespace_by_path(ocirt: Ocirt, bundle: Bundle) -> None:
    _drop(bundle.config, "network")
    namespaces(bundle.config).append({"type": "network", "path": f"/proc/{os.getpid()}/ns/net"})
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    refused(ocirt, bundle, "net.ipv4.ip_forward", "host's network namespace")


# ----------------------------------------------------------- joining by path


@pytest.fixture
def persistent_namespaces() -> Iterator[dict[str, Path]]:
    """net, uts, ipc, cgroup and time namespaces kept by bind mounts (unshare --net=FILE...)."""
    top = Path(tempfile.mkdtemp(prefix="ocirt-ns-keep-"))
    kinds = {"network": "net", "uts": "uts", "ipc": "ipc", "cgroup": "cgroup", "time": "time"}
    files = {ns_type: top / name for ns_type, name in kinds.items()}
    for f in files.values():
        f.touch()
    try:
        flags = [f"--{name}={files[ns_type]}" for ns_type, name in kinds.items()]
        subprocess.run(["unshare", *flags, "true"], check=True, timeout=10)
        yield files
    finally:
        for f in files.values():
            subprocess.run(["umount", str(f)], capture_output=True, timeout=10)
        shutil.rmtree(top)


def test_join_namespaces_by_path(
    ocirt: Ocirt, bundle: Bundle, persistent_namespaces: dict[str, Path]
) -> None:
    config = bundle.config
    del config["hostname"]  # a joined uts namespace keeps its name
    for ns_type, path in persistent_namespaces.items():
        _drop(config, ns_type)
        namespaces(config).append({"type": ns_type, "path": str(path)})
    inside = links(run(ocirt, bundle, SHOW_NAMESPACES))
    for ns_type, path in persistent_namespaces.items():
        name = PROC_NAMES[ns_type]
        assert inside[name] == f"{name}:[{path.stat().st_ino}]", ns_type
        assert inside[name] != host_link(name)


def second_bundle(first: Bundle, config: dict[str, Any]) -> Bundle:
    """Another bundle (config.json only) using ``first``'s rootfs."""
    path = first.path.parent / unique_id("second")
    path.mkdir()
    config["root"]["path"] = str(first.rootfs)
    return Bundle(path, config).write()


class SleepingContainer:
    """A container with its own user, pid, network, ipc and uts namespaces, sleeping."""

    def __init__(self, ocirt: Ocirt, bundle: Bundle) -> None:
        self.ocirt, self.bundle, self.cid = ocirt, bundle, unique_id("sleeper")

    def __enter__(self) -> int:
        config = json.loads(json.dumps(self.bundle.config))
        add_user_namespace(config)
        config["process"]["args"] = ["sleep", "60"]
        (self.bundle.path / "config.json").write_text(json.dumps(config))
        result = self.ocirt.detached("run", "--detach", "--bundle", str(self.bundle.path), self.cid)
        assert result.returncode == 0, result.stderr
        return int(self.ocirt.state(self.cid)["pid"])

    def __exit__(self, *exc: object) -> None:
        self.ocirt("delete", "--force", self.cid, check=True)


def test_join_a_containers_user_and_pid_namespaces(ocirt: Ocirt, open_bundle: Bundle) -> None:
    """A second container in the first one's namespaces, as a pod's containers share them."""
    with SleepingContainer(ocirt, open_bundle) as pid:
        theirs = {name: os.readlink(f"/proc/{pid}/ns/{name}") for name in PROC_NAMES.values()}
        config = default_config()
        joined = ("user", "pid", "network", "ipc", "uts")
        config["linux"]["namespaces"] = [
            *({"type": t, "path": f"/proc/{pid}/ns/{PROC_NAMES[t]}"} for t in joined),
            {"type": "mount"},
        ]
        del config["hostname"]
        out = run(
            ocirt,
            second_bundle(open_bundle, config),
            f"{SHOW_NAMESPACES}; id -u; cat /proc/self/uid_map; echo $$",
        )
        inside = links(out)
        for t in joined:
            assert inside[PROC_NAMES[t]] == theirs[PROC_NAMES[t]], t
        assert inside["mnt"] not in (theirs["mnt"], host_link("mnt"))
        uid, uid_map, own_pid = words(out)
        assert (uid, uid_map) == (["0"], ["0", str(HOST_ID), str(MAP_SIZE)])
        assert own_pid != ["1"]  # the first container's sleep is pid 1 there


def test_join_path_of_the_wrong_kind(ocirt: Ocirt, bundle: Bundle) -> None:
    _drop(bundle.config, "uts")
    namespaces(bundle.config).append({"type": "uts", "path": "/proc/self/ns/net"})
    del bundle.config["hostname"]
    refused(ocirt, bundle, "linux.namespaces[", ".path", "is a network namespace, not a uts namespace")


def test_join_path_that_is_no_namespace(ocirt: Ocirt, bundle: Bundle) -> None:
    _drop(bundle.config, "network")
    namespaces(bundle.config).append({"type": "network", "path": str(bundle.path / "config.json")})
    refused(ocirt, bundle, "linux.namespaces[", "is not a namespace file")


# ------------------------------------------------------------------ refusals


def test_user_namespace_without_mappings_refused(ocirt: Ocirt, bundle: Bundle) -> None:
    namespaces(bundle.config).append({"type": "user"})
    refused(ocirt, bundle, "linux.uidMappings", "needs mappings")


def test_mappings_without_user_namespace_refused(ocirt: Ocirt, bundle: Bundle) -> None:
    bundle.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": HOST_ID, "size": 10}]
    refused(ocirt, bundle, "linux.uidMappings", "need a user namespace")


@pytest.mark.parametrize(
    ("mapping", "expect"),
    [
        ({"containerID": 0, "hostID": HOST_ID, "size": 0}, ("uidMappings[0].size", "at least 1")),
        ({"containerID": 0, "hostID": -1, "size": 1}, ("uidMappings[0].hostID", "-1")),
        ({"containerID": 5, "hostID": HOST_ID, "size": 1}, ("linux.uidMappings", "container uid 0")),
        ({"containerID": 10, "hostID": HOST_ID + 5, "size": 1}, ("uidMappings[1]", "hostID range overlaps")),
        ({"containerID": 9, "hostID": 0, "size": 2}, ("uidMappings[1]", "containerID range overlaps")),
    ],
    ids=["size 0", "negative host id", "root unmapped", "host ids overlap", "container ids overlap"],
)
def test_bad_mappings_refused(
    ocirt: Ocirt, bundle: Bundle, mapping: dict[str, int], expect: tuple[str, ...]
) -> None:
    add_user_namespace(bundle.config)
    if "overlap" in " ".join(expect):
        bundle.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": HOST_ID, "size": 10}, mapping]
    else:
        bundle.config["linux"]["uidMappings"] = [mapping]
    refused(ocirt, bundle, *expect)


def test_process_user_not_mapped_refused(ocirt: Ocirt, bundle: Bundle) -> None:
    add_user_namespace(bundle.config, size=1000)
    bundle.config["process"]["user"] = {"uid": 5000, "gid": 0}
    refused(ocirt, bundle, "process.user.uid", "5000 is not mapped")


@pytest.mark.parametrize(
    ("offsets", "joined", "expect"),
    [
        ({"boottime": {"secs": 1}}, None, ("linux.timeOffsets", "new time namespace")),
        ({"boottime": {"secs": 1}}, "/proc/self/ns/time", ("linux.timeOffsets", "new time namespace")),
        ({"realtime": {"secs": 1}}, "", ("timeOffsets.realtime", "unknown clock")),
        ({"boottime": {"secs": 1, "nanosecs": 10**9}}, "", ("boottime.nanosecs", "999999999")),
    ],
    ids=["no time namespace", "joined time namespace", "unknown clock", "nanosecs too large"],
)
def test_bad_time_offsets_refused(
    ocirt: Ocirt, bundle: Bundle, offsets: dict[str, Any], joined: str | None, expect: tuple[str, ...]
) -> None:
    if joined is not None:
        namespaces(bundle.config).append({"type": "time", **({"path": joined} if joined else {})})
    bundle.config["linux"]["timeOffsets"] = offsets
    refused(ocirt, bundle, *expect)


# ------------------------------------------------------------------- rootless


def _unprivileged_python() -> str | None:
    """An interpreter the unprivileged uid can start (the venv's may live under a 0700 home)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        check = f'exec "{candidate}" -I -c "import sys; sys.exit(sys.version_info < (3, 11))"'
        if subprocess.run([*SETPRIV, "sh", "-c", check], capture_output=True, timeout=30).returncode == 0:
            return candidate
    return None


class Rootless:
    """Runs ocirt as UNPRIVILEGED with ``$XDG_RUNTIME_DIR`` in ``home`` and no ``--root``."""

    def __init__(self, python: str, home: Path) -> None:
        self.home = home
        self.runtime_dir = home / "run"
        self.runtime_dir.mkdir()
        os.chown(self.runtime_dir, UNPRIVILEGED, UNPRIVILEGED)
        self.runtime_dir.chmod(0o700)
        self.log = self.runtime_dir / "ocirt.log"
        # The project and its dependencies, readable by anyone, on a Python the user can run.
        path = [str(REPO), sysconfig.get_paths()["purelib"]]
        entry = f"import sys; sys.path[:0] = {path!r}; from ocirt.cli import main; sys.exit(main())"
        self.command = [*SETPRIV, "env", f"XDG_RUNTIME_DIR={self.runtime_dir}", python, "-I", "-c", entry]

    def __call__(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            code = subprocess.run(
                [*self.command, "--log", str(self.log), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=cwd,
                timeout=30,
            ).returncode
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(args, code, out.read(), err.read())

    @property
    def state_root(self) -> Path:
        return self.runtime_dir / "ocirt"

    def ids(self) -> list[str]:
        return sorted(p.name for p in self.state_root.iterdir()) if self.state_root.exists() else []


@pytest.fixture
def rootless(open_bundle: Bundle) -> Iterator[Rootless]:
    python = _unprivileged_python()
    if python is None:
        pytest.skip(f"no Python >= 3.11 that uid {UNPRIVILEGED} can start")
    home = open_bundle.path.parent
    runner = Rootless(python, home)
    os.chown(open_bundle.path, UNPRIVILEGED, UNPRIVILEGED)  # `ocirt spec` writes config.json there
    yield runner
    for cid in runner.ids():
        runner("delete", "--force", cid)
    assert runner.ids() == [], "rootless container state left behind"


def rootless_config(rootless: Rootless, bundle: Bundle, args: list[str]) -> dict[str, Any]:
    """``ocirt spec --rootless``, written by the unprivileged user, made non-interactive."""
    (bundle.path / "config.json").unlink()
    result = rootless("spec", "--rootless", cwd=bundle.path)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads((bundle.path / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    return config


def test_rootless_run(rootless: Rootless, open_bundle: Bundle) -> None:
    shared = open_bundle.path.parent / "shared"
    shared.mkdir()
    os.chown(shared, UNPRIVILEGED, UNPRIVILEGED)
    give_rootfs(open_bundle, UNPRIVILEGED)
    script = (
        f"{SHOW_NAMESPACES}; id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; "
        "touch /shared/made-inside"
    )
    config = rootless_config(rootless, open_bundle, ["sh", "-c", script])
    config["mounts"].append(
        {"destination": "/shared", "type": "bind", "source": str(shared), "options": ["rbind"]}
    )
    Bundle(open_bundle.path, config).write()

    result = rootless("run", "--bundle", str(open_bundle.path), "rootless1")
    assert result.returncode == 0, result.stderr
    inside = links(result.stdout)
    for name in ("user", "pid", "ipc", "uts", "mnt"):
        assert inside[name] != host_link(name), name
    assert inside["net"] == host_link("net")  # the rootless spec keeps the host's network
    tail = words(result.stdout)
    assert tail == [["0"], ["0"], ["0", str(UNPRIVILEGED), "1"], ["0", str(UNPRIVILEGED), "1"], ["deny"]]
    made = (shared / "made-inside").stat()
    assert (made.st_uid, made.st_gid) == (UNPRIVILEGED, UNPRIVILEGED)
    assert rootless.state_root.is_dir()  # $XDG_RUNTIME_DIR/ocirt without --root
    assert rootless.ids() == []


def test_rootless_create_start_delete(rootless: Rootless, open_bundle: Bundle) -> None:
    config = rootless_config(rootless, open_bundle, ["sleep", "60"])
    Bundle(open_bundle.path, config).write()
    pid_file = rootless.runtime_dir / "init.pid"
    result = rootless("create", "--bundle", str(open_bundle.path), "--pid-file", str(pid_file), "rootless2")
    assert result.returncode == 0, result.stderr
    assert rootless.ids() == ["rootless2"]
    pid = int(pid_file.read_text())
    assert f"Uid:\t{UNPRIVILEGED}\t" in Path(f"/proc/{pid}/status").read_text()
    assert rootless("start", "rootless2").returncode == 0
    joined = rootless(
        "exec", "rootless2", "sh", "-c", "id -u; readlink /proc/self/ns/user; readlink /proc/self/ns/pid"
    )
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout.split() == [
        "0",
        os.readlink(f"/proc/{pid}/ns/user"),
        os.readlink(f"/proc/{pid}/ns/pid"),
    ]
    state = json.loads(rootless("state", "rootless2").stdout)
    assert (state["status"], state["pid"]) == ("running", pid)
    deleted = rootless("delete", "--force", "rootless2")
    assert deleted.returncode == 0, deleted.stderr
    assert wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid))
    assert rootless.ids() == []


def _zombie(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return raw[raw.rfind(")") + 2] in "ZX"


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ("other uid", ("linux.uidMappings", "only map its own uid", str(UNPRIVILEGED))),
        ("range", ("linux.gidMappings", "with size 1")),
        ("no user namespace", ("linux.namespaces", "inside a user namespace")),
        ("additional groups", ("process.user.additionalGids", "setgroups is denied")),
    ],
)
def test_rootless_refusals(
    rootless: Rootless, open_bundle: Bundle, change: str, expect: tuple[str, ...]
) -> None:
    config = rootless_config(rootless, open_bundle, ["true"])
    linux = config["linux"]
    if change == "other uid":
        linux["uidMappings"][0]["hostID"] = UNPRIVILEGED + 1
    elif change == "range":
        linux["gidMappings"][0]["size"] = 10
    elif change == "no user namespace":
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "user"]
        del linux["uidMappings"], linux["gidMappings"]
    else:
        config["process"]["user"]["additionalGids"] = [5]
    Bundle(open_bundle.path, config).write()
    result = rootless("create", "--bundle", str(open_bundle.path), "rootless3")
    assert result.returncode != 0
    assert len(result.stderr.splitlines()) == 1, result.stderr
    for fragment in expect:
        assert fragment in result.stderr, f"{fragment!r} not in {result.stderr!r}"
    assert rootless.ids() == []


def test_default_state_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from ocirt.core import state

    assert state.default_root() == "/run/ocirt"  # the tests run as root
    monkeypatch.setattr(state.os, "geteuid", lambda: 4242)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/somewhere/4242")
    assert state.default_root() == "/somewhere/4242/ocirt"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert state.default_root() == "/run/user/4242/ocirt"


def test_user_namespace_mount_fallbacks(ocirt: Ocirt, open_bundle: Bundle) -> None:
    """As runc: sysfs and mqueue bound from the host where a user namespace may not
    mount them (no network namespace of its own), devpts without an unmapped gid=5."""
    config = open_bundle.config
    _drop(config, "network")
    add_user_namespace(config, size=1)  # gid 5 (tty) is not mapped
    give_rootfs(open_bundle, HOST_ID)
    out = run(ocirt, open_bundle, "cat /proc/self/mountinfo; ls /sys/kernel >/dev/null && echo sys-ok")
    mounts = {line.split(" - ")[0].split()[4]: line for line in out.splitlines() if " - " in line}
    assert " - sysfs " in mounts["/sys"] and mounts["/sys"].split()[5].startswith("ro")
    assert " - devpts " in mounts["/dev/pts"] and "gid=5" not in mounts["/dev/pts"]
    assert "sys-ok" in out


def test_new_network_namespace_has_loopback_up(ocirt: Ocirt, open_bundle: Bundle) -> None:
    open_bundle.config["process"]["capabilities"] = all_sets("CAP_NET_RAW")  # busybox ping
    out = run(
        ocirt,
        open_bundle,
        "cat /sys/class/net/lo/flags; ls /sys/class/net; ping -c1 -W1 127.0.0.1 >/dev/null && echo ping-ok",
    )
    flags, *rest = out.split()
    assert int(flags, 16) & 0x1, f"lo is down: flags {flags}"  # IFF_UP
    assert rest[:-1] == ["lo"]  # nothing but loopback
    assert rest[-1] == "ping-ok"
