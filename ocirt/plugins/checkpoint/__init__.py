"""The ``checkpoint`` plugin: ``ocirt checkpoint`` and ``ocirt restore`` through CRIU.

Read in this order:

* ``plugin.py``: the hooks (tiny at import: every container loads it);
* ``criu.py``: which criu binary, whether it works, running it, its errors;
* ``args.py``: the criu options that make a container's dump complete (root,
  external mounts and namespaces, cgroups, stdio), as pure functions;
* ``notify.py``: the action script criu calls at each step, and the runtime's
  end of it (prestart hooks, the restored init's pid);
* ``dump.py`` and ``restore.py``: the two commands.
"""
