"""Hook implementations of the ``mounts`` plugin (the steps live in ``rootfs``)."""

from __future__ import annotations

import os

from ocirt import hookimpl
from ocirt.core import fileio
from ocirt.core.errors import OcirtError
from ocirt.plugins.mounts import devices, paths, rootfs
from ocirt.plugins.mounts.options import PROPAGATION, MountOptions, all_options

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container


def _mounts(container: Container) -> list[dict[str, Any]]:
    return container.require_spec().section("mounts", list) or []


def _has_mount_namespace(container: Container) -> bool:
    namespaces = container.require_spec().section("linux.namespaces", list) or []
    return any(ns.get("type") == "mount" for ns in namespaces if isinstance(ns, dict))


def _mount_namespace() -> str:
    return os.readlink("/proc/self/ns/mnt")


@hookimpl
def ocirt_features(container: Container | None) -> dict[str, Any]:
    return {"mountOptions": all_options()}


@hookimpl
def ocirt_validate(container: Container) -> None:
    # The runtime's mount namespace: the init must not be in it when mounting.
    container.plugin_data["mounts"] = {"runtime_mnt_ns": _mount_namespace()}
    spec = container.require_spec()
    for i, entry in enumerate(_mounts(container)):
        field = f"mounts[{i}]"
        if not isinstance(entry, dict):
            raise spec.error(field, "must be an object")
        dest = entry.get("destination")
        if not isinstance(dest, str) or not dest:
            raise spec.error(f"{field}.destination", "missing")
        if not dest.startswith("/"):
            raise spec.error(f"{field}.destination", f"must be an absolute path, not {dest!r}")
        options = entry.get("options") or []
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise spec.error(f"{field}.options", "must be a list of strings")
        idmap = MountOptions(options).idmap
        if idmap:
            raise spec.error(f"{field}.options", f"{idmap[0]}: id-mapped mounts are not supported yet")
    propagation = spec.section("linux.rootfsPropagation", str)
    if propagation is not None and propagation not in PROPAGATION:
        raise spec.error("linux.rootfsPropagation", f"unknown propagation {propagation!r}")
    for key in ("linux.maskedPaths", "linux.readonlyPaths"):
        for i, path in enumerate(spec.section(key, list) or []):
            if not isinstance(path, str) or not path.startswith("/"):
                raise spec.error(f"{key}[{i}]", f"must be an absolute path, not {path!r}")
    for i, device in enumerate(spec.section("linux.devices", list) or []):
        devices.check_spec_device(device, f"linux.devices[{i}]", spec.error)
    if (_mounts(container) or spec.root_readonly) and not _has_mount_namespace(container):
        raise spec.error("linux.namespaces", "mounts need a new mount namespace (type 'mount')")


@hookimpl
def ocirt_setup_rootfs(container: Container) -> None:
    if not _has_mount_namespace(container):
        return
    runtime_ns = container.plugin_data.get("mounts", {}).get("runtime_mnt_ns")
    if runtime_ns is None or _mount_namespace() == runtime_ns:
        # Mounting, then pivot_root, in the runtime's namespace would rework the host's /.
        raise OcirtError(
            "linux.namespaces asks for a mount namespace, but the init is still in the runtime's: "
            "no loaded plugin created one (is the namespaces plugin disabled?)"
        )
    spec = container.require_spec()
    root = spec.rootfs
    rootfs.prepare_root(root, spec.section("linux.rootfsPropagation", str))
    os.chdir(spec.bundle)  # relative bind sources are relative to the bundle
    read_only_later: rootfs.ReadOnlyLater = []
    try:
        for i, entry in enumerate(_mounts(container)):
            # Opened afresh each time: a mount may have covered the rootfs itself, and
            # what follows goes on top of it (as runc, which goes by path, does).
            root_fd = paths.open_root(root)
            try:
                rootfs.mount_one(root_fd, i, entry, read_only_later)
            finally:
                os.close(root_fd)
        if not _dev_is_bound(container):
            _setup_dev(container, root)
        rootfs.finish_read_only(read_only_later)
    finally:
        for fd, _flags, _dest in read_only_later:
            os.close(fd)


def _setup_dev(container: Container, root: str) -> None:
    wanted = devices.wanted(container.require_spec().section("linux.devices", list) or [])
    root_fd = paths.open_root(root)
    try:
        devices.setup_dev(root_fd, wanted, bind=_in_user_namespace(container))
    except OSError as e:
        raise rootfs.mount_error("creating", "/dev", e) from None
    finally:
        os.close(root_fd)


def _dev_is_bound(container: Container) -> bool:
    """A bind on /dev shows the host's nodes: runc then creates none."""
    for entry in _mounts(container):
        dest = os.path.normpath(entry["destination"])
        if dest == "/dev" and MountOptions(entry.get("options") or [], entry.get("type")).is_bind:
            return True
    return False


def _in_user_namespace(container: Container) -> bool:
    """True when mknod is impossible: the spec asks for a user namespace, or we run in one."""
    namespaces = container.require_spec().section("linux.namespaces", list) or []
    if any(isinstance(ns, dict) and ns.get("type") == "user" for ns in namespaces):
        return True
    try:
        return fileio.read_bytes("/proc/self/uid_map").split() != [b"0", b"0", b"4294967295"]
    except OSError:
        return False


@hookimpl(trylast=True)
def ocirt_pivot_root(container: Container) -> bool | None:
    if not _has_mount_namespace(container):
        return None
    root = container.require_spec().rootfs
    if container.options.get("no_pivot"):
        rootfs.move_root(root)
    else:
        rootfs.pivot(root)
    return True


@hookimpl
def ocirt_after_pivot(container: Container) -> None:
    if not _has_mount_namespace(container):
        return
    spec = container.require_spec()
    # runc's order: a masked path below a read-only one is still masked.
    for path in spec.section("linux.readonlyPaths", list) or []:
        rootfs.readonly_path(path)
    for path in spec.section("linux.maskedPaths", list) or []:
        rootfs.mask_path(path)
    propagation = spec.section("linux.rootfsPropagation", str)
    if propagation:
        from ocirt.core import syscalls

        syscalls.mount(None, "/", None, PROPAGATION[propagation])
    if spec.root_readonly:
        rootfs.remount_root_readonly()
