"""ocirt: an OCI container runtime built as a plugin framework.

Plugin authors mark hook implementations with :func:`hookimpl`.
"""

# No ``from __future__ import annotations`` here or in ocirt.codecache: the launcher
# imports both before the code cache serves ``__future__`` to every other module.

__version__ = "0.1.0"

#: Version of the hook API. Raised when a hookspec changes incompatibly;
#: plugins may check it (``ocirt.PLUGIN_API_VERSION >= 1``).
PLUGIN_API_VERSION = 1

#: The version of the OCI runtime specification ocirt implements.
OCI_VERSION = "1.2.0"

PROJECT_NAME = "ocirt"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])


def hookimpl(
    function: "F | None" = None,
    *,
    tryfirst: bool = False,
    trylast: bool = False,
    wrapper: bool = False,
    hookwrapper: bool = False,
    optionalhook: bool = False,
    specname: str | None = None,
) -> "Any":
    """Mark a hook implementation, as ``pluggy.HookimplMarker("ocirt")`` does.

    It sets the very attribute pluggy reads (``ocirt_impl``), so pluggy
    registers these functions unchanged; it exists so that loading a plugin
    module does not import pluggy, which the engine's hot path avoids
    (see ``ocirt.core.hookplan``). Plugins may use pluggy's marker instead.
    """

    def mark(func: "F") -> "F":
        func.ocirt_impl = {  # type: ignore[attr-defined]
            "wrapper": wrapper,
            "hookwrapper": hookwrapper,
            "optionalhook": optionalhook,
            "tryfirst": tryfirst,
            "trylast": trylast,
            "specname": specname,
        }
        return func

    return mark(function) if function is not None else mark
