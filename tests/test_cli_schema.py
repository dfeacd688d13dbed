"""The fast engine path and the typer app describe one CLI.

``ocirt.cli.fastpath`` parses the engines' hot commands from its own table and
hands everything else to the typer app. These tests hold the two to the same
options, the same arguments and the same parsed values, without containers.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import typer.main

from ocirt import cli
from ocirt.cli import commands, fastpath
from ocirt.cli.app import app
from ocirt.cli.fastpath import Unparsed
from ocirt.cli.globals import Globals

GROUP = typer.main.get_command(app)

#: Typer options the fast path leaves to typer on purpose: help, and the eager
#: --version that prints and exits. Any of them sends the call to typer.
TYPER_ONLY = {"--help", "-h", "--version", "-v"}

#: Which function of ``commands`` the fast path calls for each of its commands.
HANDLERS = {name: getattr(commands, fastpath.handler_name(name)) for name in fastpath.COMMANDS}

Table = dict[str, tuple[str, bool, bool]]


def typer_options(params: list[Any]) -> Table:
    """Option string -> (destination, takes a value, repeatable), as fastpath's tables."""
    table: Table = {}
    for param in params:
        if param.param_type_name != "option":
            continue
        for opt in [*param.opts, *param.secondary_opts]:
            if opt not in TYPER_ONLY:
                table[opt] = (param.name, not param.is_flag, bool(param.multiple))
    return table


def typer_arguments(params: list[Any]) -> tuple[str, ...]:
    """Positional parameter names as fastpath writes them: a trailing '?' marks an optional
    one, '*' one that takes every remaining argument."""
    return tuple(
        p.name + ("*" if p.nargs == -1 else "" if p.required else "?")
        for p in params
        if p.param_type_name == "argument"
    )


def is_int(param: Any) -> bool:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        return descriptor.annotation is int
    return getattr(param.type, "name", "") == "integer"


# ----------------------------------------------------------------- the schema


def test_global_options_match_the_typer_app() -> None:
    assert typer_options(GROUP.params) == fastpath.GLOBAL_OPTIONS


def test_typer_only_options_exist() -> None:
    """TYPER_ONLY must not hide an option the app no longer has."""
    declared = {opt for p in GROUP.params for opt in p.opts}
    assert {"--version", "-v"} <= declared


@pytest.mark.parametrize("name", sorted(fastpath.COMMANDS))
def test_command_options_match_the_typer_app(name: str) -> None:
    assert name in GROUP.commands, f"the fast path knows {name!r}, the typer app does not"
    table, positionals = fastpath.COMMANDS[name]
    params = GROUP.commands[name].params
    assert typer_options(params) == table
    assert typer_arguments(params) == positionals


@pytest.mark.parametrize("name", sorted(fastpath.COMMANDS))
def test_integer_options_match(name: str) -> None:
    table, _ = fastpath.COMMANDS[name]
    typed = {p.name for p in GROUP.commands[name].params if p.param_type_name == "option" and is_int(p)}
    assert typed == {dest for dest, _, _ in table.values()} & fastpath.INT_OPTIONS


@pytest.mark.parametrize("name", sorted(fastpath.COMMANDS))
def test_destinations_are_handler_parameters(name: str) -> None:
    """The fast path calls ``handler(g, **options)``: every destination must be a parameter."""
    table, positionals = fastpath.COMMANDS[name]
    parameters = inspect.signature(HANDLERS[name]).parameters
    dests = {dest for dest, _, _ in table.values()} | {p.rstrip("?*") for p in positionals}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # **flags (update): the same-call tests below check each destination arrives
    assert dests <= set(parameters)


def test_global_destinations_are_globals_parameters() -> None:
    parameters = inspect.signature(Globals).parameters
    assert {dest for dest, _, _ in fastpath.GLOBAL_OPTIONS.values()} <= set(parameters)


def test_long_option_names() -> None:
    names = fastpath.long_option_names()
    assert {"--root", "--bundle", "--pid-file", "--force", "--all", "--detach", "--no-plugin"} <= names
    assert all(name.startswith("--") for name in names)


# ------------------------------------------------------------ fastpath.parse


def test_parse_value_forms() -> None:
    for args in (
        ["--root", "/r", "create", "--bundle", "/b", "c1"],
        ["--root=/r", "create", "--bundle=/b", "c1"],
        ["--root", "/r", "create", "-b", "/b", "c1"],
        ["--root=/r", "create", "c1", "-b=/b"],
    ):
        assert fastpath.parse(args) == ({"root": "/r"}, "create", {"bundle": "/b", "container_id": "c1"}), (
            args
        )


def test_parse_everything_create_takes() -> None:
    args = [
        "--log", "/l", "--log-format=json", "--debug", "--systemd-cgroup", "--rootless", "true",
        "--criu", "/criu", "--trace", "/t",
        "create", "--console-socket", "/s", "--pid-file=/p", "--no-pivot", "--no-new-keyring",
        "--preserve-fds", "3", "c1",
    ]  # fmt: skip
    globals_, command, options = fastpath.parse(args)
    assert globals_ == {
        "log": "/l",
        "log_format": "json",
        "debug": True,
        "systemd_cgroup": True,
        "rootless": "true",
        "criu": "/criu",
        "trace": "/t",
    }
    assert command == "create"
    assert options == {
        "console_socket": "/s",
        "pid_file": "/p",
        "no_pivot": True,
        "no_new_keyring": True,
        "preserve_fds": 3,
        "container_id": "c1",
    }


def test_parse_repeatable_plugin_options() -> None:
    globals_, _, _ = fastpath.parse(
        ["-p", "a.b", "--plugin=c", "--no-plugin", "mounts", "-p", "no:x", "state", "c1"]
    )
    assert globals_ == {"plugin": ["a.b", "c", "no:x"], "no_plugin": ["mounts"]}


def test_parse_positionals() -> None:
    assert fastpath.parse(["kill", "c1"])[2] == {"container_id": "c1"}
    assert fastpath.parse(["kill", "--all", "c1", "KILL"])[2] == {
        "all_processes": True,
        "container_id": "c1",
        "signal": "KILL",
    }
    assert fastpath.parse(["kill", "c1", "-a", "9"])[2] == {
        "all_processes": True,
        "container_id": "c1",
        "signal": "9",
    }
    assert fastpath.parse(["kill", "c1", "--", "-9"])[2] == {"container_id": "c1", "signal": "-9"}
    assert fastpath.parse(["delete", "c1", "-f"]) == ({}, "delete", {"container_id": "c1", "force": True})
    assert fastpath.parse(["run", "-d", "--keep", "c1"])[2] == {
        "detach": True,
        "keep": True,
        "container_id": "c1",
    }


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["create", "--help"],
        ["-h", "state", "c1"],
        ["kill", "c1", "-h"],
        ["--frobnicate", "state", "c1"],  # unknown global option
        ["state", "--frobnicate", "c1"],  # unknown command option
        ["delete", "--all", "c1"],  # another command's option
        ["create", "--root", "/r", "c1"],  # a global option after the command
        ["--version"],
        [],
        ["--root", "/r"],  # no command
        ["list"],  # not a fast-path command
        ["spec"],
        ["start"],  # missing id
        ["start", "a", "b"],  # one too many
        ["kill", "c1", "9", "extra"],
        ["create", "c1", "--bundle"],  # option without its value
        ["--root"],
        ["create", "--preserve-fds", "x", "c1"],  # not a number
        ["create", "--preserve-fds=-1", "c1"],
        ["create", "--preserve-fds", "\u00b2", "c1"],  # a digit to str.isdigit, not to int()
        ["delete", "--force=yes", "c1"],  # a flag takes no value
        ["--debug=1", "state", "c1"],
    ],
)
def test_parse_defers_to_typer(args: list[str]) -> None:
    with pytest.raises(Unparsed):
        fastpath.parse(args)


# ---------------------------------------- both parsers, same calls to commands

SAME_CALLS = [
    ["create", "--bundle", "/b", "c1"],
    ["create", "c1"],
    [
        "--root", "/r", "--log=/l", "--log-format", "json", "--debug", "create", "-b", "/b",
        "--pid-file=/p", "--no-pivot", "--preserve-fds", "2", "--console-socket", "/s",
        "--no-new-keyring", "c1",
    ],
    [
        "--systemd-cgroup", "--rootless", "true", "--criu", "/c", "-p", "x.y", "--plugin=z.w",
        "--no-plugin", "mounts", "-p", "no:namespaces", "--trace", "/t", "start", "c1",
    ],
    ["run", "-d", "--keep", "-b", "/b", "c1"],
    ["run", "--detach", "c1"],
    ["state", "c1"],
    ["kill", "c1"],
    ["kill", "--all", "c1", "KILL"],
    ["kill", "-a", "c1", "9"],
    ["kill", "c1", "--", "-9"],
    ["delete", "-f", "c1"],
    ["delete", "c1", "--force"],
    ["exec", "c1", "ls", "-l", "--color"],  # options after the id belong to the command
    ["exec", "--process", "/p.json", "--detach", "--pid-file", "/p", "c1"],  # as engines call it
    [
        "exec", "-t", "--console-socket=/s", "-d", "--cwd", "/w", "-e", "A=1", "--env=B=2",
        "-u", "1:2", "-g", "3", "--additional-gids", "4", "-c", "CAP_KILL", "--cap=CAP_CHOWN",
        "--no-new-privs", "--apparmor", "a", "--process-label", "l", "--preserve-fds", "2",
        "--ignore-paused", "c1", "sh", "-c", "echo -n",
    ],
    ["exec", "c1", "--", "-x"],
    ["pause", "c1"],
    ["resume", "c1"],
    ["ps", "c1"],
    ["ps", "--format", "json", "c1"],
    ["ps", "-f", "json", "c1"],
    ["update", "--resources", "-", "c1"],
    ["update", "--resources=/r.json", "c1"],
    [
        "update", "--memory", "1m", "--memory-reservation", "2", "--memory-swap", "3",
        "--kernel-memory", "4", "--cpu-shares", "5", "--cpu-quota", "6", "--cpu-period", "7",
        "--cpu-burst", "8", "--cpu-rt-runtime", "9", "--cpu-rt-period", "10", "--cpuset-cpus", "0-1",
        "--cpuset-mems", "0", "--pids-limit", "11", "--blkio-weight", "500", "c1",
    ],
]  # fmt: skip


def _observed(g: Globals) -> dict[str, Any]:
    return {**{k: v for k, v in vars(g).items() if k != "log"}, "log": vars(g.log)}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Replace the command functions with recorders of their (complete) arguments."""
    seen: list[tuple[str, dict[str, Any]]] = []
    for name, original in HANDLERS.items():
        signature = inspect.signature(original)

        def record(*args: Any, _name: str = name, _sig: inspect.Signature = signature, **kwargs: Any) -> int:
            bound = _sig.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            arguments["g"] = _observed(arguments["g"])
            if isinstance(arguments.get("flags"), dict):  # **flags: typer passes every unset one as None
                arguments["flags"] = {k: v for k, v in arguments["flags"].items() if v is not None}
            seen.append((_name, arguments))
            return 0

        monkeypatch.setattr(commands, original.__name__, record)
    monkeypatch.delenv("OCIRT_TRACE", raising=False)
    return seen


@pytest.mark.parametrize("args", SAME_CALLS, ids=" ".join)
def test_fast_path_and_typer_make_the_same_call(
    calls: list[tuple[str, dict[str, Any]]], args: list[str]
) -> None:
    fastpath.parse(args)  # the fast path takes these (Unparsed would fail the test)
    assert cli.main(list(args)) == 0
    assert cli._run_typer(list(args)) == 0
    assert len(calls) == 2
    fast, typed = calls
    assert fast == typed


# -------------------------------------------------------------- normalize


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "-no-subreaper", "c1"], ["run", "--no-subreaper", "c1"]),
        (["create", "-bundle", "/b", "c1"], ["create", "--bundle", "/b", "c1"]),
        (["create", "-bundle=/b", "c1"], ["create", "--bundle=/b", "c1"]),
        (
            ["-root", "/r", "-log-format=json", "state", "c1"],
            ["--root", "/r", "--log-format=json", "state", "c1"],
        ),
        (["delete", "-force", "c1"], ["delete", "--force", "c1"]),
        (["list", "-quiet", "-format", "json"], ["list", "--quiet", "--format", "json"]),
        # Short options and arguments are left alone.
        (["kill", "c1", "-9"], ["kill", "c1", "-9"]),
        (["create", "-b", "/b", "c1"], ["create", "-b", "/b", "c1"]),
        (["-p", "no:mounts", "state", "c1"], ["-p", "no:mounts", "state", "c1"]),
        (["exec", "c1", "sh", "-c", "true"], ["exec", "c1", "sh", "-c", "true"]),
        # Single-dash words that name no option, and anything after --, too.
        (["exec", "c1", "ls", "-la"], ["exec", "c1", "ls", "-la"]),
        (["exec", "c1", "find", "-name", "x"], ["exec", "c1", "find", "-name", "x"]),
        (["exec", "c1", "--", "-bundle", "-root"], ["exec", "c1", "--", "-bundle", "-root"]),
        # Already long.
        (["--root", "/r", "state", "c1"], ["--root", "/r", "state", "c1"]),
    ],
)
def test_normalize(args: list[str], expected: list[str]) -> None:
    assert cli.normalize(args) == expected
