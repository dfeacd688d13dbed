"""A plugin that records every hook call as a line ``HOOK ROLE PID``.

The record file is named by the annotation ``org.ocirt.test.record`` in
config.json; without it the plugin does nothing, so it is harmless when an
installed entry point loads it into other tests' containers.

Each process opens the file once and keeps the fd. The setup child closes every
fd it did not inherit on purpose, so a forked process cannot reuse its parent's
fd: a new pid means a new open. The init's first hook (``setup_rootfs``) runs
before pivot_root, where the host path is still reachable; after the pivot the
init writes through the fd it opened then. The fd is close-on-exec, so the
user process never sees it.

Self-contained on purpose: the entry-point test installs a copy of this file
as the top-level module ``ocirt_test_recorder``.
"""

from __future__ import annotations

import os
import time

from ocirt import hookimpl

ANNOTATION = "org.ocirt.test.record"
#: Seconds ``ocirt_start_container`` sleeps before recording (to widen races).
START_DELAY = "org.ocirt.test.start-delay"

_fd = -1
_fd_pid = 0


def _annotations(container) -> dict[str, str]:
    if container.spec is not None:
        return container.spec.annotations
    return container.state.data.get("annotations") or {}


def _record(container, hook: str) -> None:
    global _fd, _fd_pid
    path = _annotations(container).get(ANNOTATION)
    if not path:
        return
    if _fd_pid != os.getpid():
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        _fd_pid = os.getpid()
    os.write(_fd, f"{hook} {container.role} {os.getpid()}\n".encode())


@hookimpl
def ocirt_validate(container):
    _record(container, "validate")


@hookimpl
def ocirt_prepare_host(container):
    _record(container, "prepare_host")


@hookimpl
def ocirt_before_fork(container):
    _record(container, "before_fork")


@hookimpl
def ocirt_enter_namespaces(container):
    _record(container, "enter_namespaces")


@hookimpl
def ocirt_configure_from_host(container):
    _record(container, "configure_from_host")


@hookimpl
def ocirt_setup_rootfs(container):
    _record(container, "setup_rootfs")


@hookimpl
def ocirt_create_container(container):
    _record(container, "create_container")


@hookimpl
def ocirt_pivot_root(container):
    _record(container, "pivot_root")
    return None  # leave the pivot to the mounts plugin


@hookimpl
def ocirt_after_pivot(container):
    _record(container, "after_pivot")


@hookimpl
def ocirt_finalize_process(container):
    _record(container, "finalize_process")


@hookimpl
def ocirt_start_container(container):
    delay = _annotations(container).get(START_DELAY)
    if delay:
        time.sleep(float(delay))
    _record(container, "start_container")


@hookimpl
def ocirt_poststart(container):
    _record(container, "poststart")


@hookimpl
def ocirt_cleanup(container):
    _record(container, "cleanup")
