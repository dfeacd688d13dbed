"""CNI mode: run standard CNI plugins from a network configuration list.

As the CNI spec (1.0) has a runtime do it: find the conflist whose ``name`` is
the one asked for (``.conflist``, or a single-plugin ``.conf``/``.json``) in
``org.ocirt.network.cni-dir`` or ``/etc/cni/net.d``; for each plugin, run the
binary of its ``type`` found on ``CNI_PATH`` with ``CNI_COMMAND``,
``CNI_CONTAINERID``, ``CNI_NETNS`` (the pinned namespace, see ``netns``),
``CNI_IFNAME`` and ``CNI_PATH`` in its environment and the plugin's config on
stdin, completed with the list's ``cniVersion`` and ``name`` and, after the
first plugin of an ``ADD``, the previous plugin's result as ``prevResult``.

``ADD`` runs at create, plugin by plugin; ``DEL`` at delete (and on the
rollback of a failed ``ADD``) in reverse order with the cached result as
``prevResult``; ``CHECK`` through ``ocirt_command(command="network-check")``.
The whole list and the result are kept in the container's state, so ``DEL``
works after the conflist file changed or went.
"""

from __future__ import annotations

import os
import subprocess

from ocirt.core import jsonio
from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TIMEOUT = 60
DEFAULT_VERSION = "1.0.0"


def find(name: str, dirs: list[str]) -> dict[str, Any]:
    """The network configuration list called ``name``; fails naming where it looked."""
    for directory in dirs:
        try:
            files = sorted(os.listdir(directory))
        except OSError:
            continue
        for file in files:
            if not file.endswith((".conflist", ".conf", ".json")):
                continue
            path = os.path.join(directory, file)
            try:
                with open(path) as f:
                    conf = jsonio.loads(f.read())
            except (OSError, ValueError):
                continue  # as libcni: an unreadable file is not the one asked for
            if not isinstance(conf, dict) or conf.get("name") != name:
                continue
            if not file.endswith(".conflist"):  # one plugin: make it a list of one
                conf = {"cniVersion": conf.get("cniVersion"), "name": name, "plugins": [conf]}
            plugins = conf.get("plugins")
            if (
                not isinstance(plugins, list)
                or not plugins
                or not all(isinstance(p, dict) and p.get("type") for p in plugins)
            ):
                raise OcirtError(f"{path}: plugins must be a non-empty list of objects with a type")
            conf["file"] = path
            return conf
    raise OcirtError(f"no CNI network {name!r}: no conflist with that name in {', '.join(dirs)}")


def binary(kind: str, cni_path: str) -> str:
    for directory in cni_path.split(":"):
        candidate = os.path.join(directory, kind)
        if directory and os.access(candidate, os.X_OK):
            return candidate
    raise OcirtError(f"CNI plugin {kind!r}: not found in CNI_PATH {cni_path}")


def _invoke(
    command: str, conflist: dict[str, Any], plugin: dict[str, Any], run: dict[str, Any], prev: Any
) -> dict[str, Any] | None:
    """One plugin, one command; its result (ADD) or None."""
    config = {**plugin, "cniVersion": conflist.get("cniVersion") or DEFAULT_VERSION, "name": conflist["name"]}
    if prev is not None:
        config["prevResult"] = prev
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": run["container_id"],
        "CNI_NETNS": run["netns"],
        "CNI_IFNAME": run["ifname"],
        "CNI_PATH": run["cni_path"],
    }
    try:
        done = subprocess.run(
            [binary(plugin["type"], run["cni_path"])],
            input=jsonio.dumps(config),
            capture_output=True,
            text=True,
            env=env,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise OcirtError(f"CNI {plugin['type']} {command}: no answer in {TIMEOUT}s") from None
    if done.returncode != 0:
        raise OcirtError(f"CNI {plugin['type']} {command}: {_message(done.stdout, done.stderr)}")
    if command != "ADD" or not done.stdout.strip():
        return None
    try:
        result = jsonio.loads(done.stdout)
    except ValueError:
        raise OcirtError(f"CNI {plugin['type']} ADD: its result is not JSON: {done.stdout[:200]!r}") from None
    return result if isinstance(result, dict) else None


def _message(stdout: str, stderr: str) -> str:
    """The plugin's error (a JSON object on stdout, by the spec) as one line."""
    try:
        error = jsonio.loads(stdout)
        text = error.get("msg") or ""
        if error.get("details"):
            text += f": {error['details']}"
        return " ".join(text.split()) or "failed"
    except (ValueError, AttributeError):
        return " ".join((stderr or stdout).split())[:300] or "failed"


def add(run: dict[str, Any]) -> None:
    """ADD through the list; ``run["result"]`` holds the last result (saved in the state)."""
    prev = None
    for plugin in run["conflist"]["plugins"]:
        result = _invoke("ADD", run["conflist"], plugin, run, prev)
        prev = result if result is not None else prev
        run["result"] = prev
    run["added"] = True


def delete(run: dict[str, Any]) -> None:
    """DEL through the list in reverse; errors of one plugin do not stop the others."""
    errors = []
    for plugin in reversed(run["conflist"]["plugins"]):
        try:
            _invoke("DEL", run["conflist"], plugin, run, run.get("result"))
        except OcirtError as e:
            errors.append(str(e))
    if errors:
        raise OcirtError("; ".join(errors))


def check(run: dict[str, Any]) -> None:
    """CHECK through the list (CNI 0.4.0 and later); raises on the first failure."""
    for plugin in run["conflist"]["plugins"]:
        _invoke("CHECK", run["conflist"], plugin, run, run.get("result"))
