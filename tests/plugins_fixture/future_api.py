"""A plugin written for a plugin API this ocirt does not provide."""

from ocirt import hookimpl

OCIRT_API_VERSION = 999


@hookimpl
def ocirt_validate(container):
    pass
