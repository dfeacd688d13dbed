"""The ``security`` plugin: capabilities and LSM labels (AppArmor, SELinux)."""
