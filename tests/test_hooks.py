"""The spec's ``hooks``: each kind at its place, with the state it gets, and its failures.

Hooks are small /bin/sh scripts writing what they saw (their name, the state's
status and pid, args, env, cwd, namespace links) as lines of a shared record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import BUSYBOX, Bundle, Ocirt

RECORD_SCRIPT = """#!/bin/sh
state=$(cat)
status=$(echo "$state" | sed -n 's/.*"status": *"\\([a-z]*\\)".*/\\1/p')
pid=$(echo "$state" | sed -n 's/.*"pid": *\\([0-9]*\\).*/\\1/p')
echo "$0 $status $pid $*" >> {record}
echo "$state" > {record}.$(basename "$0").json
echo "cwd=$(pwd) env=$(env | grep ^HOOKVAR= || true)" > {record}.$(basename "$0").env
"""


class Hooks:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.record = tmp / "record"

    def script(self, name: str, body: str | None = None) -> str:
        path = self.tmp / name
        path.write_text(body if body is not None else RECORD_SCRIPT.format(record=self.record))
        path.chmod(0o755)
        return str(path)

    def lines(self) -> list[list[str]]:
        if not self.record.exists():
            return []
        return [line.split() for line in self.record.read_text().splitlines()]

    def state(self, name: str) -> dict[str, Any]:
        return json.loads((self.tmp / f"record.{name}.json").read_text())


@pytest.fixture
def hk(tmp_path: Path) -> Hooks:
    d = tmp_path / "hooks"
    d.mkdir()
    return Hooks(d)


KINDS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]


def all_kinds(hk: Hooks) -> dict[str, list[dict[str, Any]]]:
    return {kind: [{"path": hk.script(kind)}] for kind in KINDS}


def share(bundle: Bundle, hk: Hooks) -> None:
    """Bind the hooks' directory at the same path in the container (startContainer runs there)."""
    bundle.config["mounts"].append(
        {"destination": str(hk.tmp), "type": "bind", "source": str(hk.tmp), "options": ["rbind", "rw"]}
    )


#: Each hook kind as it runs, with the status its state shows.
EVERY_KIND_IN_ORDER = [
    ("prestart", "creating"),
    ("createRuntime", "creating"),
    ("createContainer", "creating"),
    ("startContainer", "created"),
    ("poststart", "running"),
    ("poststop", "stopped"),
]


def test_each_kind_at_its_place(ocirt: Ocirt, bundle: Bundle, hk: Hooks, cid: str) -> None:
    share(bundle, hk)
    bundle.write(args=["sleep", "30"], hooks=all_kinds(hk))
    assert ocirt.detached("create", "--bundle", str(bundle.path), cid).returncode == 0
    pid = ocirt.state(cid)["pid"]
    assert [(line[0].rsplit("/", 1)[1], line[1]) for line in hk.lines()] == [
        ("prestart", "creating"),
        ("createRuntime", "creating"),
        ("createContainer", "creating"),
    ]
    assert all(int(line[2]) == pid for line in hk.lines())
    result = ocirt.detached("start", cid)
    assert result.returncode == 0, result.stderr
    ocirt("kill", cid, "KILL", check=True)
    assert _stopped(ocirt, cid)
    ocirt("delete", cid, check=True)
    seen = [(line[0].rsplit("/", 1)[1], line[1]) for line in hk.lines()]
    assert seen == EVERY_KIND_IN_ORDER
    state = hk.state("poststart")
    assert state["id"] == cid and state["pid"] == pid and state["bundle"] == str(bundle.path)
    assert state["ociVersion"]
    assert hk.state("poststop")["pid"] == 0


@pytest.mark.parametrize("with_poststart", [True, False])
def test_each_kind_under_run(ocirt: Ocirt, bundle: Bundle, hk: Hooks, cid: str, with_poststart: bool) -> None:
    """run starts the container from its create: through exec.fifo when poststart hooks
    must follow the exec, else over the handshake channel. Every kind runs in its place."""
    share(bundle, hk)
    hooks = all_kinds(hk)
    if not with_poststart:
        del hooks["poststart"]
    bundle.write(args=["true"], hooks=hooks)
    result = ocirt("run", "--bundle", str(bundle.path), cid)
    assert result.returncode == 0, result.stderr
    seen = [(line[0].rsplit("/", 1)[1], line[1]) for line in hk.lines()]
    assert seen == [e for e in EVERY_KIND_IN_ORDER if with_poststart or e[0] != "poststart"]
    assert not (ocirt.root / cid).exists()


def _stopped(ocirt: Ocirt, cid: str) -> bool:
    from conftest import wait_for

    return wait_for(lambda: ocirt.state(cid)["status"] == "stopped")


def test_annotations_in_state(ocirt: Ocirt, bundle: Bundle, hk: Hooks, cid: str) -> None:
    bundle.write(annotations={"a.b": "c"}, hooks={"createRuntime": [{"path": hk.script("cr")}]})
    assert ocirt.detached("run", "--bundle", str(bundle.path), cid).returncode == 0
    assert hk.state("cr")["annotations"] == {"a.b": "c"}


def test_args_env_cwd(ocirt: Ocirt, bundle: Bundle, hk: Hooks, cid: str) -> None:
    """args[0] is argv[0]: busybox, given "sh", runs as the shell."""
    path = hk.script("h")
    out = hk.tmp / "argv"
    shell = f'echo "$0 $* $HOOKVAR $(pwd)" > {out}'
    bundle.write(
        hooks={
            "prestart": [{"path": BUSYBOX, "args": ["sh", "-c", shell, "zero", "one"], "env": ["HOOKVAR=x"]}],
            "poststart": [{"path": path}],
        }
    )
    assert ocirt.detached("run", "--bundle", str(bundle.path), cid).returncode == 0
    assert out.read_text().split() == ["zero", "one", "x", str(bundle.path)]
    (line,) = hk.lines()
    assert line[0] == path and line[3:] == []  # no args: argv is [path]
    assert (hk.tmp / "record.h.env").read_text().startswith(f"cwd={bundle.path} ")


def test_env_exactly(ocirt: Ocirt, bundle: Bundle, hk: Hooks, cid: str) -> None:
    out = hk.tmp / "env"
    path = hk.script("e", f"#!/bin/sh\nenv > {out}\n")
    bundle.write(hooks={"createRuntime": [{"path": path, "env": ["HOOKVAR=1", "OTHER=2"]}]})
    assert ocirt.detached("run", "--bundle", str(bundle.path), cid).returncode == 0
    env = {line.split("=", 1)[0] for line in out.read_text().splitlines()}
    assert {"HOOKVAR", "OTHER"} <= env and "OCIRT_ROOT" not in env and "HOME" not in env


def test_init_side_hooks_run_in_the_container(ocirt: Ocirt, bundle: Bundle, hk: Hooks, cid: str) -> None:
    """createContainer sees the container's mount namespace; startContainer its root."""
    out = hk.tmp / "ns"
    script = f"#!/bin/sh\nreadlink /proc/self/ns/mnt >> {out}\n"
    cc = hk.script("cc", script)
    bundle.config["root"]["readonly"] = False
    marker = bundle.rootfs / "start-hook"
    marker.write_text("#!/bin/sh\ncat > /start-saw\n")
    marker.chmod(0o755)
    bundle.write(
        args=["sleep", "30"],
        hooks={"createContainer": [{"path": cc}], "startContainer": [{"path": "/start-hook"}]},
    )
    assert ocirt.detached("create", "--bundle", str(bundle.path), cid).returncode == 0
    pid = ocirt.state(cid)["pid"]
    assert out.read_text().strip() == os.readlink(f"/proc/{pid}/ns/mnt")
    assert not (bundle.rootfs / "start-saw").exists()
    assert ocirt.detached("start", cid).returncode == 0
    saw = json.loads((bundle.rootfs / "start-saw").read_text())
    assert saw["status"] == "created" and saw["pid"] == pid


def test_prestart_sees_the_container_netns(ocirt: Ocirt, bundle: Bundle, hk: Hooks, cid: str) -> None:
    out = hk.tmp / "netns"
    script = (
        f"#!/bin/sh\npid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p')\nreadlink /proc/$pid/ns/net > {out}\n"
    )
    bundle.write(args=["sleep", "30"], hooks={"prestart": [{"path": hk.script("net", script)}]})
    assert ocirt.detached("create", "--bundle", str(bundle.path), cid).returncode == 0
    pid = ocirt.state(cid)["pid"]
    seen = out.read_text().strip()
    assert seen.startswith("net:[")
    assert seen == os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")


def _fails(hk: Hooks, name: str, code: int = 3) -> str:
    return hk.script(name, f"#!/bin/sh\necho went wrong in {name} >&2\nexit {code}\n")


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_hook(ocirt: Ocirt, bundle: Bundle, hk: Hooks, cid: str, kind: str) -> None:
    bad = _fails(hk, "bad")
    bundle.write(
        args=["sleep", "30"],
        hooks={kind: [{"path": hk.script("ok")}, {"path": bad}], "poststop": [{"path": hk.script("ps")}]},
    )
    result = ocirt.detached("create", "--bundle", str(bundle.path), cid)
    assert result.returncode != 0
    assert f"{kind} hook #1 ({bad}): exit status 3: went wrong in bad" in result.stderr
    assert ocirt.ids() == []
    assert [line[0].rsplit("/", 1)[1] for line in hk.lines()] == ["ok"]  # no poststop


def test_failing_start_container_hook(ocirt: Ocirt, bundle: Bundle, hk: Hooks, cid: str) -> None:
    marker = bundle.rootfs / "bad-hook"
    marker.write_text("#!/bin/sh\necho no start >&2\nexit 5\n")
    marker.chmod(0o755)
    bundle.write(
        args=["sh", "-c", "echo ran > /ran; sleep 30"],
        hooks={"startContainer": [{"path": "/bad-hook"}], "poststart": [{"path": hk.script("post")}]},
    )
    assert ocirt.detached("create", "--bundle", str(bundle.path), cid).returncode == 0
    result = ocirt.detached("start", cid)
    assert result.returncode != 0
    assert "startContainer hook #0 (/bad-hook): exit status 5: no start" in result.stderr
    assert not (bundle.rootfs / "ran").exists()
    assert hk.lines() == []
    assert ocirt.state(cid)["status"] == "stopped"
    ocirt("delete", cid, check=True)


def test_timeout_kills_the_hook(ocirt: Ocirt, bundle: Bundle, hk: Hooks, cid: str) -> None:
    pidfile = hk.tmp / "sleeper"
    path = hk.script("slow", f"#!/bin/sh\necho $$ > {pidfile}\nsleep 60\n")
    bundle.write(hooks={"createRuntime": [{"path": path, "timeout": 1}]})
    result = ocirt.detached("create", "--bundle", str(bundle.path), cid)
    assert result.returncode != 0
    assert f"createRuntime hook #0 ({path}): timed out after 1s" in result.stderr
    assert ocirt.ids() == []
    assert not os.path.exists(f"/proc/{pidfile.read_text().strip()}")


@pytest.mark.parametrize("kind", ["poststart", "poststop"])
def test_failing_post_hooks_warn(ocirt: Ocirt, bundle: Bundle, hk: Hooks, cid: str, kind: str) -> None:
    bad = _fails(hk, "bad")
    bundle.write(hooks={kind: [{"path": bad}, {"path": hk.script("after")}]})
    result = ocirt.detached("run", "--bundle", str(bundle.path), cid)
    assert result.returncode == 0, result.stderr
    assert [line[0].rsplit("/", 1)[1] for line in hk.lines()] == ["after"]
    warnings = [x["msg"] for x in ocirt.log_lines() if x["level"] == "warning"]
    assert any(f"{kind} hook #0 ({bad}): exit status 3" in w for w in warnings), warnings
    assert ocirt.ids() == []


@pytest.mark.parametrize(
    ("hooks", "field"),
    [
        ({"prestart": [{"path": "relative/hook"}]}, "hooks.prestart[0].path"),
        ({"preStart": [{"path": "/bin/true"}]}, "hooks.preStart"),
        ({"poststop": [{"path": "/bin/true", "timeout": 0}]}, "hooks.poststop[0].timeout"),
        ({"poststop": [{"path": "/bin/true", "timeout": 1.5}]}, "hooks.poststop[0].timeout"),
        ({"poststart": [{"path": "/bin/true", "args": "x"}]}, "hooks.poststart[0].args"),
    ],
)
def test_validation(ocirt: Ocirt, bundle: Bundle, cid: str, hooks: dict[str, Any], field: str) -> None:
    bundle.write(hooks=hooks)
    result = ocirt.detached("create", "--bundle", str(bundle.path), cid)
    assert result.returncode != 0
    assert f"{field}:" in result.stderr
    assert ocirt.ids() == []
