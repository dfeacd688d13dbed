"""``ocirt checkpoint``: dump a running container's processes into an image directory.

What runc does, through criu's command line: check criu, name what lies
outside the container (``args.dump``), keep the init's stdio names for the
restore, run ``criu dump`` (or ``pre-dump``) answering its notifications. The
caller (``ocirt.cli.commands.checkpoint``) deletes the container afterwards
unless it was left running, as ``runc checkpoint`` destroys it.
"""

from __future__ import annotations

import json
import os

from ocirt.core.errors import NotSupported, OcirtError
from ocirt.core.state import RUNNING
from ocirt.plugins.checkpoint import args, criu
from ocirt.plugins.checkpoint.notify import Notifier

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container


def image_dirs(options: dict[str, Any]) -> tuple[str, str]:
    """``--image-path`` (default ``./checkpoint``, as runc) and ``--work-path`` (default: the former)."""
    images = os.path.abspath(options.get("image_path") or "checkpoint")
    work = os.path.abspath(options.get("work_path") or images)
    return images, work


def check_options(options: dict[str, Any], command: str) -> None:
    """Refuse option values criu would misread, naming the option."""
    mode = options.get("manage_cgroups_mode")
    if mode and mode not in args.CGROUP_MODES:
        raise OcirtError(f"{command} --manage-cgroups-mode {mode!r}: use {', '.join(args.CGROUP_MODES)}")
    empty = options.get("empty_ns")
    if empty and empty not in args.EMPTY_NS:
        raise OcirtError(f"{command} --empty-ns {empty!r}: only the network namespace can be left empty")


def checkpoint(container: Container, options: dict[str, Any]) -> int:
    spec = container.require_spec()
    pid = container.state.pid
    if container.state.status() != RUNNING or container.state.data.get("paused"):
        status = "paused" if container.state.data.get("paused") else container.state.status()
        raise OcirtError(f"checkpoint: container {container.id!r} is {status}, not running")
    if (spec.process or {}).get("terminal"):
        raise NotSupported(
            f"checkpoint: container {container.id!r} has a terminal; ocirt checkpoints only "
            "containers whose stdio are pipes"
        )
    check_options(options, "checkpoint")
    if options.get("lazy_pages") and not options.get("page_server"):
        raise OcirtError("checkpoint --lazy-pages: needs --page-server ADDRESS:PORT to serve the pages from")
    if options.get("page_server") and ":" not in str(options["page_server"]):
        raise OcirtError(f"checkpoint --page-server {options['page_server']!r}: not ADDRESS:PORT")
    binary = criu.locate(options.get("criu"))
    criu.version(binary)
    if options.get("pre_dump") or options.get("parent_path"):
        # pre-dump and dumps on top of one need the kernel's soft-dirty bits.
        reason = criu.check(binary, "mem_dirty_track")
        if reason:
            raise NotSupported(
                "checkpoint --pre-dump/--parent-path: this kernel cannot track changed memory "
                f"(no soft-dirty bits; criu check --feature mem_dirty_track: {reason})"
            )
    images, work = image_dirs(options)
    os.makedirs(images, 0o700, exist_ok=True)
    os.makedirs(work, 0o700, exist_ok=True)
    criu_args = args.dump(spec, pid, options, images, work)
    stdio = args.stdio_names(pid)
    foreign = args.foreign_stdio(pid)  # named external by args.dump: the restore must supply them
    masked = args.masked_files(spec, f"/proc/{pid}/root")
    with open(f"/proc/{pid}/mountinfo") as f:
        cgroup_mounts = args.cgroup_mounts(f.read())
    with open(os.path.join(images, args.DESCRIPTORS), "w") as f:
        json.dump(stdio, f)
    with open(os.path.join(images, args.SIDE_FILE), "w") as f:
        json.dump(
            {
                "id": container.id,
                "descriptors": stdio,
                "external_stdio": foreign,
                "masked": masked,
                "cgroup_mounts": cgroup_mounts,
            },
            f,
        )
    status_fd = options.get("status_fd")
    notifier = Notifier(work, {})  # network-lock/unlock: nothing of ours to hold
    try:
        criu.run(
            binary,
            "pre-dump" if options.get("pre_dump") else "dump",
            [*criu_args, "--action-script", notifier.script],
            os.path.join(work, "dump.log"),
            pass_fds=[status_fd] if status_fd is not None else [],
            wait=notifier.serve,
        )
    finally:
        notifier.close()
    return 0
