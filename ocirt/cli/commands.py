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
    from ocirt.cli.globals import Globals
    from ocirt.core.context import Container

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


def _create(g: Globals, container_id: str, bundle: str, detach: bool, **cli: object) -> Container:
    """Create with the plugin set this call selects; ``cli`` options reach plugins."""
    from ocirt.core import plugins

    refs = plugins.select(g.add_plugins, g.drop_plugins)
    options = {**g.plugin_options(), **cli, "detach": detach}
    return g.runtime().create(container_id, bundle, refs, options)


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
    g.runtime().start(container_id)
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
) -> int:
    """create + start; in the foreground, wait and return the container's status.

    ``--no-subreaper`` is accepted and has no effect: a foreground run must be
    the subreaper to learn the exit status of an init its setup child forked.
    In the foreground with ``process.terminal`` and no ``--console-socket``, the
    container's terminal is relayed to the caller's (``ocirt.cli.console``).
    """
    from ocirt.core import syscalls

    if not detach:
        # The subreaper gets the init as its child even when the setup child forked
        # it (user namespaces), so its exit status can be waited for.
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    console = None
    if not detach and console_socket is None and _wants_terminal(bundle):
        from ocirt.cli.console import ConsoleSocket, Relay

        console = ConsoleSocket()
        console_socket = console.path
    try:
        ctx = _create(
            g, container_id, bundle, detach, console_socket=console_socket, pid_file=pid_file,
            no_pivot=no_pivot, no_new_keyring=no_new_keyring, preserve_fds=preserve_fds,
        )  # fmt: skip
        runtime = g.runtime()
        try:
            relay = Relay(console.receive()) if console else None
            if relay:
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


def _wants_terminal(bundle: str) -> bool:
    """Whether the bundle's process asks for a terminal (a bad config fails in create)."""
    from ocirt.core import spec as spec_mod

    try:
        process = spec_mod.load(bundle).process
    except OcirtError:
        return False
    return bool(process and process.get("terminal"))


def state(g: Globals, container_id: str) -> int:
    import json

    from ocirt.core.state import STOPPED

    st = g.store().load(container_id)
    status = st.status()
    if status not in (STOPPED,) and "ocirt_status" in st.data.get("hooks", ()):
        runtime = g.runtime()
        status = runtime.hooks(st.plugins).ocirt_status(container=runtime.context(st)) or status
    sys.stdout.write(json.dumps(st.oci_state(status), indent=2) + "\n")
    return 0


def kill(g: Globals, container_id: str, signal: str = "SIGTERM", all_processes: bool = False) -> int:
    g.runtime().kill(container_id, parse_signal(signal), all_processes)
    return 0


def delete(g: Globals, container_id: str, force: bool = False) -> int:
    g.runtime().delete(container_id, force)
    return 0


def list_containers(g: Globals, fmt: str = "table", quiet: bool = False) -> int:
    import json

    from ocirt.core.state import iter_states

    states = [st.oci_state() for st in iter_states(g.store())]
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


def not_supported(command: str) -> int:
    raise NotSupported(f"{command}: not supported yet by this version of ocirt")
