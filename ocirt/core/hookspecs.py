"""Every hook a plugin can implement, one per setup phase, in lifecycle order.

Each hook receives ``container`` (:class:`ocirt.core.context.Container`): the id,
the loaded spec, the CLI options, ``plugin_data`` persisted with the state, and
``log``. A hookimpl may accept any subset of a hook's arguments.

Processes, as named below:

* **runtime**: the ``ocirt`` command itself, in the caller's namespaces.
* **setup child**: the first child forked by ``create``. It creates or joins the
  namespaces; if one of them applies only to children (pid, time) it forks the
  init and exits.
* **init**: the container's first process, later exec'ing ``process.args``.

After ``ocirt_pivot_root`` the runtime's own files are out of reach: code that
runs in the init from then on must not import lazily (import at module level).
With a new user namespace that holds from ``ocirt_enter_namespaces`` on: the
host ids container root maps to may not read the runtime's Python (a standard
library under a 0700 home, as with pyenv): import in ``ocirt_validate`` or at
module level.

Ordering inside a phase uses ``tryfirst``/``trylast``, never registration order.
"""

from __future__ import annotations

import pluggy

from ocirt import PROJECT_NAME

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


# --------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------


@hookspec
def ocirt_features(container: Container | None) -> dict[str, Any] | None:
    """Report what this plugin supports, as a fragment of ``ocirt features``.

    Runtime process. Fragments are merged key by key (lists concatenated,
    objects merged), so the output is honest by construction.
    """


# --------------------------------------------------------------------------
# create: runtime process, before anything is forked
# --------------------------------------------------------------------------


@hookspec
def ocirt_validate(container: Container) -> None:
    """Check this plugin's part of config.json; raise ``SpecError`` naming the field.

    Runtime process, caller's namespaces, nothing created yet. Also the place to
    refuse options the plugin cannot honour on this host.
    """


@hookspec
def ocirt_prepare_host(container: Container) -> None:
    """Create host-side resources (a cgroup directory, network plumbing).

    Runtime process, before the fork. Record what was made in
    ``container.plugin_data`` so ``ocirt_cleanup`` can undo it.
    """


@hookspec
def ocirt_before_fork(container: Container) -> None:
    """The last moment before the container's first process is forked.

    Runtime process. Nothing may fork between this hook and the fork itself, so
    it is the place to enter namespaces that apply to children only (pid, time)
    and make the init the runtime's direct child. Undo in ``ocirt_after_fork``.
    Use ``container.local`` for what must survive until then.
    """


@hookspec
def ocirt_after_fork(container: Container) -> None:
    """Right after the fork, in the runtime process (see ``ocirt_before_fork``)."""


# --------------------------------------------------------------------------
# create: setup child
# --------------------------------------------------------------------------


@hookspec
def ocirt_enter_namespaces(container: Container) -> None:
    """Create or join the container's namespaces.

    Setup child. Set ``container.fork_init = True`` when a namespace entered
    here only applies to children (pid, time): the kernel then forks the init
    from the setup child, which exits. Otherwise the setup child is the init.
    Use ``container.ask_runtime(name, **data)`` for work that must be done
    from outside (writing uid maps).
    """


@hookspec
def ocirt_join_cgroup(container: Container) -> None:
    """The calling process joins the container's cgroup, if a plugin made one.

    For processes the runtime makes that must count as the container's before
    they enter any namespace: exec's setup child (the cgroups plugin calls it
    from its ``ocirt_join_container``) and the process that restores a
    checkpoint (the checkpoint plugin), without knowing how cgroups are kept.
    """


@hookspec
def ocirt_join_container(container: Container) -> None:
    """Setup child of ``exec``: enter the running container's namespaces and cgroup.

    ``container.exec_target`` is the init's pid. Set ``container.fork_init``
    when a namespace joined only applies to children (pid, time). The kernel
    then takes the init's root and calls ``ocirt_finalize_process`` and
    ``ocirt_before_exec`` as for the init; ``ocirt_validate`` ran in the
    runtime on the container's spec whose ``process`` is the exec's.
    """


# --------------------------------------------------------------------------
# create: runtime process, init pid known
# --------------------------------------------------------------------------


@hookspec(firstresult=True)
def ocirt_runtime_request(container: Container, name: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """Answer a request the setup child or init made with ``container.ask_runtime``.

    Runtime process. Return a dict (the reply) if the request is yours.
    """


@hookspec
def ocirt_configure_from_host(container: Container) -> None:
    """Act on the new init from the host: join it to a cgroup, move devices, hooks.

    Runtime process, ``container.init_pid`` set, the init waiting before its
    rootfs setup. ``createRuntime`` and ``prestart`` hooks belong here. The init
    waits only if some plugin implements this hook for the container: withdraw
    it in ``ocirt_validate`` when there is nothing to do, and the init goes on.
    """


# --------------------------------------------------------------------------
# create: init, inside the container's namespaces
# --------------------------------------------------------------------------


@hookspec
def ocirt_setup_rootfs(container: Container) -> None:
    """Prepare the root filesystem: propagation, the rootfs bind, mounts, devices.

    Init, in the container's mount namespace, before pivot_root; paths are host
    paths under ``container.spec.rootfs``.
    """


@hookspec
def ocirt_create_container(container: Container) -> None:
    """The ``createContainer`` point: rootfs mounted, before pivot_root.

    Init, in the container's namespaces.
    """


@hookspec(firstresult=True)
def ocirt_pivot_root(container: Container) -> bool | None:
    """Make the rootfs the init's ``/`` (pivot_root, or MS_MOVE + chroot with --no-pivot).

    Init. Return True when done; the first implementation that does wins.
    """


@hookspec
def ocirt_after_pivot(container: Container) -> None:
    """Work that needs the final ``/``: masked and read-only paths, sysctls.

    Init, after pivot_root.
    """


@hookspec
def ocirt_finalize_process(container: Container) -> None:
    """Shape the process: rlimits, user, groups, capabilities.

    Init, just before it reports ``created``. A seccomp filter waits for
    ``ocirt_before_exec`` unless the runtime must see it loaded (a notify fd
    for an agent): then it loads here, ``trylast``.
    """


# --------------------------------------------------------------------------
# start
# --------------------------------------------------------------------------


@hookspec
def ocirt_start_container(container: Container) -> None:
    """The ``startContainer`` point: ``start`` was called, the exec is next.

    Init, in the container, after pivot_root.
    """


@hookspec
def ocirt_before_exec(container: Container) -> None:
    """The very last step before execve of the user process.

    Init. Only the execve itself follows, so a filter loaded here (seccomp,
    ``trylast``) catches nothing of the runtime's own work.
    """


@hookspec
def ocirt_poststart(container: Container) -> None:
    """After the user process was started (``poststart`` hooks). Runtime process."""


# --------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------


@hookspec
def ocirt_cgroup_drivers() -> dict[str, type] | None:
    """Register cgroup drivers by name: ``{"v2": CgroupV2}``.

    Any process. The ``cgroups`` plugin picks one (the host's hierarchy, or the
    ``org.ocirt.cgroup-driver`` annotation) and drives it; see
    ``ocirt.plugins.cgroups.driver.CgroupDriver`` for the interface.
    """


# --------------------------------------------------------------------------
# control of a live container
# --------------------------------------------------------------------------


@hookspec(firstresult=True)
def ocirt_status(container: Container) -> str | None:
    """Refine a live container's status (e.g. ``paused``). Runtime process.

    A status one file tells is better declared in ``ocirt_validate`` with
    ``container.show_status``: ``state`` then reads the file without loading
    the plugin, which can withdraw this hook."""


@hookspec(firstresult=True)
def ocirt_kill_all(container: Container, signal: int) -> bool | None:
    """Send ``signal`` to every process of the container; True if done. Runtime."""


@hookspec(firstresult=True)
def ocirt_command(container: Container, command: str, options: dict[str, Any]) -> int | None:
    """Carry out a command a backend plugin owns (pause, update, checkpoint...).

    Runtime process. Return an exit status if ``command`` is yours; the CLI
    reports "not supported" when no plugin answers.
    """


# --------------------------------------------------------------------------
# restore: runtime process, instead of the fork of create
# --------------------------------------------------------------------------


@hookspec(firstresult=True)
def ocirt_restore(container: Container) -> int | None:
    """Bring the container's processes back from a checkpoint; return the init's host pid.

    Runtime process, called by ``restore`` where ``create`` forks: the state
    directory is reserved, ``ocirt_validate`` and ``ocirt_prepare_host`` have
    run (the cgroup exists), ``container.options`` holds the command's options
    (``image_path``...). Once the restored init exists with its namespaces and
    before it runs, set ``container.init_pid`` and call
    ``container.local["hooks"].ocirt_configure_from_host(container=container)``
    (prestart/createRuntime hooks, host-side work). The kernel then records
    the container as ``running``; on failure it rolls back as for ``create``.
    """


# --------------------------------------------------------------------------
# delete (and the rollback of a failed create)
# --------------------------------------------------------------------------


@hookspec
def ocirt_cleanup(container: Container) -> None:
    """Release what this plugin made for the container; must be idempotent.

    Runtime process, the init gone. Also called to roll back a failed create,
    so it must cope with a half-made container. ``poststop`` hooks run here
    (``trylast``).
    """
