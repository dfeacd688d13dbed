"""The ``seccomp`` plugin: ``linux.seccomp`` as a libseccomp filter, loaded just before execve."""
