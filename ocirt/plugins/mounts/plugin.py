"""Hook implementations of the ``mounts`` plugin (the steps live in ``rootfs``)."""

from __future__ import annotations

import os

from ocirt import hookimpl
from ocirt.core.errors import OcirtError
from ocirt.plugins.mounts import rootfs
from ocirt.plugins.mounts.options import PROPAGATION, all_options

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
    propagation = spec.section("linux.rootfsPropagation", str)
    if propagation is not None and propagation not in PROPAGATION:
        raise spec.error("linux.rootfsPropagation", f"unknown propagation {propagation!r}")
    for key in ("linux.maskedPaths", "linux.readonlyPaths"):
        for i, path in enumerate(spec.section(key, list) or []):
            if not isinstance(path, str) or not path.startswith("/"):
                raise spec.error(f"{key}[{i}]", f"must be an absolute path, not {path!r}")
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
    for i, entry in enumerate(_mounts(container)):
        rootfs.mount_one(root, i, entry)
    rootfs.create_default_devices(root)


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
    for path in spec.section("linux.maskedPaths", list) or []:
        rootfs.mask_path(path)
    for path in spec.section("linux.readonlyPaths", list) or []:
        rootfs.readonly_path(path)
    propagation = spec.section("linux.rootfsPropagation", str)
    if propagation:
        from ocirt.core import syscalls

        syscalls.mount(None, "/", None, PROPAGATION[propagation])
    if spec.root_readonly:
        rootfs.remount_root_readonly()
