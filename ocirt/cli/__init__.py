"""The ``ocirt`` command: argument routing, error reporting and exit status."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from ocirt.cli.globals import Globals

#: Variables that would let a caller steer the runtime's Python.
_PYTHON_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONINSPECT", "PYTHONUSERBASE",
               "PYTHONEXECUTABLE", "PYTHONWARNINGS", "PYTHONPYCACHEPREFIX", "PYTHONSAFEPATH")  # fmt: skip


def _harden() -> None:
    """Re-exec isolated (-I) if the caller's environment could steer this interpreter.

    Engines run the runtime as root with their own environment; a PYTHONPATH of
    theirs must not decide which code ocirt runs. Costs nothing when unset.
    """
    if sys.flags.isolated or not any(k in os.environ for k in _PYTHON_ENV):
        return
    env = {k: v for k, v in os.environ.items() if k not in _PYTHON_ENV}
    os.execve(sys.executable, [sys.executable, "-I", "-m", "ocirt", *sys.argv[1:]], env)


def normalize(args: list[str]) -> list[str]:
    """Accept Go-style single-dash long flags (``-no-subreaper``, ``-bundle=x``).

    Only tokens naming a known long option, or shaped like one before the command
    (``-log``), are rewritten; command arguments such as ``-c`` are untouched.
    """
    tail = _exec_command_start(args)
    if tail is not None:
        # exec: COMMAND [ARG...] after the id belongs to the container's process.
        return [*_normalize(args[:tail]), *args[tail:]]
    return _normalize(args)


def _normalize(args: list[str]) -> list[str]:
    from ocirt.cli.fastpath import long_option_names

    known = long_option_names() | {"--no-subreaper", "--format", "--quiet", "--version", "--help"}
    known |= {f for f in EXEC_VALUE_OPTIONS if f.startswith("--")}
    known |= {"--tty", "--detach", "--no-new-privs", "--ignore-paused"}
    known |= CHECKPOINT_OPTIONS
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            out.extend(args[i:])
            break
        if len(arg) > 3 and arg[0] == "-" and arg[1].isalpha() and arg[2] == "=":
            out.extend([arg[:2], arg[3:]])  # Go-style -b=/x, which click would read as "=/x"
            continue
        if arg.startswith("-") and not arg.startswith("--") and len(arg.split("=", 1)[0]) > 2:
            candidate = "-" + arg
            if candidate.split("=", 1)[0] in known:
                arg = candidate
        out.append(arg)
    return out


#: checkpoint's and restore's long options (containerd sends them Go-style: ``-work-path``).
CHECKPOINT_OPTIONS = frozenset({
    "--image-path", "--work-path", "--parent-path", "--leave-running", "--tcp-established",
    "--ext-unix-sk", "--shell-job", "--lazy-pages", "--status-fd", "--page-server", "--file-locks",
    "--pre-dump", "--manage-cgroups-mode", "--empty-ns", "--auto-dedup", "--bundle", "--pid-file",
    "--console-socket", "--no-pivot",
})  # fmt: skip

#: exec's options that take a value: what tells the id from an option's value.
EXEC_VALUE_OPTIONS = frozenset({
    "--process", "--console-socket", "--pid-file", "--cwd", "--env", "-e", "--user", "-u",
    "--additional-gids", "-g", "--cap", "-c", "--apparmor", "--process-label", "--preserve-fds",
})  # fmt: skip


def _exec_command_start(args: list[str]) -> int | None:
    """For ``exec``, the index just after the container id (where the command starts)."""
    from ocirt.cli.fastpath import GLOBAL_OPTIONS

    i = 0
    while i < len(args) and args[i].startswith("-"):
        flag = args[i].split("=", 1)[0]
        flag = "-" + flag if not flag.startswith("--") and "-" + flag in GLOBAL_OPTIONS else flag
        takes = GLOBAL_OPTIONS.get(flag, ("", False, False))[1]
        i += 2 if takes and "=" not in args[i] else 1
    if i >= len(args) or args[i] != "exec":
        return None
    i += 1
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return None  # the id and command follow "--": nothing is rewritten after it anyway
        if not arg.startswith("-") or arg == "-":
            return i + 1
        flag = arg.split("=", 1)[0]
        if len(flag) > 2 and not flag.startswith("--"):
            flag = "-" + flag  # Go style -pid-file
        i += 2 if flag in EXEC_VALUE_OPTIONS and "=" not in arg else 1
    return None


def _fallback_globals(args: list[str]) -> Globals:
    """Enough of the global options to report an error before parsing succeeded."""
    from ocirt.cli.globals import Globals

    values: dict[str, str] = {}
    for i, arg in enumerate(args):
        for name in ("--log", "--log-format"):
            if arg == name and i + 1 < len(args):
                values[name] = args[i + 1]
            elif arg.startswith(name + "="):
                values[name] = arg.split("=", 1)[1]
    return Globals(log=values.get("--log"), log_format=values.get("--log-format", "text"))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ocirt`` script; returns the exit status."""
    if argv is None:
        _harden()
        argv = sys.argv[1:]
    args = normalize(argv)
    from ocirt.cli import fastpath
    from ocirt.core.errors import OcirtError

    g: Globals | None = None
    try:
        try:
            parsed = fastpath.parse(args)
        except fastpath.Unparsed:
            return _run_typer(args)
        from ocirt.cli import commands
        from ocirt.cli.globals import Globals

        global_opts, command, options = parsed
        g = Globals(**global_opts)  # type: ignore[arg-type]
        handler = getattr(commands, fastpath.handler_name(command))
        return int(handler(g, **options))
    except OcirtError as e:
        (g or _fallback_globals(args)).log.error(str(e))
        return e.exit_code
    except OSError as e:  # e.g. an unwritable --pid-file: one line, not a traceback
        from ocirt.core.lifecycle import error_text

        (g or _fallback_globals(args)).log.error(error_text(e))
        return 1
    except KeyboardInterrupt:
        return 130


def _run_typer(args: list[str]) -> int:
    from ocirt.cli.app import app
    from ocirt.core.errors import OcirtError

    try:
        result = app(args=args, prog_name="ocirt", standalone_mode=False)
    except OcirtError as e:
        _fallback_globals(args).log.error(str(e))
        return e.exit_code
    except OSError as e:
        from ocirt.core.lifecycle import error_text

        _fallback_globals(args).log.error(error_text(e))
        return 1
    except Exception as e:
        # click's (or typer's vendored click's) usage errors, Exit and Abort.
        if hasattr(e, "format_message"):
            _fallback_globals(args).log.error(e.format_message())
            return int(getattr(e, "exit_code", 2))
        if type(e).__name__ == "Exit":
            return int(getattr(e, "exit_code", 0))
        if type(e).__name__ == "Abort":
            return 130
        raise
    return result if isinstance(result, int) else 0


def run() -> NoReturn:
    """The launcher's entry: ``main``, then end without the interpreter's finalization.

    Tearing down the interpreter (every module, every object) takes about 2 ms, a
    tenth of a short command, and there is nothing left to do by then: ocirt
    keeps no threads, atexit handlers or open files past ``main``. The standard
    streams are flushed first; a failed flush ends with 120, as Python's own exit does.
    """
    code = main()
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        code = code or 120
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)
