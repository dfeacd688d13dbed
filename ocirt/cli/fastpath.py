"""A tiny parser for the commands engines call on every container.

Importing typer (and click, rich) costs about 55 ms (200 ms with everything it
pulls in here), more than runc needs to run a whole container. Engines call
``create``, ``start``, ``state``, ``kill``, ``delete``, and for live containers
``exec``, ``pause``, ``resume``, ``update`` and ``ps``, with runc's flags only, so
those are parsed here from the tables below. Anything else, ``--help``, or
anything this parser does not recognise, goes to the typer app, which is the
CLI's reference; a test checks that these tables and the typer app declare the
same options.
"""

from __future__ import annotations

#: Options before the command: flag -> (destination, takes a value, repeatable).
GLOBAL_OPTIONS: dict[str, tuple[str, bool, bool]] = {
    "--root": ("root", True, False),
    "--log": ("log", True, False),
    "--log-format": ("log_format", True, False),
    "--debug": ("debug", False, False),
    "--systemd-cgroup": ("systemd_cgroup", False, False),
    "--rootless": ("rootless", True, False),
    "--criu": ("criu", True, False),
    "--plugin": ("plugin", True, True),
    "-p": ("plugin", True, True),
    "--no-plugin": ("no_plugin", True, True),
    "--trace": ("trace", True, False),
}

_CREATE = {
    "--bundle": ("bundle", True, False),
    "-b": ("bundle", True, False),
    "--console-socket": ("console_socket", True, False),
    "--pid-file": ("pid_file", True, False),
    "--no-pivot": ("no_pivot", False, False),
    "--no-new-keyring": ("no_new_keyring", False, False),
    "--preserve-fds": ("preserve_fds", True, False),
}

_EXEC = {
    "--process": ("process", True, False),
    "--tty": ("tty", False, False),
    "-t": ("tty", False, False),
    "--console-socket": ("console_socket", True, False),
    "--detach": ("detach", False, False),
    "-d": ("detach", False, False),
    "--pid-file": ("pid_file", True, False),
    "--cwd": ("cwd", True, False),
    "--env": ("env", True, True),
    "-e": ("env", True, True),
    "--user": ("user", True, False),
    "-u": ("user", True, False),
    "--additional-gids": ("additional_gids", True, True),
    "-g": ("additional_gids", True, True),
    "--cap": ("cap", True, True),
    "-c": ("cap", True, True),
    "--no-new-privs": ("no_new_privs", False, False),
    "--apparmor": ("apparmor", True, False),
    "--process-label": ("process_label", True, False),
    "--preserve-fds": ("preserve_fds", True, False),
    "--ignore-paused": ("ignore_paused", False, False),
}

_UPDATE_FLAGS = (
    "resources", "memory", "memory-reservation", "memory-swap", "kernel-memory", "cpu-shares",
    "cpu-quota", "cpu-period", "cpu-burst", "cpu-rt-runtime", "cpu-rt-period", "cpuset-cpus",
    "cpuset-mems", "pids-limit", "blkio-weight",
)  # fmt: skip

#: command -> (options, positional parameter names; a trailing '?' marks optional,
#: a trailing '*' takes every remaining argument).
COMMANDS: dict[str, tuple[dict[str, tuple[str, bool, bool]], tuple[str, ...]]] = {
    "create": (_CREATE, ("container_id",)),
    "run": (
        {
            **_CREATE,
            "--detach": ("detach", False, False),
            "-d": ("detach", False, False),
            "--keep": ("keep", False, False),
            "--no-subreaper": ("no_subreaper", False, False),
            "--network": ("network", True, False),
        },
        ("container_id",),
    ),
    "start": ({}, ("container_id",)),
    "state": ({}, ("container_id",)),
    "kill": (
        {"--all": ("all_processes", False, False), "-a": ("all_processes", False, False)},
        ("container_id", "signal?"),
    ),
    "delete": ({"--force": ("force", False, False), "-f": ("force", False, False)}, ("container_id",)),
    "exec": (_EXEC, ("container_id", "command*")),
    "pause": ({}, ("container_id",)),
    "ps": ({"--format": ("fmt", True, False), "-f": ("fmt", True, False)}, ("container_id",)),
    "resume": ({}, ("container_id",)),
    "update": ({f"--{f}": (f.replace("-", "_"), True, False) for f in _UPDATE_FLAGS}, ("container_id",)),
}


def handler_name(command: str) -> str:
    """The function of ``ocirt.cli.commands`` a fast-path command calls (``exec`` is a keyword)."""
    return "exec_" if command == "exec" else command


#: Commands whose options end at the first argument: the rest is the container's command.
OPTIONS_BEFORE_ARGUMENTS = frozenset({"exec"})

INT_OPTIONS = frozenset({"preserve_fds"})


class Unparsed(Exception):
    """The fast path does not handle these arguments: use the typer app."""


def _take(args: list[str], i: int, table: dict[str, tuple[str, bool, bool]], out: dict[str, object]) -> int:
    """Consume the option at ``args[i]`` into ``out``; return the next index."""
    flag, eq, inline = args[i].partition("=")
    if flag not in table:
        raise Unparsed(flag)
    dest, takes_value, repeat = table[flag]
    if not takes_value:
        if eq:
            raise Unparsed(flag)
        out[dest] = True
        return i + 1
    if eq:
        value = inline
    elif i + 1 < len(args):
        value, i = args[i + 1], i + 1
    else:
        raise Unparsed(flag)
    if dest in INT_OPTIONS:
        if not (value.isascii() and value.isdigit()):
            raise Unparsed(flag)
        out[dest] = int(value)
    elif repeat:
        out.setdefault(dest, [])
        out[dest].append(value)  # type: ignore[attr-defined]
    else:
        out[dest] = value
    return i + 1


def parse(args: list[str]) -> tuple[dict[str, object], str, dict[str, object]]:
    """(global options, command, command options) or raise Unparsed."""
    if any(a in ("-h", "--help") for a in args):
        raise Unparsed("help")
    globals_: dict[str, object] = {}
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i = _take(args, i, GLOBAL_OPTIONS, globals_)
    if i >= len(args) or args[i] not in COMMANDS:
        raise Unparsed("command")
    command = args[i]
    table, positionals = COMMANDS[command]
    options: dict[str, object] = {}
    values: list[str] = []
    i += 1
    while i < len(args):
        if values and command in OPTIONS_BEFORE_ARGUMENTS:
            values.extend(args[i:])  # the container's command, verbatim (a "--" included)
            break
        if args[i] == "--":
            values.extend(args[i + 1 :])
            break
        if args[i].startswith("-") and len(args[i]) > 1:
            i = _take(args, i, table, options)
        else:
            values.append(args[i])
            i += 1
    rest = positionals[-1].endswith("*")
    required = [p for p in positionals if not p.endswith(("?", "*"))]
    if len(values) < len(required) or (not rest and len(values) > len(positionals)):
        raise Unparsed("arguments")
    for name, value in zip(positionals, values, strict=False):
        options[name.rstrip("?*")] = value
    if rest:
        options[positionals[-1].rstrip("*")] = values[len(positionals) - 1 :] or None
    return globals_, command, options


def long_option_names() -> set[str]:
    """Every long option name the fast path knows (for Go-style ``-flag`` rewriting)."""
    names = {f for f in GLOBAL_OPTIONS if f.startswith("--")}
    for table, _ in COMMANDS.values():
        names.update(f for f in table if f.startswith("--"))
    return names
