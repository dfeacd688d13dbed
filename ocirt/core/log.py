"""The runtime's log: runc's ``--log FILE --log-format text|json`` contract.

Engines read JSON lines ``{"level":"error","msg":...,"time":...}`` from the log
file and show the last error's ``msg``; podman shows stderr. Errors therefore go
to both; warnings and debug lines go to the log file, or stderr without one.
"""

from __future__ import annotations

import os
import sys
import time

from ocirt.core import jsonio

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Logger:
    def __init__(self, path: str | None = None, fmt: str = "text", debug: bool = False) -> None:
        self.path = path
        self.fmt = fmt
        self.threshold = LEVELS["debug"] if debug else LEVELS["info"]

    def _line(self, level: str, msg: str) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.fmt == "json":
            return jsonio.dumps({"level": level, "msg": msg, "time": stamp}) + "\n"
        return f'time="{stamp}" level={level} msg="{msg}"\n'

    def _write(self, level: str, msg: str) -> None:
        if self.path:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    os.write(fd, self._line(level, msg).encode())
                finally:
                    os.close(fd)
                return
            except OSError:
                pass
        if level != "error":
            _stderr(f"ocirt: {level}: {msg}\n")

    def error(self, msg: str) -> None:
        """An error: one line on stderr, and a line in the log file when one is given."""
        if self.path:
            self._write("error", msg)
        _stderr(f"ocirt: {msg}\n")

    def warning(self, msg: str) -> None:
        self._write("warning", msg)

    def info(self, msg: str) -> None:
        if self.threshold <= LEVELS["info"] and self.path:
            self._write("info", msg)

    def debug(self, msg: str) -> None:
        if self.threshold <= LEVELS["debug"]:
            self._write("debug", msg)


def _stderr(line: str) -> None:
    """A line on stderr; lost if nobody reads it any more (a closed pipe): a warning
    must not abort the cleanup that follows it and leave the container behind."""
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
