"""create, restore, exec and run's wait: the only place that forks.

The kernel's part of each command is the OCI state machine and the handshake;
everything that isolates happens in plugin hooks (see ``hookspecs``).

create::

    runtime            setup child                 init
    validate
    prepare_host
    before_fork
    fork ------------> enter_namespaces
    after_fork         [fork_init: fork ---------> (continues below)
                        report pid, exit]
    <- pid             (otherwise it is the init)
    configure_from_host
    continue ----------------------------------->  setup_rootfs, create_container,
                                                   pivot_root, after_pivot,
                                                   finalize_process, find executable
    <- ready ------------------------------------  blocks opening exec.fifo
    state "created", pid file, exit

configure_from_host and "continue" are left out when no plugin implements the
former for this container (or all withdrew) and the setup child is the init: the
runtime knows that pid from its fork, and the init goes on without waiting.

start opens exec.fifo; init runs ``ocirt_start_container`` and execs.

restore runs create's validate and prepare_host, then ``ocirt_restore`` (a plugin brings
the processes back and returns the init's pid) where create forks; the state is then
``running``.
"""

from __future__ import annotations

import _signal  # the C module: `signal` wraps it in enums, costing an import of enum
import fcntl
import os
import time

from ocirt import OCI_VERSION
from ocirt.core import spec as spec_mod
from ocirt.core import trace
from ocirt.core.context import Container
from ocirt.core.control import KILL_TIMEOUT, Control, kill_quietly
from ocirt.core.errors import NotSupported, OcirtError
from ocirt.core.state import (
    CREATED,
    CREATING,
    RUNNING,
    STOPPED,
    ContainerState,
    now_rfc3339,
    process_start_time,
    wait_gone,
)
from ocirt.core.sync import Channel, channel_pair

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ocirt.core.hookplan import Hooks
    from ocirt.core.plugins import PluginRef
    from ocirt.core.spec import Spec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Runtime(Control):
    """Control's commands, and those that make processes: create, start, delete, exec."""

    # ------------------------------------------------------------------ create

    def create(
        self,
        container_id: str,
        bundle: str,
        refs: list[PluginRef],
        options: dict[str, Any],
        spec: Spec | None = None,
        start: bool = False,
    ) -> Container:
        """Create a container and leave its init waiting on exec.fifo; ``spec``: the
        bundle's config.json if the caller has read it already. With ``start`` (run),
        start it too, before the state is first saved as created: one save, load and
        lock fewer between the init being ready and the user process. Without
        poststart hooks, which must follow the exec, run's init then waits on the
        handshake channel rather than on exec.fifo, which is never made."""

        def bring_up(ctx: Container, hooks: Hooks) -> str:
            by_channel = start and "ocirt_poststart" not in hooks.implemented()
            fifo_fd = -1 if by_channel else _make_fifo(ctx.state.fifo)
            hooks.ocirt_prepare_host(container=ctx)
            self._fork_and_drive(ctx, hooks, fifo_fd)
            return CREATED

        return self._make(container_id, bundle, refs, options, bring_up, spec, start)

    def restore(
        self, container_id: str, bundle: str, refs: list[PluginRef], options: dict[str, Any]
    ) -> Container:
        """Bring a checkpointed container back as a running container (``ocirt restore``).

        create's steps up to the host resources, then ``ocirt_restore`` where create
        forks: a plugin (checkpoint) makes the processes and returns the init's pid.
        There is no exec.fifo and no ``created`` state: the processes were running.
        """

        def bring_up(ctx: Container, hooks: Hooks) -> str:
            hooks.ocirt_prepare_host(container=ctx)
            self.store.save(ctx.state)
            started = time.time()
            pid = hooks.ocirt_restore(container=ctx)
            trace.record("restore.processes", "kernel", started)
            if not pid:
                raise NotSupported(f"restore: no loaded plugin restores containers (plugins: "
                                   f"{', '.join(r.name for r in refs)})")  # fmt: skip
            ctx.init_pid = int(pid)
            return RUNNING

        return self._make(container_id, bundle, refs, options, bring_up)

    def _make(
        self,
        container_id: str,
        bundle: str,
        refs: list[PluginRef],
        options: dict[str, Any],
        bring_up: Callable[[Container, Hooks], str],
        spec: Spec | None = None,
        start: bool = False,
    ) -> Container:
        """What create and restore share: the state directory reserved and locked, every
        plugin's ``ocirt_validate``, then ``bring_up`` saves the state ("creating") as
        it starts making the processes and names the status; the state is saved with
        the init's pid and the pid file written. Any failure rolls everything back,
        leaving nothing."""
        ctx = self._new(container_id, spec or spec_mod.load(bundle), refs, options)
        state = ctx.state
        hooks = None
        try:
            with self.store.lock(container_id):
                hooks = self.hooks(list(refs))
                ctx.local["hooks"] = hooks
                self._validate(ctx, hooks)
                status = bring_up(ctx, hooks)
                start_time = process_start_time(ctx.init_pid)
                state.data.update(status=status, pid=ctx.init_pid, init_start=start_time)
                if start:
                    self.release(state, ctx.channel)
                self.store.save(state)
                if options.get("pid_file"):
                    write_pid_file(options["pid_file"], ctx.init_pid)
                if start:
                    self.poststart(state)
        except BaseException:
            self._rollback(ctx, hooks)
            raise
        finally:
            if ctx.channel is not None:  # run's release channel, used or not
                ctx.channel.close()
                ctx.channel = None
        return ctx

    def _new(
        self, container_id: str, spec: Spec, refs: list[PluginRef], options: dict[str, Any]
    ) -> Container:
        """A container in state ``creating``, its directory reserved (not saved yet)."""
        directory = self.store.reserve(container_id)
        state = ContainerState(
            {
                "ociVersion": OCI_VERSION,
                "id": container_id,
                "status": CREATING,
                "pid": 0,
                "bundle": spec.bundle,
                "rootfs": spec.rootfs,
                "created": now_rfc3339(),
                "owner": "",  # as runc's state shows it; `list` names the state directory's owner
                "annotations": spec.annotations,
                "has_process": spec.process is not None,
                "plugins": [r.as_dict() for r in refs],
            },
            directory,
        )
        return Container(container_id, spec, state, self.log, options)

    def _validate(self, ctx: Container, hooks: Hooks) -> None:
        """Every plugin checks its part; what plugins withdrew from is recorded."""
        state = ctx.state
        state.data["hooks"] = hooks.implemented()
        hooks.ocirt_validate(container=ctx)
        if ctx.withdrawn:
            state.data["skip"] = hooks.withdrawn(ctx.withdrawn)
            hooks.skip(state.data["skip"])
            state.data["hooks"] = hooks.implemented()

    def _fork_and_drive(self, ctx: Container, hooks: Hooks, fifo_fd: int) -> None:
        # The init waits for "continue" only when the runtime has something to do
        # between its namespaces and its rootfs, or has yet to learn its pid (the
        # setup child forked it); otherwise it goes straight on, a round trip sooner.
        ctx.local[HANDSHAKE] = "ocirt_configure_from_host" in hooks.implemented()
        runtime_end, child_end = channel_pair()
        setup_pid = -1
        started = time.time()
        hooks.ocirt_before_fork(container=ctx)
        try:
            setup_pid = os.fork()
        finally:
            if setup_pid != 0:
                hooks.ocirt_after_fork(container=ctx)
        if setup_pid == 0:  # pragma: no cover - runs in the child
            _enter_child(ctx, runtime_end, child_end, fifo_fd)
            _setup_child(ctx, hooks, child_end, fifo_fd)
        if fifo_fd >= 0:
            os.close(fifo_fd)
        child_end.close()
        ctx.channel = runtime_end
        ctx.setup_pid = setup_pid
        try:
            # The first save, while the child enters its namespaces: from here on
            # `state` shows "creating" and `delete --force` finds what to undo and
            # whom to kill (the child, which usually becomes the init).
            ctx.state.data.update(pid=setup_pid, init_start=process_start_time(setup_pid))
            self.store.save(ctx.state)
            self._drive(ctx, hooks, runtime_end, setup_pid)
        except BaseException:
            # End the child waiting on the channel before closing it: it would print
            # "the runtime went away" over the runtime's own error. _rollback reaps it.
            kill_quietly(ctx.init_pid or setup_pid, _signal.SIGKILL)
            runtime_end.close()
            ctx.channel = None
            raise
        finally:
            trace.record("create.fork_to_ready", "kernel", started)
        if fifo_fd >= 0:  # the init waits on exec.fifo from now on
            runtime_end.close()
            ctx.channel = None

    def _drive(self, ctx: Container, hooks: Hooks, chan: Channel, setup_pid: int) -> None:
        """Serve the setup child and init until init reports ready."""
        while True:
            message = _next_message(ctx, hooks, chan, setup_pid, "container init exited during setup")
            kind = message.get("type")
            if kind == "pid":
                ctx.init_pid = int(message["pid"] or setup_pid)
                if message["pid"]:  # a forked init: the state names it from now on
                    ctx.state.data.update(pid=ctx.init_pid, init_start=process_start_time(ctx.init_pid))
                if message["pid"] or ctx.local[HANDSHAKE]:
                    hooks.ocirt_configure_from_host(container=ctx)
                    chan.send(type="continue")
                if message["pid"]:
                    # Saved while it sets up its rootfs: a `delete --force` after a
                    # crash of this process still finds it.
                    self.store.save(ctx.state)
            elif kind == "ready":
                if ctx.init_pid != setup_pid:
                    # Reaped only now, so its exit overlapped the init's setup. It is
                    # gone before create returns: the init's parent is then the caller's
                    # subreaper, never a lingering ocirt process.
                    os.waitpid(setup_pid, 0)
                return
            else:
                raise OcirtError(f"container setup: unexpected message {message!r}")

    def _rollback(self, ctx: Container, hooks: Hooks | None) -> None:
        """Undo a failed create: end the init, let plugins release, drop the state."""
        pid = ctx.init_pid or ctx.state.pid
        if pid:
            start = process_start_time(pid)
            kill_quietly(pid, _signal.SIGKILL)
            _reap_if_child(pid)
            wait_gone(pid, start, KILL_TIMEOUT)
        if hooks is not None:
            try:
                hooks.ocirt_cleanup(container=ctx)
            except Exception as e:
                self.log.warning(f"rollback of {ctx.id!r}: {e}")
        self.store.remove(ctx.id)

    # -------------------------------------------------------------------- exec

    def exec(self, container_id: str, process: dict[str, Any], options: dict[str, Any]) -> Container:
        """Start ``process`` inside a live container; return once it runs (pid in ``exec_pid``).

        Only ``ocirt_validate`` (runtime, on the container's spec with this
        process), ``ocirt_join_container``, ``ocirt_finalize_process`` and
        ``ocirt_before_exec`` are called: nothing of the container is created.
        """
        state = self.store.load(container_id)
        status = state.status()
        if status in (STOPPED, CREATING):
            raise OcirtError(f"cannot exec in container {container_id!r}: it is {status}")
        if state.data.get("paused") and not options.get("ignore_paused"):
            raise OcirtError(f"cannot exec in container {container_id!r}: it is paused")
        base = spec_mod.load(state.bundle)
        spec_mod.check_process(process, base.error, "exec process")
        spec = spec_mod.Spec({**base.data, "process": process}, base.bundle)
        ctx = Container(container_id, spec, state, self.log, options)
        ctx.exec_target = state.pid
        hooks = self.hooks(state.plugins)
        ctx.local["hooks"] = hooks
        hooks.ocirt_validate(container=ctx)
        # The init's root, as seen before any namespace changes ours.
        root_fd = os.open(f"/proc/{state.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._exec_fork(ctx, hooks, root_fd)
        finally:
            os.close(root_fd)
        if options.get("pid_file"):
            write_pid_file(options["pid_file"], ctx.exec_pid)
        return ctx

    def _exec_fork(self, ctx: Container, hooks: Hooks, root_fd: int) -> None:
        runtime_end, child_end = channel_pair()
        setup_pid = os.fork()
        if setup_pid == 0:  # pragma: no cover - runs in the child
            _enter_child(ctx, runtime_end, child_end, root_fd)
            _exec_child(ctx, hooks, child_end, root_fd)
        child_end.close()
        ctx.channel = runtime_end
        ctx.setup_pid = setup_pid
        try:
            while True:
                message = _next_message(
                    ctx, hooks, runtime_end, setup_pid, "exec: the process exited during setup"
                )
                kind = message.get("type")
                if kind == "pid":
                    ctx.exec_pid = int(message["pid"] or setup_pid)
                    runtime_end.send(type="continue")
                elif kind == "ready":
                    if ctx.exec_pid != setup_pid:
                        os.waitpid(setup_pid, 0)
                    return
                else:
                    raise OcirtError(f"exec: unexpected message {message!r}")
        except BaseException:
            kill_quietly(ctx.exec_pid or setup_pid, _signal.SIGKILL)
            _reap_if_child(setup_pid)
            if ctx.exec_pid and ctx.exec_pid != setup_pid:
                _reap_if_child(ctx.exec_pid)
            raise
        finally:
            runtime_end.close()
            ctx.channel = None

    # --------------------------------------------------------------------- run

    def wait(self, pid: int) -> int:
        """Wait for the init (our child, or reparented to us as subreaper); forward signals.

        Returns the exit status as a shell shows it (128+N for a signal).
        """
        for sig in FORWARDED_SIGNALS:
            _signal.signal(sig, lambda signum, _frame: kill_quietly(pid, signum))
        while True:
            try:
                child, status = os.waitpid(-1, 0)
            except ChildProcessError:
                wait_gone(pid, None, 1e9)
                return 0
            if child == pid:
                return exit_status(status)


#: What a foreground ``run`` passes on to the container's init.
FORWARDED_SIGNALS = (
    _signal.SIGINT,
    _signal.SIGTERM,
    _signal.SIGHUP,
    _signal.SIGQUIT,
    _signal.SIGUSR1,
    _signal.SIGUSR2,
    _signal.SIGWINCH,
)


#: ``Container.local`` key: whether create's init waits for the runtime's "continue".
HANDSHAKE = "kernel.handshake"


def exit_status(status: int) -> int:
    """A wait status as a shell shows it: the exit code, or 128+N for signal N."""
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


# ---------------------------------------------------------------------- handshake


def _enter_child(ctx: Container, runtime_end: Channel, child_end: Channel, kept_fd: int) -> None:
    """First steps of a freshly forked child (create's or exec's): not dumpable, and
    nothing of the runtime kept but stdio, the preserved fds, its channel end and
    ``kept_fd`` (the exec fifo, or the container's root)."""
    _not_dumpable()
    runtime_end.close()
    preserved = int(ctx.options.get("preserve_fds") or 0)
    keep = {0, 1, 2, *range(3, 3 + preserved), child_end.read_fd, child_end.write_fd, kept_fd}
    _close_fds_except(keep | set(trace.fds()))


def _next_message(ctx: Container, hooks: Hooks, chan: Channel, child_pid: int, died: str) -> dict[str, Any]:
    """The child's next message other than a request; requests are answered on the way.

    An error message or a closed channel raises (``died`` starts the message).
    """
    while True:
        message = chan.recv()
        if message is None:
            raise OcirtError(f"{died}{_exit_note(child_pid)}")
        if "error" in message:
            raise OcirtError(message["error"])
        if message.get("type") != "request":
            return message
        reply = hooks.ocirt_runtime_request(
            container=ctx, name=message["name"], data=message.get("data") or {}
        )
        if reply is None:
            chan.send(error=f"no plugin answers the request {message['name']!r}")
            raise OcirtError(f"no plugin answers the request {message['name']!r}")
        chan.send(type="reply", data=reply)


# ---------------------------------------------------------------------- child side


def _setup_child(ctx: Container, hooks: Hooks, chan: Channel, fifo_fd: int) -> None:
    """create's forked child: enter the namespaces, maybe fork the init, then become it."""
    _child(ctx, hooks, chan, hooks.ocirt_enter_namespaces, lambda: _init(ctx, hooks, chan, fifo_fd))


def _exec_child(ctx: Container, hooks: Hooks, chan: Channel, root_fd: int) -> None:
    """exec's forked child: join the container, take its root, shape and exec."""
    _child(ctx, hooks, chan, hooks.ocirt_join_container, lambda: _exec_joined(ctx, hooks, chan, root_fd))


def _child(ctx: Container, hooks: Hooks, chan: Channel, enter: Any, become: Callable[[], None]) -> None:
    """A freshly forked child of create or exec. Never returns.

    ``enter`` (the hook that enters or joins the namespaces) runs as the setup
    child; when a namespace applies only to children (pid, time), it forks once
    more and exits, the grandchild going on. The runtime learns the pid, says
    "continue", and ``become`` makes the container process (it execs). Errors
    go to the runtime while it listens, else to the container's stderr.
    """
    code = 1
    try:
        ctx.role, ctx.channel = "setup", chan
        trace.set_role("setup")
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
        enter(container=ctx)
        if ctx.fork_init:
            pid = os.fork()
            if pid:
                chan.send(type="pid", pid=pid)
                code = 0
                return
        else:
            chan.send(type="pid", pid=None)  # the runtime knows it: it forked us
        ctx.role = "init"
        trace.set_role("init")
        if ctx.fork_init or ctx.local.get(HANDSHAKE, True):
            chan.expect("continue")  # the pid first: the runtime must know whom it waits for
        become()
    except BaseException as e:
        try:
            chan.send(error=error_text(e))
        except OSError:  # after "ready" nobody listens: tell the container's stderr
            os.write(2, f"ocirt: {error_text(e)}\n".encode())
    finally:
        os._exit(code)


def _init(ctx: Container, hooks: Hooks, chan: Channel, fifo_fd: int) -> None:
    spec = ctx.require_spec()
    hooks.ocirt_setup_rootfs(container=ctx)
    hooks.ocirt_create_container(container=ctx)
    if not hooks.ocirt_pivot_root(container=ctx):
        ctx.log.warning("no plugin changed the root: the container shares the host's /")
    hooks.ocirt_after_pivot(container=ctx)
    hooks.ocirt_finalize_process(container=ctx)
    process = spec.process
    executable = find_executable(process) if process else ""
    if fifo_fd < 0:
        # run: released over the channel, which then closes; later errors go to stderr.
        chan.send(type="ready")
        chan.expect("start")
        chan.close()
        ctx.channel = None
    else:
        _ready(ctx, chan)
        # Blocks until `start` opens the fifo for reading. The write end stays open
        # (close-on-exec): `start` sees EOF once the user process runs, as with runc.
        fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
        os.close(fifo_fd)
    if process is None:
        raise OcirtError("config.json has no process")
    _exec_user_process(ctx, hooks, process, executable, hooks.ocirt_start_container)


def _exec_joined(ctx: Container, hooks: Hooks, chan: Channel, root_fd: int) -> None:
    os.fchdir(root_fd)
    os.chroot(".")
    os.close(root_fd)
    os.chdir("/")
    hooks.ocirt_finalize_process(container=ctx)
    process = ctx.require_spec().process or {}
    executable = find_executable(process)
    _ready(ctx, chan)
    _exec_user_process(ctx, hooks, process, executable)


def _ready(ctx: Container, chan: Channel) -> None:
    """Tell the runtime the process is ready; from here on nobody listens on the channel."""
    chan.send(type="ready")
    chan.close()
    ctx.channel = None


def _exec_user_process(
    ctx: Container, hooks: Hooks, process: dict[str, Any], executable: str, starting: Any = None
) -> None:
    """The last steps before the user's program (``starting``: create's
    ``ocirt_start_container``), then execve. Never returns."""
    _close_extra_fds(3 + int(ctx.options.get("preserve_fds") or 0))
    # Python ignores SIGPIPE and SIGXFSZ; an ignored signal survives execve, and
    # `yes | head` in the container would then never end on EPIPE.
    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(sig, _signal.SIG_DFL)
    env = dict(e.split("=", 1) for e in process.get("env") or [])
    if starting is not None:
        starting(container=ctx)
    hooks.ocirt_before_exec(container=ctx)
    try:
        os.execve(executable, process["args"], env)
    except OSError as e:
        os.write(2, f"ocirt: exec {executable}: {(e.strerror or str(e)).lower()}\n".encode())
        os._exit(127 if e.errno == 2 else 126)


def exec_process(base: dict[str, Any] | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The process of an ``exec`` without ``--process``: the container's, with the CLI's changes."""
    process: dict[str, Any] = {k: v for k, v in (base or {}).items() if k not in ("terminal", "consoleSize")}
    process["args"] = list(overrides.get("args") or [])
    process["terminal"] = bool(overrides.get("tty"))
    env = dict(e.split("=", 1) for e in process.get("env") or [])
    for item in overrides.get("env") or []:
        if "=" not in item:
            raise OcirtError(f"exec --env {item!r}: not KEY=VALUE")
        key, value = item.split("=", 1)
        env[key] = value
    process["env"] = [f"{k}={v}" for k, v in env.items()]
    if overrides.get("cwd"):
        process["cwd"] = overrides["cwd"]
    user = dict(process.get("user") or {"uid": 0, "gid": 0})
    if overrides.get("user"):
        uid, _, gid = str(overrides["user"]).partition(":")
        try:
            user["uid"] = int(uid)
            user["gid"] = int(gid) if gid else user.get("gid", 0)
        except ValueError:
            raise OcirtError(
                f"exec --user {overrides['user']!r}: only numeric UID[:GID] is supported"
            ) from None
    if overrides.get("additional_gids"):
        extra = []
        for g in overrides["additional_gids"]:
            if not str(g).isdigit():
                raise OcirtError(f"exec --additional-gids {g!r}: not a numeric gid")
            extra.append(int(g))
        user["additionalGids"] = [*(user.get("additionalGids") or []), *extra]
    process["user"] = user
    if overrides.get("caps"):
        caps = {k: list(v) for k, v in (process.get("capabilities") or {}).items()}
        for name in overrides["caps"]:
            name = name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper()
            for key in ("bounding", "effective", "permitted"):
                if name not in caps.setdefault(key, []):
                    caps[key].append(name)
        process["capabilities"] = caps
    if overrides.get("no_new_privs"):
        process["noNewPrivileges"] = True
    if overrides.get("apparmor"):
        process["apparmorProfile"] = overrides["apparmor"]
    if overrides.get("process_label"):
        process["selinuxLabel"] = overrides["process_label"]
    return process


def find_executable(process: dict[str, Any]) -> str:
    """Resolve ``args[0]`` in the container as execvp would, with errors engines understand.

    Engines map "no such file or directory" to 127 and "permission denied" to 126.
    """
    name = process["args"][0]
    if "/" in name:
        candidates = [name]
    else:
        path = DEFAULT_PATH
        for item in process.get("env") or []:
            if item.startswith("PATH="):
                path = item[5:]
        candidates = [os.path.join(d or ".", name) for d in path.split(":")]
    denied = ""
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if (st.st_mode & 0o170000) == 0o100000 and os.access(candidate, os.X_OK):
            return candidate
        denied = candidate
    if denied:
        raise OcirtError(f'exec: "{name}": {denied}: permission denied')
    if "/" in name:
        raise OcirtError(f'exec: "{name}": stat {name}: no such file or directory')
    raise OcirtError(f'exec: "{name}": executable file not found in $PATH: no such file or directory')


def _not_dumpable() -> None:
    """First thing in the setup child: not dumpable until the exec of the user process.

    Its /proc files then belong to root and resist ptrace-mode access
    (``/proc/<pid>/exe``, ``mem``, ``environ``, ``fd``) from processes of the
    container that lack CAP_SYS_PTRACE: the host's interpreter and the runtime's
    fds stay out of their reach (the class of CVE-2019-5736). The exec
    recomputes dumpability for the user process. A plugin that needs its own
    /proc files writable from a user namespace may lift it briefly.
    """
    from ocirt.core import syscalls  # loaded by the plugins already; keeps ctypes off `state`

    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)


def _close_fds_except(keep: set[int]) -> None:
    """Close every fd not in ``keep``: the state lock, the caller's stray fds..."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _close_extra_fds(first: int) -> None:
    """Mark every fd from ``first`` up close-on-exec: nothing of the runtime leaks in."""
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(first, 1024))
    for fd in fds:
        if fd >= first:
            try:
                fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
            except OSError:
                pass


# ---------------------------------------------------------------------- helpers


def _make_fifo(path: str) -> int:
    """exec.fifo: init blocks opening it for writing until ``start`` opens it to read."""
    os.mkfifo(path, 0o622)
    os.chmod(path, 0o622)
    return os.open(path, os.O_PATH | os.O_CLOEXEC)


def write_pid_file(path: str, pid: int) -> None:
    """The decimal pid, no newline, written atomically (engines read it at once)."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _reap_if_child(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _exit_note(pid: int) -> str:
    try:
        _, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return ""
    if os.WIFSIGNALED(status):
        return f" (killed by signal {os.WTERMSIG(status)})"
    return ""


def error_text(e: BaseException) -> str:
    """One line for an exception: OcirtError as is, OSError with its path."""
    if isinstance(e, OcirtError):
        return str(e)
    if isinstance(e, OSError):
        reason = (e.strerror or str(e)).lower()
        return f"{e.filename}: {reason}" if e.filename else reason
    return f"{type(e).__name__}: {e}"
