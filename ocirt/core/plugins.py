"""Which plugins a call loads, and the pluggy manager that calls them.

The set comes from, in order: ``OCIRT_PLUGINS=a,b`` (an explicit set; no
entry-point scan), else the config file's ``plugins`` list, else every built-in
plus every installed ``ocirt`` entry point. Then the config file's ``disable``
list, then ``--plugin NAME`` / ``-p NAME`` adds and ``--no-plugin NAME`` /
``-p no:NAME`` removes. Essential plugins are always present.

A container records the set it was created with (name and import reference) so
later commands on it load exactly that set, without a scan.
"""

from __future__ import annotations

import os
import sys

from ocirt import PLUGIN_API_VERSION, PROJECT_NAME
from ocirt.core import fileio, jsonio
from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    import pluggy

    from ocirt.core.hookplan import Hooks

ENTRY_POINT_GROUP = PROJECT_NAME

#: Built-in plugins: name -> import reference. Order is irrelevant (hooks order
#: themselves with tryfirst/trylast).
BUILTIN: dict[str, str] = {
    "namespaces": "ocirt.plugins.namespaces.plugin",
    "mounts": "ocirt.plugins.mounts.plugin",
    "process": "ocirt.plugins.process.plugin",
    "seccomp": "ocirt.plugins.seccomp.plugin",
    "security": "ocirt.plugins.security.plugin",
    "terminal": "ocirt.plugins.terminal.plugin",
    "cgroups": "ocirt.plugins.cgroups.plugin",
    "hooks": "ocirt.plugins.hooks.plugin",
    "network": "ocirt.plugins.network.plugin",
    "checkpoint": "ocirt.plugins.checkpoint.plugin",
}

#: The kernel's own: without them no container can start, so they cannot be disabled.
ESSENTIAL = frozenset({"process"})

DEFAULT_CONFIG = "/etc/ocirt/config.toml"


class PluginRef:
    """A plugin to load: its name, import reference (``pkg.mod[:attr]``) and origin."""

    def __init__(self, name: str, ref: str, origin: str) -> None:
        self.name = name
        self.ref = ref
        self.origin = origin

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "module": self.ref, "origin": self.origin}


def _entry_points() -> dict[str, PluginRef]:
    """Installed ``ocirt`` entry points, from a cache while site-packages is unchanged.

    importlib.metadata costs 20-40 ms to import and scan; the cache is keyed on
    the mtimes of the directories on sys.path, which change when a
    distribution is installed or removed.
    """
    key = _path_key()
    cache = os.path.join(sys.prefix, ".ocirt-entry-points.json")
    try:
        cached = jsonio.loads(fileio.read_bytes(cache))
        if cached.get("key") == key:
            return {name: PluginRef(name, ref, origin) for name, ref, origin in cached["plugins"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    from importlib.metadata import entry_points

    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        origin = f"entry point ({dist.name} {dist.version})" if dist else "entry point"
        found[ep.name] = PluginRef(ep.name, ep.value, origin)
    try:
        tmp = f"{cache}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(
                jsonio.dumps({"key": key, "plugins": [[r.name, r.ref, r.origin] for r in found.values()]})
            )
        os.rename(tmp, cache)
    except OSError:
        pass  # a read-only install scans every time
    return found


def _path_key() -> list[list[object]]:
    """The package directories on sys.path with their mtimes (not the script's dir)."""
    key: list[list[object]] = []
    for entry in sys.path:
        if "-packages" not in entry:
            continue
        try:
            key.append([entry, os.stat(entry).st_mtime_ns])
        except OSError:
            key.append([entry, None])
    return key


def read_config(environ: dict[str, str] | os._Environ[str]) -> dict[str, object]:
    """The config file (``OCIRT_CONFIG`` or /etc/ocirt/config.toml), or {} if absent."""
    path = environ.get("OCIRT_CONFIG") or DEFAULT_CONFIG
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise OcirtError(f"{path}: {e.strerror}") from None
    import tomllib

    try:
        return tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise OcirtError(f"{path}: {e}") from None


def _names(value: object, where: str) -> list[str]:
    if isinstance(value, str):
        return [n.strip() for n in value.split(",") if n.strip()]
    if isinstance(value, list) and all(isinstance(n, str) for n in value):
        return list(value)
    raise OcirtError(f"{where}: must be a list of plugin names")


class Resolver:
    """Turns plugin names into references; scans entry points only when needed."""

    def __init__(self) -> None:
        self._eps: dict[str, PluginRef] | None = None

    def entry_points(self) -> dict[str, PluginRef]:
        if self._eps is None:
            self._eps = _entry_points()
        return self._eps

    def resolve(self, name: str, origin: str) -> PluginRef:
        if name in BUILTIN:
            return PluginRef(name, BUILTIN[name], "built-in")
        if name in self.entry_points():
            return self.entry_points()[name]
        module = name.split(":", 1)[0]
        if "." in module or ":" in name or _importable(module):
            return PluginRef(name, name, origin)
        raise OcirtError(
            f"unknown plugin {name!r}: not built in, not an installed '{ENTRY_POINT_GROUP}' "
            "entry point, not an importable module"
        )


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def select(
    add: Iterable[str] = (),
    drop: Iterable[str] = (),
    environ: dict[str, str] | os._Environ[str] | None = None,
) -> list[PluginRef]:
    """The plugin set for a new container (see the module docstring for the rules)."""
    environ = os.environ if environ is None else environ
    resolver = Resolver()
    config = read_config(environ)
    chosen: dict[str, PluginRef] = {}
    explicit = environ.get("OCIRT_PLUGINS")
    if explicit is not None:
        for name in _names(explicit, "OCIRT_PLUGINS"):
            chosen[name] = resolver.resolve(name, "OCIRT_PLUGINS")
    elif "plugins" in config:
        for name in _names(config["plugins"], "config plugins"):
            chosen[name] = resolver.resolve(name, "config file")
    else:
        for name, ref in BUILTIN.items():
            chosen[name] = PluginRef(name, ref, "built-in")
        chosen.update(resolver.entry_points())
    for name in _names(config.get("disable", []), "config disable"):
        if name in chosen or name in ESSENTIAL:  # a config may name plugins not installed here
            _disable(chosen, name)
    for name in add:
        chosen[name] = resolver.resolve(name, "command line")
    for name in drop:
        _disable(chosen, name)
    for name in sorted(ESSENTIAL):
        chosen.setdefault(name, PluginRef(name, BUILTIN[name], "built-in"))
    return list(chosen.values())


def _disable(chosen: dict[str, PluginRef], name: str) -> None:
    if name in ESSENTIAL:
        raise OcirtError(f"plugin {name!r} is essential to the runtime and cannot be disabled")
    if name not in chosen and name not in BUILTIN:
        raise OcirtError(f"cannot disable plugin {name!r}: it is not loaded")
    chosen.pop(name, None)


def import_ref(ref: str) -> object:
    """Import ``pkg.module`` or ``pkg.module:attr.attr``."""
    module_name, _, attr = ref.partition(":")
    try:
        # __import__ + sys.modules: importlib.import_module would cost an import of importlib.
        __import__(module_name)
        obj: object = sys.modules[module_name]
    except ImportError as e:
        raise OcirtError(f"cannot import plugin {ref!r}: {e}") from None
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


def load_plugin(ref: PluginRef) -> object:
    """Import a plugin and check it was written for this plugin API."""
    plugin = import_ref(ref.ref)
    needed = getattr(plugin, "OCIRT_API_VERSION", 1)
    if needed > PLUGIN_API_VERSION:
        raise OcirtError(
            f"plugin {ref.name!r} needs plugin API {needed}; this ocirt provides {PLUGIN_API_VERSION}"
        )
    _ORIGINS[ref.name] = ref
    return plugin


def as_refs(items: Iterable[PluginRef | dict[str, str]]) -> list[PluginRef]:
    """PluginRefs from refs or from the dicts a container's state records."""
    return [
        item
        if isinstance(item, PluginRef)
        else PluginRef(item["name"], item["module"], item.get("origin", ""))
        for item in items
    ]


def manager(refs: Iterable[PluginRef | dict[str, str]], trace: str | None = None) -> pluggy.PluginManager:
    """A pluggy manager with the hookspecs and the given plugins, checked."""
    import pluggy

    from ocirt.core import hookspecs

    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for ref in as_refs(refs):
        pm.register(load_plugin(ref), name=ref.name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        raise OcirtError(f"plugin error: {e}") from None
    if trace:
        from ocirt.core.trace import install

        install(pm, trace)
    return pm


def hooks(
    refs: Iterable[PluginRef | dict[str, str]],
    trace: str | None = None,
    only: list[str] | None = None,
    skip: list[list[str]] | None = None,
) -> Hooks:
    """The hooks of a plugin set, called from a saved plan when one is fresh (see ``Hooks``)."""
    from ocirt.core.hookplan import Hooks

    return Hooks(as_refs(refs), trace, only, skip)


_ORIGINS: dict[str, PluginRef] = {}


def origin(name: str) -> PluginRef | None:
    """Where a loaded plugin came from (for ``ocirt plugins``)."""
    return _ORIGINS.get(name)
