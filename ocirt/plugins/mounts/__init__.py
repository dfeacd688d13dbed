"""The ``mounts`` plugin: the root filesystem, ``mounts``, default devices, masked paths."""
