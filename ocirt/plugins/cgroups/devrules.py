"""Device-cgroup rules: the defaults every container gets, and the spec's own.

The mounts plugin makes /dev/null, /dev/zero... and the terminal plugin a pty
in every container, so those must stay usable under the spec's usual
``{"allow": false, "access": "rwm"}``. runc appends the same defaults *after*
the spec's rules, which makes them impossible to deny. Here a deny-all (and
the start of the list) resets to "nothing but the defaults", and the spec's
other rules follow in order, so a spec can still deny one of the defaults.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: runc's allowed devices: mknod of anything, then the standard nodes.
DEFAULT_ALLOWED: tuple[str, ...] = (
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",  # null
    "c 1:8 rwm",  # random
    "c 1:7 rwm",  # full
    "c 5:0 rwm",  # tty
    "c 1:5 rwm",  # zero
    "c 1:9 rwm",  # urandom
    "c 5:1 rwm",  # console
    "c 136:* rwm",  # pts
    "c 5:2 rwm",  # ptmx
    "c 10:200 rwm",  # tun
)


def _number(value: int | None) -> str:
    return "*" if value is None or value < 0 else str(value)


def rule(entry: dict[str, Any]) -> tuple[str, str]:
    """(``devices.allow`` or ``devices.deny``, ``"c 1:5 rw"``) for one spec entry."""
    kind = entry.get("type") or "a"
    major = entry.get("major")
    minor = entry.get("minor")
    access = entry.get("access") or "rwm"
    text = f"{kind} {_number(major)}:{_number(minor)} {access}"
    return ("devices.allow" if entry.get("allow") else "devices.deny", text)


def _deny_all(entry: dict[str, Any]) -> bool:
    return (
        not entry.get("allow")
        and (entry.get("type") or "a") == "a"
        and entry.get("major") is None
        and entry.get("minor") is None
        and set(entry.get("access") or "rwm") >= {"r", "w", "m"}
    )


def rules(spec_devices: list[dict[str, Any]], linux_devices: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Deny everything, allow the defaults and ``linux.devices``, then the spec's list."""
    reset = [("devices.deny", "a")]
    reset += [("devices.allow", r) for r in DEFAULT_ALLOWED]
    for dev in linux_devices:
        if dev.get("type") in ("c", "b", "u"):
            kind = "c" if dev["type"] == "u" else dev["type"]
            reset.append(("devices.allow", f"{kind} {dev.get('major', 0)}:{dev.get('minor', 0)} rwm"))
    out = list(reset)
    for entry in spec_devices:
        if _deny_all(entry):
            if out != reset:
                out += reset
        else:
            out.append(rule(entry))
    return out


def _entry(text: str, allow: bool) -> dict[str, Any]:
    """A rule string (``"c 1:5 rwm"``) as a spec entry, for the v2 device program."""
    kind, numbers, access = [*text.split(), "rwm"][:3] if text != "a" else ("a", "*:*", "rwm")
    major, _, minor = numbers.partition(":")
    entry: dict[str, Any] = {"allow": allow, "type": kind, "access": access}
    if major != "*":
        entry["major"] = int(major)
    if minor not in ("*", ""):
        entry["minor"] = int(minor)
    return entry


def effective(
    spec_devices: list[dict[str, Any]], linux_devices: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The same rules as :func:`rules`, as spec entries (last match wins, as in v1 order)."""
    return [_entry(text, name == "devices.allow") for name, text in rules(spec_devices, linux_devices)]
