"""What each command does, shared by the typer app and the fast engine path.

Each function takes the parsed global options and the command's own, and
returns the exit status. Errors are raised as ``OcirtError`` and reported by
``ocirt.cli.main``.
"""

from __future__ import annotations

import os
import sys

from ocirt.core.errors import NotSupported, OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.cli.globals import Globals
    from ocirt.core.context import Container
    from ocirt.core.spec import Spec

SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8,
    "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
    "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
    "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29,
    "POLL": 29, "PWR": 30, "SYS": 31,
}  # fmt: skip


def parse_signal(value: str) -> int:
    """A signal by number (engines send numbers) or name, with or without SIG."""
    if value.isascii() and value.isdigit():
        number = int(value)
        if 0 < number < 65:
            return number
    else:
        name = value.upper().removeprefix("SIG")
        if name in SIGNALS:
            return SIGNALS[name]
        base, sign, offset = name[:5], name[5:6], name[6:]
        valid_offset = not sign or (sign in "+-" and offset.isascii() and offset.isdigit())
        if base in ("RTMIN", "RTMAX") and valid_offset:
            number = (34 if base == "RTMIN" else 64) + int(offset or 0) * (1 if sign == "+" else -1)
            if 34 <= number <= 64:
                return number
    raise OcirtError(f"invalid signal {value!r}")


def _create(
    g: Globals,
    container_id: str,
    bundle: str,
    detach: bool,
    spec: Spec | None = None,
    start: bool = False,
    **cli: object,
) -> Container:
    """Create (and with ``start``, start) with the plugin set this call selects;
    ``cli`` options reach plugins."""
    from ocirt.core import plugins

    refs = plugins.select(g.add_plugins, g.drop_plugins)
    options = {**g.plugin_options(), **cli, "detach": detach}
    return g.runtime().create(container_id, bundle, refs, options, spec, start)


def create(
    g: Globals,
    container_id: str,
    bundle: str = ".",
    console_socket: str | None = None,
    pid_file: str | None = None,
    no_pivot: bool = False,
    no_new_keyring: bool = False,
    preserve_fds: int = 0,
) -> int:
    _create(
        g, container_id, bundle, True, console_socket=console_socket, pid_file=pid_file,
        no_pivot=no_pivot, no_new_keyring=no_new_keyring, preserve_fds=preserve_fds,
    )  # fmt: skip
    return 0


def start(g: Globals, container_id: str) -> int:
    g.control().start(container_id)
    return 0


def run(
    g: Globals,
    container_id: str,
    bundle: str = ".",
    console_socket: str | None = None,
    pid_file: str | None = None,
    no_pivot: bool = False,
    no_new_keyring: bool = False,
    preserve_fds: int = 0,
    detach: bool = False,
    keep: bool = False,
    no_subreaper: bool = False,
    network: str | None = None,
) -> int:
    """create + start; in the foreground, wait and return the container's status.

    ``--no-subreaper`` is accepted and has no effect: a foreground run must be
    the subreaper to learn the exit status of an init its setup child forked.
    In the foreground with ``process.terminal`` and no ``--console-socket``, the
    container's terminal is relayed to the caller's (``ocirt.cli.console``).
    ``--network MODE`` (``bridge``, ``cni:NAME``, ``none``) is the network plugin's
    ``org.ocirt.network`` annotation from the command line; runc has no such flag.
    """
    from ocirt.core import syscalls

    if not detach:
        # The subreaper gets the init as its child even when the setup child forked
        # it (user namespaces), so its exit status can be waited for.
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    console = None
    spec = None
    if not detach and console_socket is None:
        spec = _readable_spec(bundle)
        if spec and spec.process and spec.process.get("terminal"):
            from ocirt.cli.console import ConsoleSocket, Relay

            console = ConsoleSocket()
            console_socket = console.path
    relay = None
    try:
        # Without a relayed terminal, create starts the container itself.
        ctx = _create(
            g, container_id, bundle, detach, spec, console is None, console_socket=console_socket,
            pid_file=pid_file, no_pivot=no_pivot, no_new_keyring=no_new_keyring,
            preserve_fds=preserve_fds, **({"network": network} if network else {}),
        )  # fmt: skip
        runtime = g.runtime()
        if console:
            try:
                relay = Relay(console.receive())
                relay.resize()  # before start: the program sees the caller's size from the outset
                runtime.start(container_id)
            except BaseException:
                runtime.delete(container_id, force=True)
                raise
    finally:
        if console:
            console.close()
    if detach:
        return 0
    try:
        return relay.run(ctx.init_pid) if relay else runtime.wait(ctx.init_pid)
    finally:
        if not keep:
            runtime.delete(container_id, force=True)


def _readable_spec(bundle: str) -> Spec | None:
    """The bundle's config.json, read once for run and create; None if it is bad
    (create then reads it again and reports why)."""
    from ocirt.core import spec as spec_mod

    try:
        return spec_mod.load(bundle)
    except OcirtError:
        return None


def state(g: Globals, container_id: str) -> int:
    from ocirt.core import jsonio
    from ocirt.core.state import STOPPED

    st = g.store().load(container_id)
    status = st.shown_status()
    if status != STOPPED and "ocirt_status" in st.data.get("hooks", ()):
        runtime = g.control()
        hooks = runtime.later_hooks(st, "ocirt_status")
        status = hooks.ocirt_status(container=runtime.context(st, hooks=hooks)) or status
    sys.stdout.write(jsonio.dumps_indented(st.oci_state(status)) + "\n")
    return 0


def kill(g: Globals, container_id: str, signal: str = "SIGTERM", all_processes: bool = False) -> int:
    g.control().kill(container_id, parse_signal(signal), all_processes)
    return 0


def delete(g: Globals, container_id: str, force: bool = False) -> int:
    g.control().delete(container_id, force)
    return 0


def list_containers(g: Globals, fmt: str = "table", quiet: bool = False) -> int:
    import json

    from ocirt.core.state import iter_states

    states = [{**st.oci_state(), "owner": _owner_of(st.dir)} for st in iter_states(g.store())]
    if quiet:
        for st in states:
            print(st["id"])
    elif fmt == "json":
        print(json.dumps(states))
    elif fmt == "table":
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]) for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    else:
        raise OcirtError(f"invalid --format {fmt!r}: use table or json")
    return 0


def _owner_of(directory: str) -> str:
    """The user owning a container's state directory, by name, as runc's ``list`` shows it."""
    import pwd

    try:
        uid = os.stat(directory).st_uid
    except OSError:
        return ""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def spec(g: Globals, bundle: str = ".", rootless: bool = False) -> int:
    import json

    from ocirt.cli.template import default_spec

    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise OcirtError(f"{path} already exists: remove it first")
    with open(path, "w") as f:
        json.dump(default_spec(rootless), f, indent="\t")
        f.write("\n")
    return 0


def features(g: Globals) -> int:
    import json

    from ocirt import OCI_VERSION
    from ocirt.core import plugins

    pm = plugins.manager(plugins.select(g.add_plugins, g.drop_plugins), g.trace)
    merged: dict[str, object] = {"ociVersionMin": "1.0.0", "ociVersionMax": OCI_VERSION}
    for fragment in reversed(pm.hook.ocirt_features(container=None)):
        _merge(merged, fragment or {})
    merged["annotations"] = {
        **dict(merged.get("annotations") or {}),  # type: ignore[call-overload]
        "org.ocirt.plugins": ",".join(sorted(n for n, _ in pm.list_name_plugin())),
    }
    print(json.dumps(merged, indent=2))
    return 0


def _merge(into: dict[str, object], fragment: dict[str, object]) -> None:
    for key, value in fragment.items():
        old = into.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            _merge(old, value)
        elif isinstance(old, list) and isinstance(value, list):
            into[key] = old + [v for v in value if v not in old]
        else:
            into[key] = value


def plugins_info(g: Globals, fmt: str = "table") -> int:
    import json

    from ocirt.core import plugins

    pm = plugins.manager(plugins.select(g.add_plugins, g.drop_plugins))
    rows = []
    for name, plugin in sorted(pm.list_name_plugin()):
        ref = plugins.origin(name)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        rows.append(
            {
                "name": name,
                "module": ref.ref if ref else getattr(plugin, "__name__", repr(plugin)),
                "origin": ref.origin if ref else "",
                "essential": name in plugins.ESSENTIAL,
                "hooks": hooks,
            }
        )
    if fmt == "json":
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        tag = " (essential)" if row["essential"] else ""
        print(f"{row['name']}{tag}: {row['module']} [{row['origin']}]")
        print(f"    hooks: {', '.join(row['hooks'])}")  # type: ignore[arg-type]
    return 0


def version() -> int:
    from ocirt import OCI_VERSION, __version__

    print(f"ocirt version {__version__}\ncommit: {_commit()}\nspec: {OCI_VERSION}")
    return 0


def _commit() -> str:
    """The git commit of a source checkout, or 'release'."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        with open(os.path.join(here, ".git", "HEAD")) as f:
            head = f.read().strip()
        if head.startswith("ref: "):
            with open(os.path.join(here, ".git", head[5:])) as f:
                return f.read().strip()[:12]
        return head[:12]
    except OSError:
        return "release"


# ------------------------------------------------------------- live containers
# pause, resume, ps, update and events belong to a backend plugin (cgroups):
# each loads the container's plugin set and asks it through ``ocirt_command``.


def _command(
    g: Globals, container_id: str, command: str, options: dict[str, object], lock: bool = True
) -> int:
    """Run ``command`` on a live container through the plugin that owns it."""
    from contextlib import nullcontext

    from ocirt.core.state import STOPPED

    store = g.store()
    with store.lock(container_id) if lock else nullcontext():
        st = store.load(container_id)
        if st.status() == STOPPED:
            raise OcirtError(f"{command}: container {container_id!r} is not running")
        runtime = g.control()
        status = None
        if "ocirt_command" in st.data.get("hooks", ()):
            hooks = runtime.later_hooks(st, "ocirt_command")
            status = hooks.ocirt_command(
                container=runtime.context(st, hooks=hooks), command=command, options=options
            )
        if status is None:
            raise NotSupported(f"{command}: no loaded plugin of container {container_id!r} supports it")
        if command in ("pause", "resume"):
            st.data["paused"] = command == "pause"
            store.save(st)
        return int(status)


def pause(g: Globals, container_id: str) -> int:
    return _command(g, container_id, "pause", {})


def resume(g: Globals, container_id: str) -> int:
    return _command(g, container_id, "resume", {})


def ps(g: Globals, container_id: str, fmt: str = "table", ps_args: list[str] | None = None) -> int:
    """The container's host pids: a JSON list, or ``ps`` (``-ef`` by default) cut to them, as runc."""
    import subprocess

    from ocirt.core import jsonio

    options: dict[str, object] = {}
    _command(g, container_id, "pids", options, lock=False)
    pids: list[int] = list(options.get("result") or [])  # type: ignore[call-overload]
    if fmt == "json":
        print(jsonio.dumps(pids))  # compact, as runc's encoder writes it
        return 0
    if fmt != "table":
        raise OcirtError(f"invalid --format {fmt!r}: use table or json")
    try:
        out = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise OcirtError(f"ps: {e}") from None
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise OcirtError("ps: its output has no PID column")
    column = header.index("PID")
    print(lines[0])
    wanted = set(pids)
    for line in lines[1:]:
        fields = line.split(None, column + 1)
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in wanted:
            print(line)
    return 0


#: update's flags -> (section of linux.resources, key, value kind).
UPDATE_FLAGS: dict[str, tuple[str, str, str]] = {
    "memory": ("memory", "limit", "size"),
    "memory_reservation": ("memory", "reservation", "size"),
    "memory_swap": ("memory", "swap", "size"),
    "kernel_memory": ("memory", "kernel", "size"),
    "cpu_shares": ("cpu", "shares", "int"),
    "cpu_quota": ("cpu", "quota", "int"),
    "cpu_period": ("cpu", "period", "int"),
    "cpu_burst": ("cpu", "burst", "int"),
    "cpu_rt_runtime": ("cpu", "realtimeRuntime", "int"),
    "cpu_rt_period": ("cpu", "realtimePeriod", "int"),
    "cpuset_cpus": ("cpu", "cpus", "str"),
    "cpuset_mems": ("cpu", "mems", "str"),
    "pids_limit": ("pids", "limit", "int"),
    "blkio_weight": ("blockIO", "weight", "int"),
}

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(flag: str, value: str) -> int:
    """``100M``, ``1g``, ``512k``, ``-1``: bytes, as runc's RAMInBytes reads them."""
    text = value.strip().lower().removesuffix("ib").removesuffix("b") if value.strip() != "-1" else "-1"
    number, unit = text, ""
    if text and text[-1] in _UNITS:
        number, unit = text[:-1], text[-1]
    try:
        return int(float(number) * _UNITS[unit]) if number != "-1" else -1
    except ValueError:
        raise OcirtError(f"invalid value {value!r} for --{flag.replace('_', '-')}") from None


def load_json_object(path: str, option: str, what: str) -> dict[str, Any]:
    """The JSON object in file ``path`` (``-``: stdin), as engines pass them; one-line errors."""
    from ocirt.core import jsonio

    try:
        if path == "-":
            loaded = jsonio.loads(sys.stdin.read())
        else:
            with open(path) as f:
                loaded = jsonio.loads(f.read())
    except OSError as e:
        raise OcirtError(f"{option} {path}: {(e.strerror or str(e)).lower()}") from None
    except ValueError as e:
        raise OcirtError(f"{option} {path}: invalid JSON: {e}") from None
    if not isinstance(loaded, dict):
        raise OcirtError(f"{option} {path}: must be a JSON object ({what})")
    return loaded


def update(g: Globals, container_id: str, resources: str | None = None, **flags: str | None) -> int:
    """New limits from ``--resources`` (a file, ``-`` for stdin) and the flags on top.

    0 leaves a value alone, as docker sends 0 for whatever it does not set.
    """
    new: dict[str, dict[str, object]] = {}
    if resources:
        new = load_json_object(resources, "--resources", "linux.resources")
    for flag, value in flags.items():
        if value is None:
            continue
        section, key, kind = UPDATE_FLAGS[flag]
        if kind == "size":
            parsed: object = parse_size(flag, value)
        elif kind == "int":
            try:
                parsed = int(value)
            except ValueError:
                raise OcirtError(f"invalid value {value!r} for --{flag.replace('_', '-')}") from None
        else:
            parsed = value
        if parsed not in (0, ""):
            new.setdefault(section, {})[key] = parsed
    return _command(g, container_id, "update", {"resources": new})


def events(g: Globals, container_id: str, stats: bool = False, interval: str = "5s") -> int:
    """runc's event lines: one ``stats`` with --stats, else stats every interval and ``oom``."""
    import json

    def emit(event: dict[str, object]) -> None:
        sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    options = {"stats": stats, "interval": parse_duration(interval), "emit": emit}
    return _command(g, container_id, "events", options, lock=False)


def parse_duration(value: str) -> float:
    """Go's durations as runc takes them: ``5s``, ``500ms``, ``1m``, ``1m30s``."""
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, number, i = 0.0, "", 0
    text = value.strip()
    while i < len(text):
        if text[i].isdigit() or text[i] == ".":
            number += text[i]
            i += 1
            continue
        unit = text[i : i + 2] if text[i : i + 2] in units else text[i]
        if unit not in units or not number:
            raise OcirtError(f"invalid duration {value!r}")
        total += float(number) * units[unit]
        number, i = "", i + len(unit)
    if number or total <= 0:
        raise OcirtError(f"invalid duration {value!r}")
    return total


def exec_(
    g: Globals,
    container_id: str,
    command: list[str] | None = None,
    process: str | None = None,
    tty: bool = False,
    console_socket: str | None = None,
    detach: bool = False,
    pid_file: str | None = None,
    cwd: str | None = None,
    env: list[str] | None = None,
    user: str | None = None,
    additional_gids: list[str] | None = None,
    cap: list[str] | None = None,
    no_new_privs: bool = False,
    apparmor: str | None = None,
    process_label: str | None = None,
    preserve_fds: int = 0,
    ignore_paused: bool = False,
) -> int:
    """Run a process in a live container; in the foreground, return its status."""
    from ocirt.core import lifecycle, syscalls

    runtime = g.runtime()
    if process is not None:
        proc = load_json_object(process, "exec --process", "a process")
    else:
        if not command:
            raise OcirtError("exec: no command given (ID COMMAND [ARG...], or --process FILE)")
        base = None
        try:
            from ocirt.core import spec as spec_mod

            base = spec_mod.load(g.store().load(container_id).bundle).process
        except OcirtError:
            pass
        proc = lifecycle.exec_process(
            base,
            {
                "args": command, "tty": tty, "env": env, "cwd": cwd, "user": user,
                "additional_gids": additional_gids, "caps": cap, "no_new_privs": no_new_privs,
                "apparmor": apparmor, "process_label": process_label,
            },
        )  # fmt: skip
    if not detach:
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    console = None
    if proc.get("terminal") and not detach and console_socket is None:
        from ocirt.cli.console import ConsoleSocket, Relay

        console = ConsoleSocket()
        console_socket = console.path
    options = {
        **g.plugin_options(), "pid_file": pid_file, "preserve_fds": preserve_fds,
        "ignore_paused": ignore_paused, "detach": detach, "console_socket": console_socket,
    }  # fmt: skip
    relay = None
    try:
        ctx = runtime.exec(container_id, proc, options)
        if console:
            try:
                relay = Relay(console.receive())
            except BaseException:
                try:  # no terminal came: the process would run with nobody at its end
                    os.kill(ctx.exec_pid, 9)
                except ProcessLookupError:
                    pass
                raise
            relay.resize()
    finally:
        if console:
            console.close()
    if detach:
        return 0
    return relay.run(ctx.exec_pid) if relay else runtime.wait(ctx.exec_pid)


# ------------------------------------------------------- checkpoint and restore
# Both belong to a plugin (checkpoint, through CRIU): checkpoint goes through
# ``ocirt_command`` like pause; restore is create's sibling in the kernel
# (``Runtime.restore`` and the ``ocirt_restore`` hook).


def checkpoint(g: Globals, container_id: str, **options: object) -> int:
    """Dump the container; then delete it unless it was left running, as runc does."""
    status = _command(g, container_id, "checkpoint", {"criu": g.criu, **options})
    if status == 0 and not (options.get("leave_running") or options.get("pre_dump")):
        # criu killed the processes; delete waits for the init to be gone, then
        # releases its cgroup, runs poststop hooks, drops the state.
        g.runtime().delete(container_id, force=True)
    return status


def restore(
    g: Globals,
    container_id: str,
    bundle: str = ".",
    detach: bool = False,
    no_subreaper: bool = False,
    **options: object,
) -> int:
    """Restore a checkpoint as container ``container_id``; in the foreground, wait for it as ``run``."""
    from ocirt.core import plugins, syscalls

    if not detach and not no_subreaper:
        # The restored init is criu's child; when criu exits it comes to us.
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    refs = plugins.select(g.add_plugins, g.drop_plugins)
    runtime = g.runtime()
    ctx = runtime.restore(container_id, bundle, refs, {**g.plugin_options(), **options, "detach": detach})
    if detach:
        return 0
    try:
        return runtime.wait(ctx.init_pid)
    finally:
        runtime.delete(container_id, force=True)
