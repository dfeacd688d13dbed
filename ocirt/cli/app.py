"""The ocirt command line, as a typer app: runc's commands and flags, plus plugins.

``ocirt.cli.main`` routes the engine's hot commands through ``fastpath`` and
everything else (help included) through this app; both call ``commands``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ocirt.cli import commands
from ocirt.cli.globals import Globals

app = typer.Typer(
    name="ocirt",
    help="An OCI container runtime built as a plugin framework (runc-compatible).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

Id = Annotated[str, typer.Argument(help="The container id.", show_default=False)]
Bundle = Annotated[str, typer.Option("--bundle", "-b", help="Path to the bundle (config.json + rootfs).")]
ConsoleSocket = Annotated[
    str | None, typer.Option("--console-socket", help="Unix socket receiving the pty master.")
]
PidFile = Annotated[str | None, typer.Option("--pid-file", help="Write the init's pid here.")]
NoPivot = Annotated[bool, typer.Option("--no-pivot", help="Use MS_MOVE + chroot instead of pivot_root.")]
NoNewKeyring = Annotated[bool, typer.Option("--no-new-keyring", help="Keep the caller's session keyring.")]
PreserveFds = Annotated[int, typer.Option("--preserve-fds", help="Pass fds 3..3+N-1 to the container.")]

_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def _version(value: bool) -> None:
    if value:
        commands.version()
        raise typer.Exit(0)


@app.callback()
def _globals(
    ctx: typer.Context,
    root: Annotated[
        str | None,
        typer.Option(
            "--root",
            help="State directory [default: /run/ocirt; without root $XDG_RUNTIME_DIR/ocirt].",
            show_default=False,
        ),
    ] = None,
    log: Annotated[str | None, typer.Option("--log", help="Log file (errors also go to stderr).")] = None,
    log_format: Annotated[str, typer.Option("--log-format", help="text or json.")] = "text",
    debug: Annotated[bool, typer.Option("--debug", help="Log debug lines.")] = False,
    systemd_cgroup: Annotated[
        bool, typer.Option("--systemd-cgroup", help="cgroupsPath is slice:prefix:name.")
    ] = False,
    rootless: Annotated[str, typer.Option("--rootless", help="true, false or auto.")] = "auto",
    criu: Annotated[str, typer.Option("--criu", help="The criu binary.")] = "criu",
    plugin: Annotated[
        list[str] | None,
        typer.Option("--plugin", "-p", help="Load a plugin (name or module); -p no:NAME disables one."),
    ] = None,
    no_plugin: Annotated[list[str] | None, typer.Option("--no-plugin", help="Disable a plugin.")] = None,
    trace: Annotated[
        str | None, typer.Option("--trace", help="Append one JSON line per hook call (also OCIRT_TRACE).")
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", "-v", is_eager=True, callback=_version, help="Print the version.")
    ] = False,
) -> None:
    ctx.obj = Globals(
        root=root, log=log, log_format=log_format, debug=debug, systemd_cgroup=systemd_cgroup,
        rootless=rootless, criu=criu, plugin=plugin, no_plugin=no_plugin, trace=trace,
    )  # fmt: skip


def _exit(status: int) -> None:
    raise typer.Exit(status)


@app.command()
def create(
    ctx: typer.Context,
    container_id: Id,
    bundle: Bundle = ".",
    console_socket: ConsoleSocket = None,
    pid_file: PidFile = None,
    no_pivot: NoPivot = False,
    no_new_keyring: NoNewKeyring = False,
    preserve_fds: PreserveFds = 0,
) -> None:
    """Create a container; its init waits until `start`."""
    _exit(commands.create(ctx.obj, container_id, bundle, console_socket, pid_file, no_pivot,
                          no_new_keyring, preserve_fds))  # fmt: skip


@app.command()
def run(
    ctx: typer.Context,
    container_id: Id,
    bundle: Bundle = ".",
    console_socket: ConsoleSocket = None,
    pid_file: PidFile = None,
    no_pivot: NoPivot = False,
    no_new_keyring: NoNewKeyring = False,
    preserve_fds: PreserveFds = 0,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once started.")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="Do not delete the container after it exits.")] = False,
    no_subreaper: Annotated[
        bool, typer.Option("--no-subreaper", help="Accepted for runc compatibility; has no effect.")
    ] = False,
    network: Annotated[
        str | None,
        typer.Option("--network", help="bridge, cni:NAME or none (the org.ocirt.network annotation)."),
    ] = None,
) -> None:
    """Create and start a container; in the foreground, exit with its status."""
    _exit(commands.run(ctx.obj, container_id, bundle, console_socket, pid_file, no_pivot,
                       no_new_keyring, preserve_fds, detach, keep, no_subreaper, network))  # fmt: skip


@app.command()
def start(ctx: typer.Context, container_id: Id) -> None:
    """Start a created container: its init execs the user process."""
    _exit(commands.start(ctx.obj, container_id))


@app.command()
def state(ctx: typer.Context, container_id: Id) -> None:
    """Print the container's state as JSON."""
    _exit(commands.state(ctx.obj, container_id))


@app.command()
def kill(
    ctx: typer.Context,
    container_id: Id,
    signal: Annotated[str, typer.Argument(help="Number or name (TERM, SIGKILL...).")] = "SIGTERM",
    all_processes: Annotated[bool, typer.Option("--all", "-a", help="Signal every process.")] = False,
) -> None:
    """Send a signal to the container's init (or, with --all, to all its processes)."""
    _exit(commands.kill(ctx.obj, container_id, signal, all_processes))


@app.command()
def delete(
    ctx: typer.Context,
    container_id: Id,
    force: Annotated[bool, typer.Option("--force", "-f", help="Kill the container if it runs.")] = False,
) -> None:
    """Delete a stopped container and everything made for it."""
    _exit(commands.delete(ctx.obj, container_id, force))


@app.command("list")
def list_(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print ids only.")] = False,
) -> None:
    """List the containers under --root."""
    _exit(commands.list_containers(ctx.obj, fmt, quiet))


@app.command()
def spec(
    ctx: typer.Context,
    bundle: Bundle = ".",
    rootless: Annotated[bool, typer.Option("--rootless", help="A config for an unprivileged user.")] = False,
) -> None:
    """Write a default config.json into the bundle."""
    _exit(commands.spec(ctx.obj, bundle, rootless))


@app.command()
def features(ctx: typer.Context) -> None:
    """Print what this runtime supports, assembled from the loaded plugins."""
    _exit(commands.features(ctx.obj))


@app.command()
def plugins(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Show the loaded plugins, where they come from and the hooks they implement."""
    _exit(commands.plugins_info(ctx.obj, fmt))


@app.command()
def pause(ctx: typer.Context, container_id: Id) -> None:
    """Freeze every process of the container."""
    _exit(commands.pause(ctx.obj, container_id))


@app.command()
def resume(ctx: typer.Context, container_id: Id) -> None:
    """Thaw a paused container."""
    _exit(commands.resume(ctx.obj, container_id))


@app.command(context_settings=_PASSTHROUGH)
def ps(
    ctx: typer.Context,
    container_id: Id,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json (host pids).")] = "table",
) -> None:
    """List the container's processes; extra arguments go to ps (default -ef)."""
    _exit(commands.ps(ctx.obj, container_id, fmt, list(ctx.args) or None))


def _opt(flag: str, text: str) -> Any:
    return typer.Option(flag, help=text, show_default=False)


@app.command()
def update(
    ctx: typer.Context,
    container_id: Id,
    resources: Annotated[str | None, _opt("--resources", "linux.resources JSON file, - for stdin.")] = None,
    memory: Annotated[str | None, _opt("--memory", "Memory limit (e.g. 100M, -1 unlimited).")] = None,
    memory_reservation: Annotated[str | None, _opt("--memory-reservation", "Memory soft limit.")] = None,
    memory_swap: Annotated[str | None, _opt("--memory-swap", "Memory plus swap limit.")] = None,
    kernel_memory: Annotated[str | None, _opt("--kernel-memory", "Kernel memory limit.")] = None,
    cpu_shares: Annotated[str | None, _opt("--cpu-shares", "CPU shares (relative weight).")] = None,
    cpu_quota: Annotated[str | None, _opt("--cpu-quota", "CFS quota in microseconds.")] = None,
    cpu_period: Annotated[str | None, _opt("--cpu-period", "CFS period in microseconds.")] = None,
    cpu_burst: Annotated[str | None, _opt("--cpu-burst", "CFS burst in microseconds.")] = None,
    cpu_rt_runtime: Annotated[str | None, _opt("--cpu-rt-runtime", "Realtime runtime (us).")] = None,
    cpu_rt_period: Annotated[str | None, _opt("--cpu-rt-period", "Realtime period (us).")] = None,
    cpuset_cpus: Annotated[str | None, _opt("--cpuset-cpus", "CPUs allowed (0-3, 0,1).")] = None,
    cpuset_mems: Annotated[str | None, _opt("--cpuset-mems", "Memory nodes allowed.")] = None,
    pids_limit: Annotated[str | None, _opt("--pids-limit", "Maximum number of pids (-1: none).")] = None,
    blkio_weight: Annotated[str | None, _opt("--blkio-weight", "Block IO weight (10-1000).")] = None,
) -> None:
    """Change a running container's resource limits (0 leaves a value alone)."""
    _exit(
        commands.update(
            ctx.obj, container_id, resources, memory=memory, memory_reservation=memory_reservation,
            memory_swap=memory_swap, kernel_memory=kernel_memory, cpu_shares=cpu_shares,
            cpu_quota=cpu_quota, cpu_period=cpu_period, cpu_burst=cpu_burst, cpu_rt_runtime=cpu_rt_runtime,
            cpu_rt_period=cpu_rt_period, cpuset_cpus=cpuset_cpus, cpuset_mems=cpuset_mems,
            pids_limit=pids_limit, blkio_weight=blkio_weight,
        )
    )  # fmt: skip


@app.command()
def events(
    ctx: typer.Context,
    container_id: Id,
    stats: Annotated[bool, typer.Option("--stats", help="Print the stats once and exit.")] = False,
    interval: Annotated[str, typer.Option("--interval", help="Time between stats (Go duration).")] = "5s",
) -> None:
    """Print the container's events (stats, oom) as JSON lines until it stops."""
    _exit(commands.events(ctx.obj, container_id, stats, interval))


@app.command("exec", context_settings={"allow_interspersed_args": False})
def exec_(
    ctx: typer.Context,
    container_id: Id,
    command: Annotated[
        list[str] | None, typer.Argument(help="The command and its arguments.", show_default=False)
    ] = None,
    process: Annotated[str | None, _opt("--process", "A process.json (as config.json's process).")] = None,
    tty: Annotated[bool, typer.Option("--tty", "-t", help="Allocate a terminal.")] = False,
    console_socket: ConsoleSocket = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once the process runs.")] = False,
    pid_file: Annotated[str | None, _opt("--pid-file", "Write the process's pid here.")] = None,
    cwd: Annotated[str | None, _opt("--cwd", "Working directory in the container.")] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="Set KEY=VALUE.", show_default=False)
    ] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="UID[:GID].", show_default=False)] = None,
    additional_gids: Annotated[
        list[str] | None, typer.Option("--additional-gids", "-g", help="An extra gid.", show_default=False)
    ] = None,
    cap: Annotated[
        list[str] | None, typer.Option("--cap", "-c", help="Add a capability.", show_default=False)
    ] = None,
    no_new_privs: Annotated[bool, typer.Option("--no-new-privs", help="Set no_new_privs.")] = False,
    apparmor: Annotated[str | None, _opt("--apparmor", "AppArmor profile.")] = None,
    process_label: Annotated[str | None, _opt("--process-label", "SELinux label.")] = None,
    preserve_fds: PreserveFds = 0,
    ignore_paused: Annotated[bool, typer.Option("--ignore-paused", help="Exec even if paused.")] = False,
) -> None:
    """Run a process in a running container; options go before the id."""
    _exit(commands.exec_(ctx.obj, container_id, command, process, tty, console_socket, detach, pid_file,
                         cwd, env, user, additional_gids, cap, no_new_privs, apparmor, process_label,
                         preserve_fds, ignore_paused))  # fmt: skip


ImagePath = Annotated[
    str | None, _opt("--image-path", "Directory of the criu images [default: ./checkpoint].")
]
WorkPath = Annotated[str | None, _opt("--work-path", "Directory for criu's logs [default: the image path].")]
TcpEstablished = Annotated[bool, typer.Option("--tcp-established", help="Allow open TCP connections.")]
ExtUnixSk = Annotated[bool, typer.Option("--ext-unix-sk", help="Allow external unix sockets.")]
ShellJob = Annotated[bool, typer.Option("--shell-job", help="Allow shell jobs.")]
FileLocks = Annotated[bool, typer.Option("--file-locks", help="Handle file locks, for safety.")]
CgroupsMode = Annotated[
    str | None, _opt("--manage-cgroups-mode", "cgroups mode: soft (default), full, strict or ignore.")
]
EmptyNs = Annotated[str | None, _opt("--empty-ns", "Create a namespace, but don't restore its properties.")]
AutoDedup = Annotated[bool, typer.Option("--auto-dedup", help="Enable auto deduplication of memory images.")]
LazyPages = Annotated[bool, typer.Option("--lazy-pages", help="Restore memory pages lazily (userfaultfd).")]

ParentPath = Annotated[str | None, _opt("--parent-path", "Earlier images, relative to --image-path.")]
LeaveRunning = Annotated[bool, typer.Option("--leave-running", help="Keep the container running.")]
StatusFd = Annotated[int | None, _opt("--status-fd", "criu writes \\0 here once lazy pages are served.")]


@app.command()
def checkpoint(
    ctx: typer.Context,
    container_id: Id,
    image_path: ImagePath = None,
    work_path: WorkPath = None,
    parent_path: Annotated[
        str | None, _opt("--parent-path", "Earlier images, relative to --image-path.")
    ] = None,
    leave_running: Annotated[
        bool, typer.Option("--leave-running", help="Keep the container running.")
    ] = False,
    tcp_established: TcpEstablished = False,
    ext_unix_sk: ExtUnixSk = False,
    shell_job: ShellJob = False,
    lazy_pages: LazyPages = False,
    status_fd: Annotated[
        int | None, _opt("--status-fd", "criu writes \\0 here once lazy pages are served.")
    ] = None,
    page_server: Annotated[str | None, _opt("--page-server", "ADDRESS:PORT of the page server.")] = None,
    file_locks: FileLocks = False,
    pre_dump: Annotated[bool, typer.Option("--pre-dump", help="Dump memory only, leave running.")] = False,
    manage_cgroups_mode: CgroupsMode = None,
    empty_ns: EmptyNs = None,
    auto_dedup: AutoDedup = False,
) -> None:
    """Checkpoint a running container with CRIU (it is deleted unless --leave-running)."""
    _exit(commands.checkpoint(
        ctx.obj, container_id, image_path=image_path, work_path=work_path, parent_path=parent_path,
        leave_running=leave_running, tcp_established=tcp_established, ext_unix_sk=ext_unix_sk,
        shell_job=shell_job, lazy_pages=lazy_pages, status_fd=status_fd, page_server=page_server,
        file_locks=file_locks, pre_dump=pre_dump, manage_cgroups_mode=manage_cgroups_mode,
        empty_ns=empty_ns, auto_dedup=auto_dedup,
    ))  # fmt: skip


@app.command()
def restore(
    ctx: typer.Context,
    container_id: Id,
    image_path: ImagePath = None,
    work_path: WorkPath = None,
    tcp_established: TcpEstablished = False,
    ext_unix_sk: ExtUnixSk = False,
    shell_job: ShellJob = False,
    file_locks: FileLocks = False,
    manage_cgroups_mode: CgroupsMode = None,
    bundle: Bundle = ".",
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once restored.")] = False,
    pid_file: PidFile = None,
    no_subreaper: Annotated[
        bool, typer.Option("--no-subreaper", help="In the foreground, do not become a subreaper.")
    ] = False,
    no_pivot: NoPivot = False,
    empty_ns: EmptyNs = None,
    auto_dedup: AutoDedup = False,
    lazy_pages: LazyPages = False,
    console_socket: ConsoleSocket = None,
) -> None:
    """Restore a container from a checkpoint; in the foreground, exit with its status."""
    _exit(commands.restore(
        ctx.obj, container_id, bundle, image_path=image_path, work_path=work_path,
        tcp_established=tcp_established, ext_unix_sk=ext_unix_sk, shell_job=shell_job,
        file_locks=file_locks, manage_cgroups_mode=manage_cgroups_mode, detach=detach,
        pid_file=pid_file, no_subreaper=no_subreaper, no_pivot=no_pivot, empty_ns=empty_ns,
        auto_dedup=auto_dedup, lazy_pages=lazy_pages, console_socket=console_socket,
    ))  # fmt: skip
