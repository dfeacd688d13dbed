"""Run config.json's ``hooks`` where runtime-spec 1.2 (and runc) run them.

===============  ========  ==================================  ==========
kind             process   hook of ours                         status
===============  ========  ==================================  ==========
prestart         runtime   ``ocirt_configure_from_host``        creating
createRuntime    runtime   ``ocirt_configure_from_host``        creating
createContainer  init      ``ocirt_create_container``           creating
startContainer   init      ``ocirt_start_container``            created
poststart        runtime   ``ocirt_poststart``                  running
poststop         runtime   ``ocirt_cleanup`` (trylast), delete  stopped
===============  ========  ==================================  ==========

prestart and createRuntime run once the init's pid is known and its
namespaces exist (a network hook given the pid finds the container's network
namespace), before the init sets up its rootfs. createContainer runs in the
container's mount namespace before pivot_root; startContainer after it, just
before the exec: their paths resolve there.

A failing prestart, createRuntime or createContainer hook fails ``create``
(the container is rolled back); a failing startContainer hook ends the init
before the exec, and ``start`` fails with its message (the init writes it to
``hooks-error`` in the state directory through an fd opened before any
namespace is entered). Failing poststart and poststop hooks are warnings.
poststop runs at ``delete`` only, not on the rollback of a failed create
(nothing was started: the spec's step 12 is a delete the caller asks for).

``subprocess`` costs ``re``, ``enum`` and ``signal``: it is imported only when
the spec has hooks (in ``ocirt_validate`` for the init's kinds, before the
fork and pivot_root), by :mod:`ocirt.plugins.hooks.runner`.
"""

from __future__ import annotations

import os

from ocirt import hookimpl
from ocirt.core.errors import OcirtError
from ocirt.core.state import CREATED, CREATING, RUNNING, STOPPED

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
#: Kinds whose failure ends the lifecycle (the others are warnings).
FATAL = frozenset(KINDS[:4])
#: Kinds later commands (start, delete) run: kept in the state, the bundle may go.
SAVED = ("poststart", "poststop")
ERROR_FILE = "hooks-error"
STATE = "hooks.state"


def _hooks(container: Container) -> dict[str, Any]:
    spec = container.spec
    if spec is None:
        return {}
    return spec.section("hooks") or {}


def _run(container: Container, kind: str, hooks: list[dict[str, Any]], state: dict[str, Any]) -> None:
    from ocirt.plugins.hooks import runner  # loaded by ocirt_validate for the init's kinds

    cwd = container.bundle if container.role == "runtime" else None
    for index, hook in enumerate(hooks):
        problem = runner.run(hook, state, cwd)
        if problem is None:
            continue
        message = f"{kind} hook #{index} ({hook['path']}): {problem}"
        if kind in FATAL:
            raise OcirtError(message)
        container.log.warning(message)


@hookimpl
def ocirt_features(container: Container | None) -> dict[str, Any] | None:
    return {"hooks": list(KINDS)}


@hookimpl
def ocirt_validate(container: Container) -> None:
    spec = container.require_spec()
    hooks = spec.section("hooks") or {}
    # Nothing to run at start or delete: those commands then need not load this plugin.
    if not (hooks.get("poststart") or hooks.get("startContainer")):
        container.withdraw(ocirt_poststart)
    if not hooks.get("poststop"):
        container.withdraw(ocirt_cleanup)
    if not (hooks.get("prestart") or hooks.get("createRuntime")):
        # The init then need not wait for the runtime after its namespaces.
        container.withdraw(ocirt_configure_from_host)
    if not hooks:
        return
    for kind, entries in hooks.items():
        if kind not in KINDS:
            raise spec.error(f"hooks.{kind}", f"unknown hook kind (known: {', '.join(KINDS)})")
        if not isinstance(entries, list):
            raise spec.error(f"hooks.{kind}", "must be a list")
        for i, hook in enumerate(entries):
            field = f"hooks.{kind}[{i}]"
            if not isinstance(hook, dict):
                raise spec.error(field, "must be an object")
            path = hook.get("path")
            if not isinstance(path, str) or not os.path.isabs(path):
                raise spec.error(f"{field}.path", f"must be an absolute path, not {path!r}")
            for key in ("args", "env"):
                value = hook.get(key)
                if value is not None and (
                    not isinstance(value, list) or not all(isinstance(v, str) for v in value)
                ):
                    raise spec.error(f"{field}.{key}", "must be a list of strings")
            timeout = hook.get("timeout")
            if timeout is not None and (
                isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0
            ):
                raise spec.error(f"{field}.timeout", f"must be a positive integer (seconds), not {timeout!r}")
    # Loaded now: the init runs its kinds after the fork (and startContainer after pivot_root).
    from ocirt.plugins.hooks import runner  # noqa: F401

    saved = {kind: hooks[kind] for kind in SAVED if hooks.get(kind)}
    if hooks.get("startContainer"):
        saved["start_errors"] = True
    if saved:
        container.plugin_data["hooks"] = saved
    container.local["hooks.creating"] = True


@hookimpl(tryfirst=True)
def ocirt_enter_namespaces(container: Container) -> None:
    """Setup child, before any namespace: the fd the init reports a startContainer failure on."""
    if _hooks(container).get("startContainer"):
        path = os.path.join(container.state.dir, ERROR_FILE)
        container.local["hooks.error_fd"] = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
        )


@hookimpl
def ocirt_runtime_request(container: Container, name: str, data: dict[str, Any]) -> dict[str, Any] | None:
    if name != STATE:
        return None
    return {"state": container.state.oci_state(CREATING)}


@hookimpl
def ocirt_configure_from_host(container: Container) -> None:
    hooks = _hooks(container)
    if not (hooks.get("prestart") or hooks.get("createRuntime")):
        return
    state = container.state.oci_state(CREATING)
    for kind in ("prestart", "createRuntime"):
        if hooks.get(kind):
            _run(container, kind, hooks[kind], state)


@hookimpl
def ocirt_create_container(container: Container) -> None:
    hooks = _hooks(container)
    if not (hooks.get("createContainer") or hooks.get("startContainer")):
        return
    # The init sees itself as pid 1: the runtime tells the pid the host sees.
    state = container.ask_runtime(STATE)["state"]
    container.local[STATE] = state
    if hooks.get("createContainer"):
        _run(container, "createContainer", hooks["createContainer"], state)


@hookimpl
def ocirt_start_container(container: Container) -> None:
    hooks = _hooks(container).get("startContainer")
    if not hooks:
        return
    state = dict(container.local[STATE], status=CREATED)
    try:
        _run(container, "startContainer", hooks, state)
    except OcirtError as e:
        fd = container.local.get("hooks.error_fd")
        if fd is not None:
            os.write(fd, str(e).encode())
        raise


@hookimpl(tryfirst=True)
def ocirt_poststart(container: Container) -> None:
    saved = container.plugin_data.get("hooks") or {}
    if saved.get("start_errors"):
        try:
            with open(os.path.join(container.state.dir, ERROR_FILE)) as f:
                error = f.read()
        except FileNotFoundError:
            error = ""
        if error:
            raise OcirtError(f"cannot start container {container.id!r}: {error}")
    if saved.get("poststart"):
        _run(container, "poststart", saved["poststart"], container.state.oci_state(RUNNING))


@hookimpl(trylast=True)
def ocirt_cleanup(container: Container) -> None:
    if container.local.get("hooks.creating"):
        return  # the rollback of a failed create: no delete, no poststop
    saved = container.plugin_data.get("hooks") or {}
    if saved.get("poststop"):
        _run(container, "poststop", saved["poststop"], container.state.oci_state(STOPPED))
