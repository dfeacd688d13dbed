"""The ``process`` plugin (essential): cwd, rlimits, user and groups, umask, no_new_privs."""
