"""``python -m ocirt``: the same entry point as the ``ocirt`` script."""

from ocirt.cli import run

run()
