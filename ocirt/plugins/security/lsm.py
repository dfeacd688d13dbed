"""AppArmor profiles and SELinux labels for the container process.

Both are requests to the LSM to switch the process's security context at its
next execve, made by writing to the init's own ``/proc/self/attr`` files, so
they apply to the user process and not to the runtime's setup:

* AppArmor: ``exec <profile>`` to ``/proc/self/attr/apparmor/exec`` (the
  per-LSM file of Linux 5.8+; ``/proc/self/attr/exec`` before it);
* SELinux: the label to ``/proc/self/attr/exec``.

On a host without the LSM, asking for a profile or label is an error at
validation, not a silent no-op: the container would run unconfined while its
engine believes otherwise. Empty strings ask for nothing (engines write them).
"""

from __future__ import annotations

import os

from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirt.core.spec import Spec

FIELDS = {"apparmorProfile": "AppArmor", "selinuxLabel": "SELinux"}


def apparmor_enabled() -> bool:
    """AppArmor is active: its module says so, or securityfs shows its directory."""
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            if f.read().strip() == "Y":
                return True
    except OSError:
        pass
    return os.path.isdir("/sys/kernel/security/apparmor")


def selinux_enabled() -> bool:
    """SELinux is active when selinuxfs is mounted (where libselinux looks first)."""
    return os.path.isdir("/sys/fs/selinux") and os.path.exists("/sys/fs/selinux/enforce")


def requested(spec: Spec) -> dict[str, str]:
    """The non-empty LSM fields of ``process``, checked against this host."""
    process = spec.process or {}
    wanted = {}
    for field, lsm in FIELDS.items():
        value = process.get(field)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or "\n" in value:
            raise spec.error(f"process.{field}", "must be a single-line string")
        enabled = apparmor_enabled() if lsm == "AppArmor" else selinux_enabled()
        if not enabled:
            raise spec.error(
                f"process.{field}",
                f"{value!r} is asked for, but {lsm} is not enabled on this host "
                "(leave the field empty to run without it)",
            )
        wanted[field] = value
    return wanted


def apply(wanted: dict[str, str]) -> None:
    """Init, after pivot_root (the container's /proc): label the coming execve."""
    profile = wanted.get("apparmorProfile")
    if profile:
        _write_attr(("apparmor/exec", "exec"), f"exec {profile}", "process.apparmorProfile")
    label = wanted.get("selinuxLabel")
    if label:
        _write_attr(("exec",), label, "process.selinuxLabel")


def _write_attr(names: tuple[str, ...], text: str, field: str) -> None:
    """Write ``text`` to the first of ``/proc/self/attr/<name>`` that exists."""
    for name in names:
        path = f"/proc/self/attr/{name}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise OcirtError(f"{field}: {path}: {_reason(e)}") from None
        try:
            os.write(fd, text.encode())
        except OSError as e:
            raise OcirtError(f"{field}: writing {text!r} to {path}: {_reason(e)}") from None
        finally:
            os.close(fd)
        return
    raise OcirtError(f"{field}: no /proc/self/attr/{names[-1]} in the container (is /proc mounted?)")


def _reason(e: OSError) -> str:
    return (e.strerror or str(e)).lower()
