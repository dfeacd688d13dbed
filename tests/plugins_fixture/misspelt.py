"""A plugin whose hook name is misspelt: pluggy's check_pending must refuse it."""

from ocirt import hookimpl


@hookimpl
def ocirt_valdate(container):
    pass
