"""Plugins with real containers: how a set is chosen, the order hooks run in, tracing.

The plugin under test is ``tests/plugins_fixture/recorder.py``: it appends one
line ``HOOK ROLE PID`` per hook call to the file named by the annotation
``org.ocirt.test.record``, and does nothing without it.

The runtime re-execs isolated when PYTHONPATH is set, so the fixture package
cannot be handed over that way. The editable install of ocirt already puts the
checkout on the venv's ``sys.path`` (a plain path in a .pth file), which makes
``tests.plugins_fixture.recorder`` importable by module path; should ocirt be
installed otherwise, ``fixture_importable`` adds such a .pth for the session.
For entry points, a copy of the recorder is installed as a small wheel
(``ocirt-test-recorder``, module ``ocirt_test_recorder``) for one test class.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import zipfile
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from conftest import BUSYBOX, REPO, Bundle, Ocirt, unique_id, wait_for

from ocirt import OCI_VERSION
from ocirt.core import plugins
from ocirt.core.errors import OcirtError

PYTHON = str(REPO / ".venv" / "bin" / "python")
FIXTURE_DIR = REPO / "tests" / "plugins_fixture"
RECORDER = "tests.plugins_fixture.recorder"
FUTURE_API = "tests.plugins_fixture.future_api"
MISSPELT = "tests.plugins_fixture.misspelt"
RECORD = "org.ocirt.test.record"
START_DELAY = "org.ocirt.test.start-delay"
BUILTINS = set(plugins.BUILTIN)
CORE = "namespaces,mounts,process"

#: Every hook the recorder implements, in lifecycle order, with the process that runs it.
LIFECYCLE = [
    ("validate", "runtime"),
    ("prepare_host", "runtime"),
    ("before_fork", "runtime"),
    ("enter_namespaces", "setup"),
    ("configure_from_host", "runtime"),
    ("setup_rootfs", "init"),
    ("create_container", "init"),
    ("pivot_root", "init"),
    ("after_pivot", "init"),
    ("finalize_process", "init"),
    ("start_container", "init"),
    ("poststart", "runtime"),
    ("cleanup", "runtime"),
]
RECORDER_HOOKS = sorted(f"ocirt_{hook}" for hook, _ in LIFECYCLE)


def _venv_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in the venv's interpreter as the runtime runs: isolated, from /."""
    return subprocess.run([PYTHON, "-I", "-c", code], capture_output=True, text=True, cwd="/")


def _our_plans() -> list[Path]:
    """Hook plans the runtime cached for plugin sets naming our fixture modules."""
    try:
        from ocirt.core.hookplan import PLAN_DIR
    except ImportError:
        return []
    found = []
    for path in Path(PLAN_DIR).glob("*.json"):
        try:
            text = path.read_text()
        except OSError:
            continue
        if "plugins_fixture" in text or "ocirt_test_recorder" in text:
            found.append(path)
    return found


@pytest.fixture(scope="session", autouse=True)
def fixture_importable() -> Iterator[None]:
    """The runtime can import ``tests.plugins_fixture.*``; nothing of ours stays in the venv."""
    pth = None
    if _venv_python(f"import {RECORDER}").returncode != 0:
        purelib = _venv_python("import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
        pth = Path(purelib) / "_ocirt_tests_fixture.pth"
        pth.write_text(f"{REPO}\n")
    try:
        probe = _venv_python(f"import {RECORDER}")
        assert probe.returncode == 0, f"the runtime cannot import {RECORDER}: {probe.stderr}"
        yield
    finally:
        if pth is not None:
            pth.unlink()
        for plan in _our_plans():
            plan.unlink(missing_ok=True)


# ---------------------------------------------------------------------- helpers


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No host config file: every test states the plugin set it means."""
    return {"OCIRT_CONFIG": str(tmp_path / "no-config.toml")}


def record_to(bundle: Bundle, path: Path, **annotations: str) -> Path:
    """Have the recorder (if loaded) write to ``path``."""
    bundle.config["annotations"] = {RECORD: str(path), **annotations}
    bundle.write()
    return path


def records(path: Path) -> list[tuple[str, str, int]]:
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines()]
    return [(hook, role, int(pid)) for hook, role, pid in lines]


def stored_plugins(ocirt: Ocirt, cid: str) -> dict[str, dict[str, str]]:
    """The plugin set recorded in the container's state: name -> {name, module, origin}."""
    data = json.loads((ocirt.root / cid / "state.json").read_text())
    return {p["name"]: p for p in data["plugins"]}


def create(
    ocirt: Ocirt, bundle: Bundle, cid: str, *global_args: str, env: dict[str, str] | None = None
) -> dict[str, dict[str, str]]:
    """``ocirt [global_args] create``; return the plugin set the state recorded."""
    result = ocirt.detached(*global_args, "create", "--bundle", str(bundle.path), cid, env=env)
    assert result.returncode == 0, result.stderr
    return stored_plugins(ocirt, cid)


def start_and_delete(ocirt: Ocirt, cid: str, env: dict[str, str] | None = None) -> None:
    """``start`` and ``delete`` with no plugin option: the container's set is reused."""
    ocirt("start", cid, check=True, env=env)
    assert wait_for(lambda: ocirt.state(cid)["status"] == "stopped")
    ocirt("delete", cid, check=True, env=env)
    assert ocirt.ids() == []


def lifecycle(
    ocirt: Ocirt, bundle: Bundle, cid: str, *global_args: str, env: dict[str, str] | None = None
) -> dict[str, dict[str, str]]:
    stored = create(ocirt, bundle, cid, *global_args, env=env)
    start_and_delete(ocirt, cid, env=env)
    return stored


def hooks_seen(path: Path) -> list[str]:
    return [hook for hook, _, _ in records(path)]


ALL_HOOKS = [hook for hook, _ in LIFECYCLE]


def failed(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """A clear refusal: non-zero, one ``ocirt:`` line naming the problem, no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("ocirt: "), result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def host_ns(kind: str) -> str:
    return os.readlink(f"/proc/self/ns/{kind}")


# ------------------------------------------------------ how a plugin gets loaded


@pytest.mark.parametrize("form", ["--plugin", "-p", "--plugin="])
def test_plugin_option_loads_a_module(
    ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path, env: dict[str, str], form: str
) -> None:
    record = record_to(bundle, tmp_path / "record")
    option = [form + RECORDER] if form.endswith("=") else [form, RECORDER]

    stored = lifecycle(ocirt, bundle, cid, *option, env=env)

    assert stored[RECORDER] == {"name": RECORDER, "module": RECORDER, "origin": "command line"}
    assert set(stored) == BUILTINS | {RECORDER}
    # start and delete ran without the option: the state's set brought the recorder back.
    assert hooks_seen(record) == ALL_HOOKS


def test_plugins_not_asked_for_are_not_loaded(
    ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path, env: dict[str, str]
) -> None:
    record = record_to(bundle, tmp_path / "record")
    stored = lifecycle(ocirt, bundle, cid, env=env)
    assert RECORDER not in stored
    assert not record.exists()


def test_ocirt_plugins_variable(
    ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path, env: dict[str, str]
) -> None:
    record = record_to(bundle, tmp_path / "record")
    stored = create(ocirt, bundle, cid, env={**env, "OCIRT_PLUGINS": f"{CORE},{RECORDER}"})
    assert stored[RECORDER]["origin"] == "OCIRT_PLUGINS"
    assert set(stored) == {*CORE.split(","), RECORDER}
    start_and_delete(ocirt, cid, env=env)  # without the variable
    assert hooks_seen(record) == ALL_HOOKS


def test_config_file_plugins(
    ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path, env: dict[str, str]
) -> None:
    record = record_to(bundle, tmp_path / "record")
    config = tmp_path / "config.toml"
    config.write_text(f'plugins = ["namespaces", "mounts", "process", "{RECORDER}"]\n')
    stored = create(ocirt, bundle, cid, env={"OCIRT_CONFIG": str(config)})
    assert stored[RECORDER]["origin"] == "config file"
    start_and_delete(ocirt, cid, env=env)  # without the config file
    assert hooks_seen(record) == ALL_HOOKS


def test_config_file_disable_beats_its_own_plugins_but_not_the_command_line(
    ocirt: Ocirt, bundle: Bundle, tmp_path: Path
) -> None:
    record = record_to(bundle, tmp_path / "record")
    config = tmp_path / "config.toml"
    config.write_text(
        f'plugins = ["namespaces", "mounts", "process", "{RECORDER}"]\ndisable = ["{RECORDER}"]\n'
    )
    first, second = unique_id(), unique_id()

    assert RECORDER not in lifecycle(ocirt, bundle, first, env={"OCIRT_CONFIG": str(config)})
    assert not record.exists()

    stored = lifecycle(ocirt, bundle, second, "-p", RECORDER, env={"OCIRT_CONFIG": str(config)})
    assert RECORDER in stored
    assert hooks_seen(record) == ALL_HOOKS


def _wheel(directory: Path) -> Path:
    """A wheel of the recorder as module ``ocirt_test_recorder``, entry point ``recorder``."""
    dist_info = "ocirt_test_recorder-0.0.1.dist-info"
    files = {
        "ocirt_test_recorder.py": (FIXTURE_DIR / "recorder.py").read_bytes(),
        f"{dist_info}/METADATA": b"Metadata-Version: 2.1\nName: ocirt-test-recorder\nVersion: 0.0.1\n",
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{dist_info}/entry_points.txt": b"[ocirt]\nrecorder = ocirt_test_recorder\n",
    }

    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{name},sha256={digest(data)},{len(data)}\n" for name, data in files.items())
    wheel = directory / "ocirt_test_recorder-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{dist_info}/RECORD", record + f"{dist_info}/RECORD,,\n")
    return wheel


def _pip(*args: str) -> None:
    subprocess.run(
        [PYTHON, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        check=True,
        capture_output=True,
        cwd="/",
    )


@pytest.fixture(scope="class")
def recorder_entry_point(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``ocirt-test-recorder`` installed in the venv for one test class, then removed."""
    wheel = _wheel(tmp_path_factory.mktemp("wheel"))
    _pip("install", "--no-deps", "--no-index", "--no-cache-dir", str(wheel))
    try:
        yield
    finally:
        _pip("uninstall", "-y", "ocirt-test-recorder")
        assert _venv_python("import ocirt_test_recorder").returncode != 0
        # The runtime no longer finds it (this also refreshes its entry-point cache).
        seen = _venv_python(
            "from ocirt.core.plugins import select; "
            "print(' '.join(r.name for r in select(environ={'OCIRT_CONFIG': '/nonexistent'})))"
        )
        assert seen.returncode == 0, seen.stderr
        assert "recorder" not in seen.stdout.split()


@pytest.mark.usefixtures("recorder_entry_point")
class TestEntryPoint:
    def test_default_set_includes_installed_entry_points(
        self, ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path, env: dict[str, str]
    ) -> None:
        record = record_to(bundle, tmp_path / "record")
        stored = lifecycle(ocirt, bundle, cid, env=env)
        assert stored["recorder"]["module"] == "ocirt_test_recorder"
        assert stored["recorder"]["origin"] == "entry point (ocirt-test-recorder 0.0.1)"
        assert hooks_seen(record) == ALL_HOOKS

    def test_plugins_command_shows_the_entry_point(self, ocirt: Ocirt, env: dict[str, str]) -> None:
        rows = {row["name"]: row for row in json.loads(ocirt("plugins", "--format", "json", env=env).stdout)}
        assert rows["recorder"]["origin"] == "entry point (ocirt-test-recorder 0.0.1)"
        assert rows["recorder"]["hooks"] == RECORDER_HOOKS
        assert not rows["recorder"]["essential"]

    def test_explicit_set_skips_entry_points_until_named(
        self, ocirt: Ocirt, bundle: Bundle, tmp_path: Path, env: dict[str, str]
    ) -> None:
        record = record_to(bundle, tmp_path / "record")
        explicit = {**env, "OCIRT_PLUGINS": CORE}
        plain, named = unique_id(), unique_id()

        assert set(lifecycle(ocirt, bundle, plain, env=explicit)) == set(CORE.split(","))
        assert not record.exists()

        stored = lifecycle(ocirt, bundle, named, "--plugin", "recorder", env=explicit)
        assert stored["recorder"]["module"] == "ocirt_test_recorder"
        assert hooks_seen(record) == ALL_HOOKS

    def test_config_file_disables_an_entry_point(
        self, ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path
    ) -> None:
        record = record_to(bundle, tmp_path / "record")
        config = tmp_path / "config.toml"
        config.write_text('disable = ["recorder"]\n')
        assert set(lifecycle(ocirt, bundle, cid, env={"OCIRT_CONFIG": str(config)})) == BUILTINS
        assert not record.exists()


# ------------------------------------------------------------- selection rules


def _select(environ: dict[str, str], add: tuple[str, ...] = (), drop: tuple[str, ...] = ()) -> dict[str, str]:
    return {ref.name: ref.origin for ref in plugins.select(add, drop, environ)}


def test_select_default_is_builtins_and_entry_points(tmp_path: Path) -> None:
    installed = {ep.name for ep in entry_points(group="ocirt")}
    chosen = _select({"OCIRT_CONFIG": str(tmp_path / "none.toml")})
    assert set(chosen) == BUILTINS | installed
    assert all(chosen[name] == "built-in" for name in BUILTINS)


def test_select_order_of_sources(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('plugins = ["mounts", "process"]\ndisable = ["mounts"]\n')
    environ = {"OCIRT_CONFIG": str(config)}
    # The config's plugins, then its disable list; the essential plugin is always there.
    assert _select(environ) == {"process": "built-in"}
    # OCIRT_PLUGINS replaces the config's list (its disable list still applies).
    assert set(_select({**environ, "OCIRT_PLUGINS": "namespaces,process"})) == {"namespaces", "process"}
    assert set(_select({**environ, "OCIRT_PLUGINS": "namespaces"})) == {"namespaces", "process"}
    # The command line comes last: it adds and removes.
    assert _select(environ, add=(RECORDER,)) == {"process": "built-in", RECORDER: "command line"}
    assert set(_select({**environ, "OCIRT_PLUGINS": CORE}, drop=("namespaces",))) == {"process"}


@pytest.mark.parametrize(
    ("environ", "add", "drop", "message"),
    [
        ({}, (), ("process",), "'process' is essential"),
        ({"OCIRT_PLUGINS": "process"}, (), ("namespaces-typo",), "cannot disable plugin 'namespaces-typo'"),
        ({}, ("no_such_plugin_xyz",), (), "unknown plugin 'no_such_plugin_xyz'"),
        ({"OCIRT_PLUGINS": "process,no_such_plugin_xyz"}, (), (), "unknown plugin 'no_such_plugin_xyz'"),
        ({"OCIRT_PLUGINS": "process"}, (), (), None),
    ],
)
def test_select_refusals(
    tmp_path: Path, environ: dict[str, str], add: tuple[str, ...], drop: tuple[str, ...], message: str | None
) -> None:
    environ = {"OCIRT_CONFIG": str(tmp_path / "none.toml"), **environ}
    if message is None:
        assert _select(environ, add, drop) == {"process": "built-in"}
        return
    with pytest.raises(OcirtError, match=message):
        _select(environ, add, drop)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("plugins = [", "config.toml: "),
        ('plugins = "namespaces"\ndisable = 3\n', "config disable: must be a list"),
        ("plugins = [1]\n", "config plugins: must be a list"),
    ],
)
def test_select_bad_config_file(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(OcirtError, match=message):
        plugins.select((), (), {"OCIRT_CONFIG": str(config)})


# ----------------------------------------------------------- disabling plugins


def _no_mount_namespace(bundle: Bundle, args: list[str]) -> None:
    """A config whose process runs in the host's root: no mount namespace, no mounts."""
    linux = bundle.config["linux"]
    linux["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "network")]
    bundle.config["mounts"] = []
    bundle.config["root"]["readonly"] = False
    bundle.write(args=args)


def _disable_namespaces(tmp_path: Path, how: str) -> tuple[list[str], dict[str, str]]:
    if how == "config":
        config = tmp_path / "config.toml"
        config.write_text('disable = ["namespaces"]\n')
        return [], {"OCIRT_CONFIG": str(config)}
    return how.split(), {}


@pytest.mark.parametrize("how", ["--no-plugin namespaces", "-p no:namespaces", "config"])
def test_without_namespaces_plugin_the_host_pid_namespace_is_shared(
    ocirt: Ocirt, bundle: Bundle, tmp_path: Path, env: dict[str, str], how: str
) -> None:
    _no_mount_namespace(bundle, [BUSYBOX, "readlink", "/proc/self/ns/pid"])
    args, extra_env = _disable_namespaces(tmp_path, how)
    result = ocirt(*args, "run", "--bundle", str(bundle.path), unique_id(), env={**env, **extra_env})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == host_ns("pid")


def test_with_namespaces_plugin_the_pid_namespace_is_new(
    ocirt: Ocirt, bundle: Bundle, env: dict[str, str]
) -> None:
    """The control for the test above: same config, the plugin loaded."""
    _no_mount_namespace(bundle, [BUSYBOX, "readlink", "/proc/self/ns/pid"])
    result = ocirt("run", "--bundle", str(bundle.path), unique_id(), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("pid:[")
    assert result.stdout.strip() != host_ns("pid")


def test_without_namespaces_plugin_a_mount_namespace_is_not_faked(
    ocirt: Ocirt, bundle: Bundle, cid: str, env: dict[str, str]
) -> None:
    """The default config asks for a mount namespace; nobody creates it: refuse, touch no host mount."""
    with open("/proc/self/mountinfo") as f:
        before = f.read()
    result = ocirt.detached("--no-plugin", "namespaces", "create", "--bundle", str(bundle.path), cid, env=env)
    failed(result, "mount namespace", "namespaces plugin")
    with open("/proc/self/mountinfo") as f:
        assert f.read() == before
    assert ocirt.ids() == []


def test_without_namespaces_and_mounts_plugins_the_host_is_shared(
    ocirt: Ocirt, bundle: Bundle, env: dict[str, str]
) -> None:
    script = f"for ns in pid mnt; do {BUSYBOX} readlink /proc/self/ns/$ns; done; {BUSYBOX} hostname"
    bundle.write(args=[BUSYBOX, "sh", "-c", script])
    result = ocirt(
        "-p", "no:namespaces", "-p", "no:mounts", "run", "--bundle", str(bundle.path), unique_id(), env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [host_ns("pid"), host_ns("mnt"), os.uname().nodename]


@pytest.mark.parametrize("args", [["--no-plugin", "process"], ["-p", "no:process"], ["--no-plugin=process"]])
def test_the_process_plugin_cannot_be_disabled(
    ocirt: Ocirt, bundle: Bundle, cid: str, env: dict[str, str], args: list[str]
) -> None:
    result = ocirt.detached(*args, "create", "--bundle", str(bundle.path), cid, env=env)
    failed(result, "'process' is essential")
    assert ocirt.ids() == []
    assert not ocirt.root.exists() or list(ocirt.root.iterdir()) == []


def test_the_process_plugin_cannot_be_disabled_by_config(
    ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('disable = ["process"]\n')
    result = ocirt.detached("create", "--bundle", str(bundle.path), cid, env={"OCIRT_CONFIG": str(config)})
    failed(result, "'process' is essential")
    assert ocirt.ids() == []


@pytest.mark.parametrize(
    ("args", "extra_env", "message"),
    [
        (["--plugin", "no_such_plugin_xyz"], {}, "unknown plugin 'no_such_plugin_xyz'"),
        (["-p", "no_such_pkg_xyz.plugin"], {}, "cannot import plugin 'no_such_pkg_xyz.plugin'"),
        (["--no-plugin", "no_such_plugin_xyz"], {}, "cannot disable plugin 'no_such_plugin_xyz'"),
        ([], {"OCIRT_PLUGINS": f"{CORE},no_such_plugin_xyz"}, "unknown plugin 'no_such_plugin_xyz'"),
    ],
)
def test_unknown_plugins_are_refused(
    ocirt: Ocirt,
    bundle: Bundle,
    cid: str,
    env: dict[str, str],
    args: list[str],
    extra_env: dict[str, str],
    message: str,
) -> None:
    result = ocirt.detached(*args, "create", "--bundle", str(bundle.path), cid, env={**env, **extra_env})
    failed(result, message)
    assert ocirt.ids() == []
    assert not ocirt.root.exists() or list(ocirt.root.iterdir()) == []


# ------------------------------------------------------------------- hook order


@pytest.mark.parametrize("pid_namespace", [True, False], ids=["pid-ns", "host-pid"])
def test_hook_order(
    ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path, env: dict[str, str], pid_namespace: bool
) -> None:
    if not pid_namespace:
        bundle.config["linux"]["namespaces"] = [
            ns for ns in bundle.config["linux"]["namespaces"] if ns["type"] != "pid"
        ]
    # A slow startContainer point: poststart must still wait for it (and for the exec).
    record = record_to(bundle, tmp_path / "record", **{START_DELAY: "0.2"})

    lifecycle(ocirt, bundle, cid, "--plugin", RECORDER, env=env)

    seen = records(record)
    assert [(hook, role) for hook, role, _ in seen] == LIFECYCLE
    pids = {hook: pid for hook, _, pid in seen}
    create_pid = pids["validate"]
    assert pids["prepare_host"] == pids["before_fork"] == pids["configure_from_host"] == create_pid
    assert pids["enter_namespaces"] != create_pid
    init_pids = {pid for hook, role, pid in seen if role == "init"}
    # The setup child becomes the init: the runtime entered the pid namespace before
    # forking it, so with a new pid namespace it is already that namespace's pid 1.
    assert init_pids == {pids["enter_namespaces"]}
    assert (pids["enter_namespaces"] == 1) == pid_namespace
    # start and delete are commands of their own.
    assert len({create_pid, pids["poststart"], pids["cleanup"]}) == 3


# ------------------------------------------------------------------------ trace


def _trace_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("how", ["--trace", "OCIRT_TRACE"])
def test_trace(ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path, env: dict[str, str], how: str) -> None:
    trace = tmp_path / "trace.jsonl"
    record_to(bundle, tmp_path / "record")
    args = ["--trace", str(trace)] if how == "--trace" else []
    if how == "OCIRT_TRACE":
        env = {**env, "OCIRT_TRACE": str(trace)}

    create(ocirt, bundle, cid, *args, "-p", RECORDER, env=env)
    ocirt(*args, "start", cid, check=True, env=env)
    assert wait_for(lambda: ocirt.state(cid)["status"] == "stopped")
    ocirt(*args, "delete", cid, check=True, env=env)

    lines = _trace_lines(trace)
    for line in lines:
        assert {"hook", "plugin", "role", "pid", "ms"} <= set(line), line
        assert isinstance(line["pid"], int) and line["pid"] > 0
        assert isinstance(line["ms"], int | float) and line["ms"] >= 0
    calls = {(line["hook"], line["plugin"], line["role"]) for line in lines}
    assert {line["role"] for line in lines} == {"runtime", "setup", "init"}
    for expected in [
        ("ocirt_validate", "process", "runtime"),
        ("ocirt_validate", "namespaces", "runtime"),
        ("ocirt_enter_namespaces", "namespaces", "setup"),
        ("ocirt_setup_rootfs", "mounts", "init"),
        ("ocirt_pivot_root", "mounts", "init"),
        ("ocirt_after_pivot", "mounts", "init"),  # written after pivot_root, through the kept fd
        ("ocirt_finalize_process", "process", "init"),
        ("ocirt_start_container", RECORDER, "init"),
        ("ocirt_poststart", RECORDER, "runtime"),
        ("ocirt_cleanup", RECORDER, "runtime"),
    ]:
        assert expected in calls, f"{expected} not traced"
    assert {line["pid"] for line in lines if line["role"] == "init"} == {1}
    setup = {line["pid"] for line in lines if line["role"] == "setup"}
    runtime = {line["pid"] for line in lines if line["role"] == "runtime"}
    assert len(setup) == 1 and not setup & runtime
    assert len(runtime) == 3  # create, start, delete


def test_the_init_waits_for_the_runtime_only_when_a_plugin_acts_between(
    ocirt: Ocirt, bundle: Bundle, tmp_path: Path, env: dict[str, str]
) -> None:
    """``ocirt_configure_from_host`` runs, and the init waits for it, only when a plugin
    has work there: with the built-in plugins and no prestart or createRuntime hook,
    the init goes on to its rootfs at once. With such a hook, it runs in the runtime
    before the init mounts anything."""
    quick = tmp_path / "quick.jsonl"
    bundle.write(args=["true"])
    result = ocirt("--trace", str(quick), "run", "--bundle", str(bundle.path), unique_id(), env=env)
    assert result.returncode == 0, result.stderr
    hooks = {line["hook"] for line in _trace_lines(quick)}
    assert "ocirt_setup_rootfs" in hooks
    assert "ocirt_configure_from_host" not in hooks

    waited = tmp_path / "waited.jsonl"
    marker = tmp_path / "hook-ran"
    touch = {"path": "/bin/sh", "args": ["sh", "-c", f"touch {marker}"]}
    bundle.write(args=["true"], hooks={"createRuntime": [touch]})
    result = ocirt("--trace", str(waited), "run", "--bundle", str(bundle.path), unique_id(), env=env)
    assert result.returncode == 0, result.stderr
    assert marker.exists()
    lines = _trace_lines(waited)
    configure = [x for x in lines if (x["hook"], x["plugin"]) == ("ocirt_configure_from_host", "hooks")]
    rootfs = [x for x in lines if (x["hook"], x["plugin"]) == ("ocirt_setup_rootfs", "mounts")]
    assert len(configure) == 1 and len(rootfs) == 1
    assert configure[0]["role"] == "runtime" and rootfs[0]["role"] == "init"
    assert configure[0]["start"] + configure[0]["ms"] / 1000 <= rootfs[0]["start"]


def test_trace_file_does_not_reach_the_container(
    ocirt: Ocirt, bundle: Bundle, tmp_path: Path, env: dict[str, str]
) -> None:
    trace = tmp_path / "trace.jsonl"
    bundle.write(args=["ls", "/proc/self/fd"])
    result = ocirt("--trace", str(trace), "run", "--bundle", str(bundle.path), unique_id(), env=env)
    assert result.returncode == 0, result.stderr
    # 0-2 and the fd ls reads the directory with: no trace file, no exec.fifo.
    assert sorted(result.stdout.split()) == ["0", "1", "2", "3"]
    assert trace.stat().st_size > 0


# ------------------------------------------------- listing plugins and features


def test_plugins_command_lists_the_builtins(ocirt: Ocirt, env: dict[str, str]) -> None:
    installed = {ep.name for ep in entry_points(group="ocirt")}
    result = ocirt("plugins", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == BUILTINS | installed
    assert [name for name in rows if rows[name]["essential"]] == ["process"]
    for name in BUILTINS:
        assert rows[name]["module"] == f"ocirt.plugins.{name}.plugin"
        assert rows[name]["origin"] == "built-in"
    assert {"ocirt_enter_namespaces", "ocirt_validate", "ocirt_features"} <= set(rows["namespaces"]["hooks"])
    assert {"ocirt_setup_rootfs", "ocirt_pivot_root", "ocirt_after_pivot"} <= set(rows["mounts"]["hooks"])
    assert {"ocirt_finalize_process", "ocirt_validate"} <= set(rows["process"]["hooks"])

    # The table shows the same: a header per plugin, its hooks below it.
    text = ocirt("plugins", env=env).stdout
    for name in BUILTINS:
        tag = " (essential)" if name == "process" else ""
        header = f"{name}{tag}: ocirt.plugins.{name}.plugin [built-in]\n"
        assert header + f"    hooks: {', '.join(rows[name]['hooks'])}\n" in text, text


def test_plugins_command_with_an_added_plugin(ocirt: Ocirt, env: dict[str, str]) -> None:
    result = ocirt(
        "-p",
        RECORDER,
        "--no-plugin",
        "mounts",
        "plugins",
        "--format",
        "json",
        env={**env, "OCIRT_PLUGINS": CORE},
    )
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"namespaces", "process", RECORDER}
    assert rows[RECORDER] == {
        "name": RECORDER,
        "module": RECORDER,
        "origin": "command line",
        "essential": False,
        "hooks": RECORDER_HOOKS,
    }


def test_features(ocirt: Ocirt, env: dict[str, str]) -> None:
    result = ocirt("features", env={**env, "OCIRT_PLUGINS": CORE})
    assert result.returncode == 0, result.stderr
    features = json.loads(result.stdout)
    assert features["ociVersionMax"] == OCI_VERSION
    assert {"pid", "mount", "network", "ipc", "uts"} <= set(features["linux"]["namespaces"])
    assert {"rbind", "ro", "nosuid", "rprivate"} <= set(features["mountOptions"])
    assert features["annotations"]["org.ocirt.plugins"] == "mounts,namespaces,process"


def test_features_follow_the_loaded_plugins(ocirt: Ocirt, env: dict[str, str]) -> None:
    result = ocirt("--no-plugin", "namespaces", "features", env={**env, "OCIRT_PLUGINS": CORE})
    assert result.returncode == 0, result.stderr
    features = json.loads(result.stdout)
    assert "namespaces" not in features.get("linux", {})
    assert "mountOptions" in features
    assert features["annotations"]["org.ocirt.plugins"] == "mounts,process"


@pytest.mark.parametrize(
    ("module", "words"),
    [
        (FUTURE_API, ["needs plugin API 999", "this ocirt provides 1"]),
        (MISSPELT, ["plugin error", "ocirt_valdate"]),
    ],
    ids=["api-version", "misspelt-hook"],
)
def test_bad_plugins_are_refused(
    ocirt: Ocirt, bundle: Bundle, cid: str, tmp_path: Path, env: dict[str, str], module: str, words: list[str]
) -> None:
    failed(ocirt("-p", module, "plugins", env=env), *words)
    failed(ocirt("-p", module, "features", env=env), *words)
    record = record_to(bundle, tmp_path / "record")
    result = ocirt.detached(
        "-p", module, "-p", RECORDER, "create", "--bundle", str(bundle.path), cid, env=env
    )
    failed(result, *words)
    assert ocirt.ids() == []
    assert not record.exists(), "a hook ran although the plugin set was refused"
