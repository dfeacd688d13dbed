"""Errors the runtime reports to its caller as one line and a non-zero exit."""

from __future__ import annotations


class OcirtError(Exception):
    """A failure to report to the user: the message is the whole story."""

    exit_code = 1


class SpecError(OcirtError):
    """config.json is missing, malformed, or asks for something invalid."""


class ContainerNotFound(OcirtError):
    """No container of that id exists under the state root."""


class NotSupported(OcirtError):
    """The command exists but no loaded plugin implements it yet."""
