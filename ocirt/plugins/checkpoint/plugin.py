"""Checkpoint and restore containers with CRIU (``ocirt checkpoint``, ``ocirt restore``).

Every container loads this module, so it imports nothing at module level
beyond the hook marker: the work lives in ``dump``, ``restore`` and ``criu``,
imported only when one of the two commands runs. It implements no creation
hook, so ``create``, ``start``, ``kill`` and ``delete`` never call it.
"""

from __future__ import annotations

from ocirt import hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container


@hookimpl
def ocirt_features(container: Container | None) -> dict[str, Any]:
    """Whether checkpoint/restore can work here: a criu that passes ``criu check``."""
    from ocirt.core.errors import OcirtError
    from ocirt.plugins.checkpoint import criu

    given = container.options.get("criu") if container is not None else None
    try:
        binary = criu.locate(given)
        found = f"criu {criu.version(binary)} at {binary}"
        broken = criu.check(binary)
        verdict = f"supported ({found})" if broken is None else f"unsupported: {found}: criu check: {broken}"
    except OcirtError as e:
        verdict = f"unsupported: {e}"
    return {"annotations": {"org.ocirt.checkpoint": verdict}}


@hookimpl
def ocirt_command(container: Container, command: str, options: dict[str, Any]) -> int | None:
    if command != "checkpoint":
        return None
    from ocirt.plugins.checkpoint import dump

    return dump.checkpoint(container, options)


@hookimpl
def ocirt_restore(container: Container) -> int | None:
    from ocirt.plugins.checkpoint import restore

    return restore.restore(container)
