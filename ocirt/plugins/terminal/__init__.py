"""The ``terminal`` plugin: ``process.terminal`` with a pty made inside the container."""
