"""``ocirt restore``: bring a checkpointed container back as a new, running container.

The kernel (``Runtime.restore``) has reserved the state directory, validated
the spec and let plugins prepare the host (the cgroups plugin made the
cgroup, with its limits). This module then runs ``criu restore``:

* in a child that first joins the container's cgroup (so nothing restored
  runs outside it, whatever ``--manage-cgroups`` says), then takes a private
  mount namespace where it binds the bundle's rootfs on the ``--root`` criu
  rebuilds the container's mounts under: nothing is mounted on the host;
* with ``--cgroup-root`` set to that cgroup, so the restored tasks land in it;
* with the caller's stdio in place of the container's old pipes (and of
  stdio files outside the container, such as conmon's ``/dev/null``), the
  namespaces the spec joins, and the bind mounts' sources from this bundle;
* answering criu's notifications: at ``setup-namespaces`` the kernel's
  ``ocirt_configure_from_host`` runs for the new init (prestart and
  createRuntime hooks, as runc runs them there); ``post-restore`` gives the pid.
"""

from __future__ import annotations

import json
import os

from ocirt.core import syscalls as s
from ocirt.core.errors import NotSupported, OcirtError
from ocirt.core.state import process_start_time
from ocirt.plugins.checkpoint import args, criu
from ocirt.plugins.checkpoint.dump import check_options, image_dirs
from ocirt.plugins.checkpoint.notify import Notifier

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ocirt.core.context import Container


def read_side_file(images: str) -> dict[str, Any]:
    """What the dump kept for us; a runc checkpoint has only ``descriptors.json``."""
    for name in (args.SIDE_FILE, args.DESCRIPTORS):
        try:
            with open(os.path.join(images, name)) as f:
                data = json.load(f)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as e:
            raise OcirtError(f"restore: {os.path.join(images, name)}: {e}") from None
        return data if isinstance(data, dict) else {"descriptors": data, "masked": []}
    return {"descriptors": [], "masked": []}


def cgroup_joiner(container: Container) -> Callable[[], None]:
    """How a process joins the container's cgroup: the ``ocirt_join_cgroup`` hook,
    which does nothing when no plugin made one."""
    hooks = container.local["hooks"]
    return lambda: hooks.ocirt_join_cgroup(container=container)


def placement(join: Callable[[], None] | None) -> dict[str, str]:
    """/proc/self/cgroup of a child that joined the container's cgroup (ours without one)."""
    if join is None:
        with open("/proc/self/cgroup") as f:
            return args.parse_cgroup_file(f.read())
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.close(read_end)
            join()
            with open("/proc/self/cgroup", "rb") as f:
                os.write(write_end, f.read())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise OcirtError("restore: could not place criu in the container's cgroup")
    return args.parse_cgroup_file(b"".join(chunks).decode())


def cgroup_roots(where: dict[str, str]) -> list[str]:
    """``--cgroup-root CTRL:PATH`` for each v1 controller: where the restored tasks go (as runc)."""
    roots: list[str] = []
    for controllers, path in where.items():
        for controller in filter(None, controllers.split(",")):
            roots += ["--cgroup-root", f"{controller}:{path}"]
    return roots


def restore(container: Container) -> int:
    spec = container.require_spec()
    options = container.options
    if (spec.process or {}).get("terminal"):
        raise NotSupported("restore: ocirt restores only containers whose stdio are pipes, not a terminal")
    check_options(options, "restore")
    images, work = image_dirs(options)
    if not os.path.exists(os.path.join(images, "inventory.img")):
        what = "no checkpoint there" if os.path.isdir(images) else "no such file or directory"
        raise OcirtError(f"restore: image path {images}: {what}")
    binary = criu.locate(options.get("criu"))
    criu.version(binary)
    os.makedirs(work, 0o700, exist_ok=True)
    side = read_side_file(images)
    fds: list[int] = []
    inherited: dict[str, int] = {}
    root = os.path.join(container.state.dir, "criu-root")
    notifier = None
    try:
        for number, name in enumerate(side.get("descriptors") or []):
            if str(name).startswith("pipe:") and number < 3:
                fds.append(os.dup(number))  # the caller's stdio replace the old pipes
                inherited[str(name)] = fds[-1]
        for number, key in side.get("external_stdio") or []:
            if key not in inherited and 0 <= number < 3:
                # A stdio file the dump left out (conmon's /dev/null): the caller's replaces it.
                fds.append(os.dup(number))
                inherited[str(key)] = fds[-1]
        for kind, path in args.joined_namespaces(spec):
            fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
            inherited[args.external_key(kind)] = fds[-1]
        os.mkdir(root, 0o700)
        join = cgroup_joiner(container)
        where = placement(join)
        in_cgroup = where != placement(None)  # a plugin made the container a cgroup
        with open("/proc/self/mountinfo") as f:
            cgroups = args.cgroup_sources(list(side.get("cgroup_mounts") or []), f.read(), where)
        masked = list(side.get("masked") or [])
        criu_args = args.restore(spec, options, images, work, root, masked, cgroups, inherited)
        if in_cgroup:
            criu_args += cgroup_roots(where)
        restored: dict[str, int] = {}
        notifier = Notifier(
            work,
            {
                "setup-namespaces": lambda pid: _configure(container, pid),
                "post-restore": lambda pid: restored.__setitem__("pid", pid),
            },
        )
        pidfile = os.path.join(work, "restore.pid")

        def preexec() -> None:  # in criu's process, before its exec
            join()
            s.unshare(s.CLONE_NEWNS)
            s.mount(None, "/", None, s.MS_REC | s.MS_PRIVATE)
            s.mount(spec.rootfs, root, None, s.MS_BIND | s.MS_REC)

        criu.run(
            binary,
            "restore",
            [*criu_args, "--action-script", notifier.script, "--pidfile", pidfile],
            os.path.join(work, "restore.log"),
            pass_fds=fds,
            preexec=preexec,
            wait=notifier.serve,
        )
        pid = restored.get("pid") or _read_pid(pidfile)
    finally:
        for fd in fds:
            os.close(fd)
        if notifier is not None:
            notifier.close()
        try:
            os.rmdir(root)
        except OSError:
            pass
    if not pid or process_start_time(pid) is None:
        raise OcirtError("restore: criu reported success but the restored init is not running")
    return pid


def _configure(container: Container, pid: int) -> None:
    """setup-namespaces: the new init exists, stopped; act on it from the host."""
    container.init_pid = pid
    container.state.data.update(pid=pid, init_start=process_start_time(pid))
    hooks = container.local.get("hooks")
    if hooks is not None:
        hooks.ocirt_configure_from_host(container=container)


def _read_pid(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0
