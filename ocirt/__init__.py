"""ocirt: an OCI container runtime built as a plugin framework.

Plugin authors import :data:`hookimpl` from here. It is resolved lazily so that
commands which load no plugin (``ocirt state``) never import pluggy.
"""

from __future__ import annotations

__version__ = "0.1.0"

#: Version of the hook API. Raised when a hookspec changes incompatibly;
#: plugins may check it (``ocirt.PLUGIN_API_VERSION >= 1``).
PLUGIN_API_VERSION = 1

#: The version of the OCI runtime specification ocirt implements.
OCI_VERSION = "1.2.0"

PROJECT_NAME = "ocirt"

TYPE_CHECKING = False
if TYPE_CHECKING:
    import pluggy

    hookimpl: pluggy.HookimplMarker


def __getattr__(name: str) -> object:
    if name == "hookimpl":
        import pluggy

        marker = pluggy.HookimplMarker(PROJECT_NAME)
        globals()["hookimpl"] = marker
        return marker
    raise AttributeError(name)
