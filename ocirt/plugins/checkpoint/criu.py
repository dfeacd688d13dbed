"""Finding the criu binary, checking that it works, and running it.

ocirt talks to CRIU through its command line (``criu dump``, ``criu restore``):
every option is then visible in the log and can be replayed by hand. Each run
writes a log in the work directory; on failure the first ``Error`` lines of
that log become the one-line message the user sees.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ocirt.core.errors import NotSupported, OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

#: Where ``scripts/install-criu.sh`` puts a criu that works on kernels Debian 12's does not.
PRIVATE_INSTALL = "/opt/ocirt-criu/bin/criu"
#: runc's default for ``--criu``: meaning "not given".
DEFAULT_NAME = "criu"
INSTALL_HINT = "install one with scripts/install-criu.sh, or pass --criu PATH"


def locate(given: str | None) -> str:
    """The criu to run: ``--criu PATH``, else ocirt's private install, else ``criu`` on PATH."""
    if given and given != DEFAULT_NAME:
        found = given if "/" in given else shutil.which(given)
        if not found or not os.access(found, os.X_OK):
            raise NotSupported(f"criu {given!r}: no such executable file ({INSTALL_HINT})")
        return found
    if os.access(PRIVATE_INSTALL, os.X_OK):
        return PRIVATE_INSTALL
    found = shutil.which(DEFAULT_NAME)
    if not found:
        raise NotSupported(f"criu: not installed ({INSTALL_HINT})")
    return found


def version(binary: str) -> str:
    """``criu --version``'s version (``4.1.1``); fails clearly if the binary is not criu."""
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except OSError as e:
        raise NotSupported(f"criu {binary}: {(e.strerror or str(e)).lower()}") from None
    for line in done.stdout.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise NotSupported(
        f"criu {binary} does not work: `--version` exited {done.returncode} without a version "
        f"({INSTALL_HINT})"
    )


def check(binary: str, feature: str | None = None) -> str | None:
    """``criu check`` (or ``--feature NAME``): None if it passes, else its reason in one line."""
    cmd = [binary, "check", *(["--feature", feature] if feature else [])]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except OSError as e:
        return (e.strerror or str(e)).lower()
    if done.returncode == 0:
        return None
    return first_error((done.stdout + done.stderr).splitlines()) or f"exit status {done.returncode}"


#: Log lines criu marks ``Error`` that do not stop it: the RLIMIT_NOFILE one (see README), and a
#: dump with a parent (``--prev-images-dir``) meeting a process the parent images do not have
#: (one started since the pre-dump): its pages are then dumped in full.
HARMLESS = ("RLIMIT_NOFILE", "No parent image found")


def first_error(lines: Sequence[str]) -> str:
    """The most telling line of a criu log: its first ``Error``, without the source location."""
    for line in lines:
        if "Error" in line and not any(text in line for text in HARMLESS):
            text = line.split("):", 1)[1] if "):" in line else line
            return " ".join(text.split())
    return ""


def run(
    binary: str,
    action: str,
    args: list[str],
    log_path: str,
    *,
    pass_fds: Sequence[int] = (),
    preexec: Callable[[], None] | None = None,
    wait: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> None:
    """Run ``criu ACTION ARGS``; raise with the log's first error if it fails.

    ``wait`` (if given) serves the process while it runs (the action-script
    notifications) and returns once it has exited.
    """
    cmd = [binary, action, *args, "--log-file", log_path, "-v4"]
    with open(os.devnull, "rb") as null_in, open(log_path + ".out", "wb") as out:
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=null_in,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=tuple(pass_fds),
                preexec_fn=preexec,  # ocirt runs no threads: safe here
            )
        except OSError as e:
            raise OcirtError(f"criu {action}: {binary}: {(e.strerror or str(e)).lower()}") from None
        try:
            if wait is not None:
                wait(proc)
            status = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if status != 0:
        raise OcirtError(f"criu {action} failed: {log_error(log_path, binary)} (log: {log_path})")


def log_error(log_path: str, binary: str) -> str:
    """Why a criu run failed: its log's first error, else its output, else ``criu check``."""
    for path in (log_path, log_path + ".out"):
        try:
            with open(path, errors="replace") as f:
                reason = first_error(f.read().splitlines())
        except OSError:
            continue
        if reason:
            return reason
    broken = check(binary)
    return f"criu check fails: {broken}" if broken else "no error in its log"
