"""The ``cgroups`` plugin: places the container in a cgroup and applies ``linux.resources``.

Backends (drivers) are chosen by what the host mounts: ``v2`` on a unified
hierarchy, ``v1`` on a v1 or hybrid one. Third parties add drivers by name
through the ``ocirt_cgroup_drivers`` hook (a systemd driver, say).
"""
