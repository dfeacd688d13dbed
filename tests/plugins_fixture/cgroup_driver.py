"""A third-party cgroup driver, registered by name (tests/test_cgroups_v1.py).

It is the v1 driver under another name, counting its creates in a file the
``org.ocirt.test.driver-log`` annotation names: enough to see the registry
pick it and the plugin drive it.
"""

from ocirt import hookimpl
from ocirt.plugins.cgroups.v1 import CgroupV1


class CountingDriver(CgroupV1):
    name = "counting"

    def create(self, resources):
        spec = self.container.spec
        log = spec.annotations.get("org.ocirt.test.driver-log") if spec else None
        if log:
            with open(log, "a") as f:
                f.write(f"create {self.container.id}\n")
        super().create(resources)


@hookimpl
def ocirt_cgroup_drivers():
    return {"counting": CountingDriver}
