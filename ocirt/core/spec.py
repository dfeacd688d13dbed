"""config.json -> a checked view of the parts the kernel itself needs.

Plugins validate their own parts (``linux.namespaces``, ``mounts``...) in
``ocirt_validate``; errors everywhere name the field, e.g.
``/b/config.json: process.cwd: must be an absolute path``.
"""

from __future__ import annotations

import os

from ocirt.core import fileio, jsonio
from ocirt.core.errors import SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SUPPORTED_MAJOR = 1


class Spec:
    """A loaded config.json. ``data`` is the raw dict; properties are validated."""

    def __init__(self, data: dict[str, Any], bundle: str) -> None:
        self.data = data
        self.bundle = bundle
        self.path = os.path.join(bundle, "config.json")

    def error(self, field: str, problem: str) -> SpecError:
        """A SpecError naming this config file and the field at fault."""
        return SpecError(f"{self.path}: {field}: {problem}")

    def section(self, field: str, kind: type = dict) -> Any:
        """The value at a dotted ``field`` (``linux.namespaces``), type-checked, or None."""
        value: Any = self.data
        for part in field.split("."):
            if not isinstance(value, dict):
                return None
            value = value.get(part)
            if value is None:
                return None
        if not isinstance(value, kind):
            raise self.error(field, f"must be {_kind_name(kind)}")
        return value

    @property
    def rootfs(self) -> str:
        """Absolute host path of the container's root filesystem."""
        path = self.data["root"]["path"]
        return os.path.normpath(path if os.path.isabs(path) else os.path.join(self.bundle, path))

    @property
    def root_readonly(self) -> bool:
        return bool(self.data["root"].get("readonly", False))

    @property
    def process(self) -> dict[str, Any] | None:
        """The process object, or None: the spec requires it only at ``start``."""
        return self.data.get("process")

    @property
    def annotations(self) -> dict[str, str]:
        return self.data.get("annotations") or {}

    @property
    def hostname(self) -> str | None:
        return self.data.get("hostname")


def _kind_name(kind: type) -> str:
    return {dict: "an object", list: "a list", str: "a string", int: "an integer", bool: "a boolean"}.get(
        kind, kind.__name__
    )


def load(bundle: str) -> Spec:
    """Read and check ``bundle/config.json``; raise SpecError naming the problem."""
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        raw = fileio.read_bytes(path)
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file or directory (is {bundle} an OCI bundle?)") from None
    except OSError as e:
        raise SpecError(f"{path}: {e.strerror}") from None
    try:
        data = jsonio.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: must hold a JSON object")
    spec = Spec(data, bundle)
    _check(spec)
    return spec


def _check(spec: Spec) -> None:
    data = spec.data
    version = data.get("ociVersion")
    if not isinstance(version, str) or not version:
        raise spec.error("ociVersion", "missing (the spec version this config was written for)")
    major = version.split(".", 1)[0]
    if not major.isdigit() or int(major) != SUPPORTED_MAJOR:
        raise spec.error("ociVersion", f"{version!r} is not supported (ocirt runs {SUPPORTED_MAJOR}.x)")

    root = spec.section("root")
    if root is None or not isinstance(root.get("path"), str) or not root["path"]:
        raise spec.error("root.path", "missing")
    if not os.path.isdir(spec.rootfs):
        raise spec.error("root.path", f"{spec.rootfs}: no such directory")
    if not isinstance(root.get("readonly", False), bool):
        raise spec.error("root.readonly", "must be a boolean")

    hostname = data.get("hostname")
    if hostname is not None and not isinstance(hostname, str):
        raise spec.error("hostname", "must be a string")

    annotations = spec.section("annotations")
    if annotations is not None:
        for key, value in annotations.items():
            if not isinstance(value, str):
                raise spec.error(f"annotations.{key}", "must be a string")

    process = spec.section("process")
    if process is not None:
        check_process(process, spec.error)


def check_process(process: dict[str, Any], error: Any, prefix: str = "process") -> None:
    """Check a process object (config.json's, or one given to ``exec``)."""
    args = process.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise error(f"{prefix}.args", "must be a non-empty list of strings")
    cwd = process.get("cwd", "/")
    if not isinstance(cwd, str) or not os.path.isabs(cwd):
        raise error(f"{prefix}.cwd", f"must be an absolute path, not {cwd!r}")
    env = process.get("env") or []
    if not isinstance(env, list):
        raise error(f"{prefix}.env", "must be a list of KEY=VALUE strings")
    for i, item in enumerate(env):
        if not isinstance(item, str) or "=" not in item:
            raise error(f"{prefix}.env[{i}]", f"{item!r} is not KEY=VALUE")
    if process.get("terminal") and not isinstance(process.get("terminal"), bool):
        raise error(f"{prefix}.terminal", "must be a boolean")
