"""The lifecycle kernel: forks, synchronises, keeps state and calls plugin hooks.

It knows no namespace, cgroup or mount by name; plugins do all isolation.
"""
