"""Capabilities and LSM labels: what the container's process may do.

The capability transition brackets the process plugin's setuid, ordered by
hook markers rather than registration:

* ``ocirt_finalize_process`` (tryfirst): the LSM label for the coming exec,
  then the bounding set is dropped and ``PR_SET_KEEPCAPS`` set, both while
  the init is still root with every capability;
* the process plugin's ``ocirt_finalize_process``: groups, gid, uid,
  no_new_privs;
* ``apply_capabilities`` (``ocirt_finalize_process``, trylast): effective,
  permitted, inheritable and ambient sets.

A plugin that needs the runtime's privileges in the init (a seccomp filter
loaded without noNewPrivileges needs CAP_SYS_ADMIN) must run before the
trylast step. Everything is checked in ``ocirt_validate``, in the runtime, so
a bad name fails before anything is created; the masks travel to the init in
``container.local``.

Disabling this plugin leaves the container with the runtime's capabilities.
"""

from __future__ import annotations

from ocirt import hookimpl
from ocirt.plugins.security import caps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container

CAPS = "security.caps"
LSM = "security.lsm"


@hookimpl
def ocirt_features(container: Container | None) -> dict[str, Any]:
    from ocirt.plugins.security import lsm

    return {
        "linux": {
            "capabilities": list(caps.NAMES),
            "apparmor": {"enabled": lsm.apparmor_enabled()},
            "selinux": {"enabled": lsm.selinux_enabled()},
        }
    }


@hookimpl
def ocirt_validate(container: Container) -> None:
    spec = container.require_spec()
    process = spec.process
    if process is None:
        return
    sets = container.local[CAPS] = caps.masks(spec)
    if sets["ambient_skipped"]:
        skipped = ", ".join(caps.names(sets["ambient_skipped"]))
        container.log.debug(
            f"process.capabilities.ambient: not raising {skipped}: "
            "an ambient capability must also be permitted and inheritable"
        )
    if process.get("apparmorProfile") or process.get("selinuxLabel"):
        # Imported here, in the runtime: the init applies the label after pivot_root.
        from ocirt.plugins.security import lsm

        container.local[LSM] = lsm.requested(spec)


@hookimpl(tryfirst=True)
def ocirt_finalize_process(container: Container) -> None:
    """Before the setuid: the LSM label, the bounding set, and keep permitted across the setuid."""
    if container.local.get(LSM):
        from ocirt.plugins.security import lsm  # loaded by ocirt_validate

        lsm.apply(container.local[LSM])
    sets = container.local.get(CAPS)
    if sets is not None:
        caps.drop_bounding(sets)


@hookimpl(specname="ocirt_finalize_process", trylast=True)
def apply_capabilities(container: Container) -> None:
    """After the setuid: the effective, permitted, inheritable and ambient sets."""
    sets = container.local.get(CAPS)
    if sets is not None:
        caps.apply_sets(sets)
