"""The criu options that make a dump or restore complete for a container.

Pure functions of the spec, the CLI options and a few facts read from /proc,
so they can be read (and unit-tested) without running criu. runc's choices
are the model (``libcontainer/container_linux.go``):

* ``--root``: the container's root filesystem, where criu finds the files the
  processes have open and where it rebuilds the mount namespace.
* Bind mounts come from outside the container: criu cannot dump them, so each
  is named on dump (``--external mnt[DEST]:DEST``) and given its host source on
  restore (``--external mnt[DEST]:SRC``), which may differ for a new bundle.
  Masked files (``/dev/null`` bound over them) are treated the same way, and
  so are the hierarchies of a cgroup v1 ``cgroup`` mount (each a bind of the
  container's own cgroup directory): on restore their source is the new
  container's cgroup in the same hierarchy.
* A namespace the container joined (``path``) is not the container's to dump:
  ``--external net[INODE]:KEY`` on dump, and on restore the namespace opened
  from the restore spec's path is passed in with ``--inherit-fd fd[N]:KEY``.
* stdio: the other end of the container's pipes belongs to whoever started it
  (an engine's shim). Their names are kept in ``descriptors.json`` at dump; on
  restore the caller's own stdio are passed in their place (``--inherit-fd``).
  A stdio that is a file on a mount the container cannot see (conmon's stdin is
  the host's ``/dev/null``) cannot be dumped by path: criu fails with "Can't
  lookup mount". runc never meets it, its init re-opens ``/dev/null`` in the
  container at create (``reOpenDevNull``); ocirt's init keeps the caller's fd,
  so the dump names it external (``--external file[MNT_ID:INODE]``) and the
  restore passes the caller's fd of the same number in its place, as for pipes.
"""

from __future__ import annotations

import os
import stat

from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.spec import Spec

CGROUP_MODES = ("soft", "full", "strict", "ignore")
#: runc's ``--empty-ns`` takes the namespace's name; criu knows only the network one.
EMPTY_NS = {"network": "net", "net": "net"}
#: Namespace types (as config.json names them) criu can treat as external, and their criu key.
EXTERNAL_NS = {"network": "net", "pid": "pid"}
#: The annotation naming a criu configuration file ("" for none), as runc reads it.
CONFIG_ANNOTATION = "org.criu.config"
DEFAULT_CONFIG = "/etc/criu/ocirt.conf"
#: runc's name for the init's stdio at dump time (kept for tools that read it).
DESCRIPTORS = "descriptors.json"
#: What ocirt itself needs at restore: stdio names and the masked files named external.
SIDE_FILE = "ocirt-checkpoint.json"


def is_bind(mount: dict[str, Any]) -> bool:
    options = mount.get("options") or []
    return mount.get("type") == "bind" or "bind" in options or "rbind" in options


def bind_mounts(spec: Spec) -> list[tuple[str, str]]:
    """``(destination, host source)`` of every bind mount of the spec, in order."""
    found = []
    for mount in spec.section("mounts", list) or []:
        if not isinstance(mount, dict) or not is_bind(mount):
            continue
        source = str(mount.get("source") or "")
        if source and not os.path.isabs(source):
            source = os.path.join(spec.bundle, source)
        found.append((os.path.normpath(str(mount["destination"])), source))
    return found


def masked_files(spec: Spec, root: str) -> list[str]:
    """The masked paths that are files under ``root`` (``/dev/null`` is bound over those)."""
    found = []
    for path in spec.section("linux.maskedPaths", list) or []:
        try:
            if not os.path.isdir(os.path.join(root, str(path).lstrip("/"))) and os.path.lexists(
                os.path.join(root, str(path).lstrip("/"))
            ):
                found.append(str(path))
        except OSError:
            continue
    return found


def joined_namespaces(spec: Spec) -> list[tuple[str, str]]:
    """``(criu key, path)`` of the namespaces the spec joins by path that criu can leave external."""
    found = []
    for ns in spec.section("linux.namespaces", list) or []:
        if isinstance(ns, dict) and ns.get("path") and ns.get("type") in EXTERNAL_NS:
            found.append((EXTERNAL_NS[ns["type"]], str(ns["path"])))
    return found


def external_key(kind: str) -> str:
    """The name a joined namespace goes by in the images (``extNetNs``, as runc names it)."""
    return f"ext{kind.capitalize()}Ns"


def config_file(spec: Spec) -> list[str]:
    """``--config FILE`` from the ``org.criu.config`` annotation, else ocirt's default file if present."""
    annotations = spec.annotations
    if CONFIG_ANNOTATION in annotations:
        value = annotations[CONFIG_ANNOTATION]
        return ["--config", value] if value else []
    return ["--config", DEFAULT_CONFIG] if os.path.exists(DEFAULT_CONFIG) else []


def common(spec: Spec, options: dict[str, Any]) -> list[str]:
    """Options with the same meaning on dump and restore."""
    args: list[str] = []
    for key, flag in (
        ("tcp_established", "--tcp-established"),
        ("ext_unix_sk", "--ext-unix-sk"),
        ("shell_job", "--shell-job"),
        ("file_locks", "--file-locks"),
        ("auto_dedup", "--auto-dedup"),
        ("lazy_pages", "--lazy-pages"),
    ):
        if options.get(key):
            args.append(flag)
    args.append(
        f"--manage-cgroups={options.get('manage_cgroups_mode') or 'soft'}"
    )  # optional argument: = only
    if options.get("empty_ns"):
        args += ["--empty-ns", EMPTY_NS[options["empty_ns"]]]
    return args + config_file(spec)


def dump(spec: Spec, pid: int, options: dict[str, Any], images: str, work: str) -> list[str]:
    """``criu dump`` (or ``pre-dump``) options for the container whose init is ``pid``."""
    root = f"/proc/{pid}/root"
    args = ["--tree", str(pid), "--images-dir", images, "--work-dir", work, "--root", spec.rootfs]
    args += common(spec, options)
    if options.get("leave_running") or options.get("pre_dump"):
        args.append("--leave-running")
    if options.get("parent_path"):
        args += ["--prev-images-dir", options["parent_path"], "--track-mem"]
    elif options.get("pre_dump"):
        args.append("--track-mem")
    if options.get("page_server"):
        address, _, port = str(options["page_server"]).rpartition(":")
        args += ["--address", address, "--port", port]
        if not options.get("lazy_pages"):
            args.append("--page-server")
    if options.get("status_fd") is not None:
        args += ["--status-fd", str(options["status_fd"])]
    for destination, _ in bind_mounts(spec):
        args += ["--external", f"mnt[{destination}]:{destination}"]
    for path in masked_files(spec, root):
        args += ["--external", f"mnt[{path}]:{path}"]
    with open(f"/proc/{pid}/mountinfo") as f:
        for point, _, _ in cgroup_mounts(f.read()):
            args += ["--external", f"mnt[{point}]:{point}"]
    for kind, path in joined_namespaces(spec):
        args += ["--external", f"{kind}[{os.stat(path).st_ino}]:{external_key(kind)}"]
    for key in dict.fromkeys(key for _, key in foreign_stdio(pid)):
        args += ["--external", key]
    return args


def restore(
    spec: Spec,
    options: dict[str, Any],
    images: str,
    work: str,
    root: str,
    masked: list[str],
    cgroups: list[tuple[str, str]],
    inherited: dict[str, int],
) -> list[str]:
    """``criu restore`` options.

    ``masked``: the masked files the dump named (read from the images' side
    file: under the bundle's rootfs, /proc has nothing to tell them by);
    ``cgroups``: the cgroup mounts' new sources (``cgroup_sources``);
    ``inherited`` maps a resource name to the fd criu gets it on.
    """
    args = ["--images-dir", images, "--work-dir", work, "--root", root, "--restore-detached"]
    args += common(spec, options)
    for destination, source in bind_mounts(spec):
        args += ["--external", f"mnt[{destination}]:{source}"]
    for path in masked:
        args += ["--external", f"mnt[{path}]:/dev/null"]
    for point, source in cgroups:
        args += ["--external", f"mnt[{point}]:{source}"]
    for name, fd in inherited.items():
        args += ["--inherit-fd", f"fd[{fd}]:{name}"]
    return args


def cgroup_mounts(mountinfo: str) -> list[tuple[str, str, list[str]]]:
    """``(mount point, fs type, super options)`` of each cgroup filesystem in a mountinfo text."""
    found = []
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) > 4 and len(rest) > 2 and rest[0] in ("cgroup", "cgroup2"):
            found.append((fields[4], rest[0], rest[2].split(",")))
    return found


def cgroup_sources(
    recorded: list[list[Any]], host_mountinfo: str, placement: dict[str, str]
) -> list[tuple[str, str]]:
    """``(container mount point, host directory)`` for the cgroup mounts a dump named.

    ``placement`` is /proc/<pid>/cgroup of a process in the new container's cgroup
    (controllers -> path): each recorded hierarchy is found on the host by its
    fs type and controllers, and the new cgroup's directory in it is the source.
    """
    names = {name for key in placement for name in key.split(",") if name}
    by_controllers = {frozenset(filter(None, key.split(","))): path for key, path in placement.items()}
    host: dict[tuple[str, frozenset[str]], str] = {}
    for point, fstype, opts in cgroup_mounts(host_mountinfo):
        host.setdefault((fstype, frozenset(names.intersection(opts))), point)
    found = []
    for point, fstype, opts in recorded:
        controllers = frozenset(names.intersection(opts))
        top, path = host.get((fstype, controllers)), by_controllers.get(controllers)
        if top is None or path is None:
            raise OcirtError(
                f"restore: no cgroup hierarchy here matches the checkpoint's {point} ({','.join(opts)})"
            )
        found.append((point, os.path.join(top, path.lstrip("/"))))
    return found


def parse_cgroup_file(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup as ``{controllers: path}`` (``""`` for the cgroup2 line)."""
    placement = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        placement[controllers] = path
    return placement


def stdio_names(pid: int) -> list[str]:
    """What the init's fds 0-2 are (``pipe:[123]``, a path...), for ``descriptors.json``."""
    names = []
    for fd in range(3):
        try:
            names.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            names.append("")
    return names


#: criu dumps character devices of this major (``/dev/null``, ``/dev/zero``...) as regular files.
MEM_MAJOR = 1


def foreign_stdio(pid: int) -> list[tuple[int, str]]:
    """``(fd, criu key)`` of the init's stdio that are files on a mount outside its mount namespace.

    criu dumps a file by its path on a mount of the dumped tree; a mount it
    cannot find makes the dump fail. Such a file is the caller's (conmon hands
    the host's ``/dev/null`` as stdin), so like a pipe it is left out of the
    images under criu's key for external files, ``file[MNT_ID:INODE]`` (hex),
    and the restore supplies one in its place (``--inherit-fd``). Pipes,
    sockets and terminals are not files to criu: they are not listed.
    """
    with open(f"/proc/{pid}/mountinfo") as f:
        visible = {line.split(maxsplit=1)[0] for line in f if line.strip()}
    found = []
    for fd in range(3):
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        is_file = stat.S_ISREG(st.st_mode) or (stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == MEM_MAJOR)
        mnt_id = info.get("mnt_id", "").strip()
        if is_file and mnt_id.isdigit() and mnt_id not in visible:
            found.append((fd, f"file[{int(mnt_id):x}:{st.st_ino:x}]"))
    return found
