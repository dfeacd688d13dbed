"""Call hooks in the order pluggy computed, without importing pluggy each time.

pluggy is ocirt's plugin manager: it registers plugins, checks them against the
hookspecs and orders each hook's implementations (tryfirst, trylast). Importing
it costs about 15 ms (it pulls in ``inspect`` and ``typing``), a third of what
runc needs for a whole container, and every ocirt command is a new process.
So the order pluggy computes for a plugin set is saved as a *plan*: per hook,
the implementations in call order with their argument names, and whether the
hook is ``firstresult``. A later command with the same plugin set, whose plugin
files have not changed, calls the implementations straight from the plan.

Hooks with wrapper implementations are not planned: they are called through
pluggy, which is then imported for them alone.
"""

from __future__ import annotations

import os
import sys

from ocirt import __version__
from ocirt.core import fileio, jsonio, trace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    import pluggy

    from ocirt.core.plugins import PluginRef

PLAN_DIR = os.path.join(sys.prefix, ".ocirt-plans")
_HOOKSPECS = os.path.join(os.path.dirname(__file__), "hookspecs.py")


class HookCall:
    """One hook of a plan: ``call(**kwargs)`` runs its implementations in order."""

    def __init__(
        self, name: str, firstresult: bool, impls: list[tuple[Callable[..., Any], list[str]]]
    ) -> None:
        self.name = name
        self.firstresult = firstresult
        self.impls = impls

    def __call__(self, **kwargs: Any) -> Any:
        results = []
        for func, argnames in self.impls:
            result = func(*[kwargs[a] for a in argnames])
            if result is not None:
                results.append(result)
                if self.firstresult:
                    break
        if self.firstresult:
            return results[0] if results else None
        return results


class Hooks:
    """``hooks.ocirt_validate(container=...)``: from a plan, or through pluggy."""

    def __init__(
        self,
        refs: list[PluginRef],
        trace_path: str | None,
        only: list[str] | None = None,
        skip: list[list[str]] | None = None,
    ) -> None:
        """``only``: the hooks this command will call, for commands that never fork
        (start, kill, delete): just their plugins are imported now, any other on
        first use. ``skip``: ``[hook, plugin]`` pairs a container's plugins withdrew
        from at create (``Container.withdraw``)."""
        self.refs = refs
        self.trace_path = trace_path
        self._pm: pluggy.PluginManager | None = None
        self.plan = _load_plan(refs)
        if self.plan is None:
            self.plan = build_plan(self.pm, refs)
            _save_plan(refs, self.plan)
        self._calls: dict[str, Any] = {}
        self._skip = {(hook, plugin) for hook, plugin in skip or ()}
        if trace_path:
            trace.open_file(trace_path)
        self._refs = {ref.name: ref for ref in refs}
        self._objects: dict[str, object] = {}
        # Load now, so a missing plugin fails here; and everything when the
        # command forks: hooks also run in the init after pivot_root, where
        # nothing can be imported any more.
        for name in self._refs if only is None else self._implementers(only):
            self._plugin(name)
        if any(entry.get("pluggy") for entry in self.plan["hooks"].values()):
            self.pm  # noqa: B018 - builds the manager before any fork

    @property
    def pm(self) -> pluggy.PluginManager:
        """The pluggy manager, built on first use."""
        if self._pm is None:
            from ocirt.core.plugins import manager

            self._pm = manager(self.refs)
            if self.trace_path:
                trace.install(self._pm, self.trace_path)
        return self._pm

    def implemented(self) -> list[str]:
        """The hooks at least one loaded plugin implements (and has not withdrawn from)."""
        assert self.plan is not None
        hooks = self.plan["hooks"].items()
        return sorted(
            name
            for name, entry in hooks
            if entry.get("pluggy") or any((name, i[0]) not in self._skip for i in entry.get("impls", ()))
        )

    def withdrawn(self, functions: list[Callable[..., Any]]) -> list[list[str]]:
        """``[hook, plugin]`` of each hook implementation among ``functions``."""
        assert self.plan is not None
        pairs = []
        for name, entry in self.plan["hooks"].items():
            for plugin_name, attr, _ in entry.get("impls", ()):
                if any(getattr(self._plugin(plugin_name), attr, None) is f for f in functions):
                    pairs.append([name, plugin_name])
        return pairs

    def skip(self, pairs: list[list[str]]) -> None:
        """From now on, leave out these ``[hook, plugin]`` implementations."""
        self._skip.update((hook, plugin) for hook, plugin in pairs)
        self._calls.clear()

    def _implementers(self, hooks: list[str]) -> list[str]:
        assert self.plan is not None
        names: list[str] = []
        for hook in hooks:
            entry = self.plan["hooks"].get(hook) or {}
            if entry.get("pluggy"):
                return list(self._refs)
            for plugin_name, _, _ in entry.get("impls", ()):
                if plugin_name not in names and (hook, plugin_name) not in self._skip:
                    names.append(plugin_name)
        return names

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("ocirt_"):
            raise AttributeError(name)
        call = self._calls.get(name)
        if call is None:
            call = self._calls[name] = self._make(name)
        return call

    def _make(self, name: str) -> Any:
        assert self.plan is not None
        entry = self.plan["hooks"].get(name)
        if entry is None:
            return HookCall(name, False, [])
        if entry.get("pluggy"):
            return getattr(self.pm.hook, name)
        impls = []
        for plugin_name, attr, argnames in entry["impls"]:
            if (name, plugin_name) in self._skip:
                continue
            func = getattr(self._plugin(plugin_name), attr)
            if self.trace_path:
                func = trace.timed(name, plugin_name, func)
            impls.append((func, argnames))
        return HookCall(name, bool(entry.get("firstresult")), impls)

    def _plugin(self, name: str) -> object:
        plugin = self._objects.get(name)
        if plugin is None:
            from ocirt.core.plugins import load_plugin

            plugin = self._objects[name] = load_plugin(self._refs[name])
        return plugin


def build_plan(pm: pluggy.PluginManager, refs: list[PluginRef]) -> dict[str, Any]:
    """The call order pluggy would use, per hook, and what it depends on."""
    hooks: dict[str, Any] = {}
    for name, caller in vars(pm.hook).items():
        if not name.startswith("ocirt_"):
            continue
        impls = caller.get_hookimpls()
        firstresult = bool(caller.spec and caller.spec.opts.get("firstresult"))
        if any(i.hookwrapper or i.wrapper for i in impls):
            hooks[name] = {"pluggy": True}
            continue
        ordered = []
        for impl in reversed(impls):  # pluggy calls the last-sorted first
            function = getattr(impl.function, "__wrapped__", impl.function)  # traced
            attr = next(a for a in dir(impl.plugin) if getattr(impl.plugin, a, None) == function)
            ordered.append([impl.plugin_name, attr, list(impl.argnames)])
        hooks[name] = {"firstresult": firstresult, "impls": ordered}
    files = {}
    for ref in refs:
        plugin = pm.get_plugin(ref.name)
        module_name = getattr(plugin, "__module__", None) or getattr(plugin, "__name__", "")
        module = sys.modules.get(str(module_name))
        path = getattr(module, "__file__", None)
        if path:
            files[path] = _mtime(path)
    files[_HOOKSPECS] = _mtime(_HOOKSPECS)
    return {"version": __version__, "hooks": hooks, "files": files}


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _plan_path(refs: list[PluginRef]) -> str:
    key = jsonio.dumps([[r.name, r.ref] for r in refs]).encode()
    # A stable name without hashlib/zlib imports: the plugin names, then a checksum.
    names = "+".join(sorted(r.name.replace("/", "_") for r in refs))[:120]
    return os.path.join(PLAN_DIR, f"{names}-{sum(key) % 65521:04x}.json")


#: Plans already read and checked by this process (``run`` creates, starts and
#: deletes in one process; its plugin files do not change in between).
_checked: dict[str, dict[str, Any]] = {}


def _load_plan(refs: list[PluginRef]) -> dict[str, Any] | None:
    path = _plan_path(refs)
    if path in _checked:
        return _checked[path]
    try:
        plan: dict[str, Any] = jsonio.loads(fileio.read_bytes(path))
    except (OSError, ValueError):
        return None
    if plan.get("version") != __version__ or plan.get("refs") != [[r.name, r.ref] for r in refs]:
        return None
    if any(_mtime(file) != mtime for file, mtime in plan.get("files", {}).items()):
        return None
    _checked[path] = plan
    return plan


def _save_plan(refs: list[PluginRef], plan: dict[str, Any]) -> None:
    plan["refs"] = [[r.name, r.ref] for r in refs]
    path = _plan_path(refs)
    try:
        os.makedirs(PLAN_DIR, exist_ok=True)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(jsonio.dumps(plan))
        os.rename(tmp, path)
    except OSError:
        pass  # read-only install: plan again next time
