"""The cgroup v1 driver: one directory per mounted hierarchy (a hybrid host too).

Every v1 hierarchy mounted here gets the container's cgroup, so that its
processes can be counted, frozen and killed whatever the spec limits. A
controller the spec uses must be mounted; one it does not use is left alone.
Limits are written with clear errors: the file and the value the kernel
refused, since "invalid argument" alone says nothing.
"""

from __future__ import annotations

import errno
import os
import time

from ocirt.core import fileio
from ocirt.core.errors import OcirtError
from ocirt.plugins.cgroups import devrules, paths
from ocirt.plugins.cgroups.driver import CgroupDriver

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container

#: The v1 controllers a container's cgroup is made in (when mounted).
CONTROLLERS = (
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
    "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc",
)  # fmt: skip

#: Spec section (``linux.resources.<key>``) -> the controller it needs.
SECTION_CONTROLLER = {
    "memory": "memory",
    "pids": "pids",
    "blockIO": "blkio",
    "hugepageLimits": "hugetlb",
    "network": "net_cls",
}

FREEZE_TIMEOUT = 10.0
SIGKILL = 9


def _set(d: dict[str, Any] | None, key: str) -> Any:
    """A value to write: None, or 0 (docker's "unset"), means leave it alone."""
    value = (d or {}).get(key)
    return None if value in (None, 0, "") else value


class CgroupV1(CgroupDriver):
    name = "v1"

    def __init__(self, container: Container) -> None:
        super().__init__(container)
        #: controller -> directory of the container's cgroup in that hierarchy.
        self.dirs: dict[str, str] = {}
        #: directories create() made, deepest last (destroy removes them in reverse).
        self.created: list[str] = []

    @classmethod
    def available(cls) -> bool:
        return any(c in CONTROLLERS for c in paths.v1_mounts())

    # -- what is kept between commands ------------------------------------
    def record(self) -> dict[str, Any]:
        return {"driver": self.name, "dirs": self.dirs, "created": self.created}

    def restore(self, data: dict[str, Any]) -> None:
        self.dirs = dict(data.get("dirs") or {})
        self.created = list(data.get("created") or [])

    def locate(self) -> None:
        """Work out the directory in each hierarchy (not made yet)."""
        mounts = paths.v1_mounts()
        own = paths.own_cgroups()
        try:
            wanted = paths.requested(self.container)
            skip = self._rt_hierarchy(mounts)
            for controller in CONTROLLERS:
                if controller in mounts and mounts[controller][0] != skip:
                    mount_point, root = mounts[controller]
                    self.dirs[controller] = paths.resolve(wanted, mount_point, root, own.get(controller, "/"))
        except ValueError as e:
            raise OcirtError(f"linux.cgroupsPath: {e}") from None

    def _rt_hierarchy(self, mounts: dict[str, tuple[str, str]]) -> str | None:
        """The cpu hierarchy's mount point when the container must stay out of it.

        A new v1 cpu cgroup has no real-time budget (``cpu.rt_runtime_us`` 0), so a
        SCHED_FIFO/SCHED_RR ``process.scheduler`` would fail there; unless the spec
        gives ``realtimeRuntime``, the container keeps the caller's cpu cgroup.
        """
        spec = self.container.spec
        if spec is None or "cpu" not in mounts:
            return None
        policy = ((spec.process or {}).get("scheduler") or {}).get("policy")
        cpu = (spec.section("linux.resources") or {}).get("cpu") or {}
        if policy in ("SCHED_FIFO", "SCHED_RR") and not cpu.get("realtimeRuntime"):
            return mounts["cpu"][0]
        return None

    # -- create / delete --------------------------------------------------
    def validate(self, resources: dict[str, Any]) -> None:
        mounts = paths.v1_mounts()
        for section, controller in SECTION_CONTROLLER.items():
            if resources.get(section) and controller not in mounts:
                raise OcirtError(
                    f"linux.resources.{section}: the {controller} cgroup controller is not mounted here"
                )
        cpu = resources.get("cpu") or {}
        if (cpu.get("cpus") or cpu.get("mems")) and "cpuset" not in mounts:
            raise OcirtError(
                "linux.resources.cpu.cpus: the cpuset cgroup controller is not mounted on this host"
            )
        cpu_keys = ("shares", "quota", "period", "realtimeRuntime", "realtimePeriod")
        if any(cpu.get(k) for k in cpu_keys) and "cpu" not in mounts:
            raise OcirtError("linux.resources.cpu: the cpu cgroup controller is not mounted on this host")
        network = resources.get("network") or {}
        if network.get("priorities") and "net_prio" not in mounts:
            raise OcirtError(
                "linux.resources.network.priorities: the net_prio cgroup controller is not mounted"
            )
        if resources.get("unified"):
            raise OcirtError("linux.resources.unified: needs cgroup v2; this host uses cgroup v1")

    def create(self, resources: dict[str, Any]) -> None:
        if not self.dirs:
            self.locate()
        for controller, directory in self.dirs.items():
            self._mkdirs(controller, directory)
        self._write_resources(resources, devices=True)

    def _mkdirs(self, controller: str, directory: str) -> None:
        missing = []
        d = directory
        while not os.path.isdir(d):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            try:
                os.mkdir(d, 0o755)
            except FileExistsError:
                continue
            self.created.append(d)
            if controller == "cpuset":
                # A new cpuset is empty: no task could join it before cpus and mems are set.
                parent = os.path.dirname(d)
                for name in ("cpuset.cpus", "cpuset.mems"):
                    self._write(d, name, _read(parent, name).strip())

    #: Moving another process through ``cgroup.procs`` takes the kernel's global
    #: threadgroup lock, whose first writer waits for an RCU grace period (about
    #: 14 ms here, a third of a container start). A single-threaded process moving
    #: itself through ``tasks`` ("0") skips that lock; the setup child does so.
    joins_itself = True

    def join(self, pid: int) -> None:
        for directory in self.dirs.values():
            self._write(directory, "cgroup.procs", str(pid))

    def join_self(self) -> None:
        for directory in self.dirs.values():
            self._write(directory, "tasks", "0")

    def destroy(self) -> None:
        """rmdir what create made, deepest first; the container's own must go.

        Parents shared with other containers (``/ocirt-test``) may still be busy.
        """
        leaves = set(self.dirs.values())
        for directory in reversed(self.created):
            deadline = time.monotonic() + (2.0 if directory in leaves else 0)
            while True:
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if directory not in leaves:
                        break
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise OcirtError(f"cannot remove cgroup {directory}: {e.strerror}") from None
                    time.sleep(0.02)
        self.created = []

    # -- limits -----------------------------------------------------------
    def update(self, resources: dict[str, Any]) -> None:
        self.validate(resources)
        self._write_resources(resources, devices=False)

    def _write(self, directory: str, name: str, value: str) -> None:
        path = os.path.join(directory, name)
        try:
            fileio.write_bytes(path, value.encode())
        except OSError as e:
            reason = (e.strerror or str(e)).lower()
            raise OcirtError(f"cgroup: cannot write {value!r} to {path}: {reason}") from None

    def _optional(self, controller: str, name: str, value: object, field: str) -> None:
        """Write a file that some kernels lack: an error only because it was asked for."""
        directory = self.dirs.get(controller)
        if directory is None:
            raise OcirtError(f"linux.resources.{field}: the {controller} cgroup controller is not mounted")
        if not os.path.exists(os.path.join(directory, name)):
            raise OcirtError(f"linux.resources.{field}: not supported by this kernel ({name} is missing)")
        self._write(directory, name, str(value))

    def _write_resources(self, r: dict[str, Any], devices: bool) -> None:
        self._memory(r.get("memory"))
        self._cpu(r.get("cpu"))
        pids = _set(r.get("pids"), "limit")
        if pids is not None:
            self._optional("pids", "pids.max", "max" if pids < 0 else pids, "pids.limit")
        self._blkio(r.get("blockIO"))
        for entry in r.get("hugepageLimits") or []:
            self._optional(
                "hugetlb", f"hugetlb.{entry['pageSize']}.limit_in_bytes", entry["limit"], "hugepageLimits"
            )
        network = r.get("network") or {}
        if network.get("classID") is not None:
            self._optional("net_cls", "net_cls.classid", network["classID"], "network.classID")
        for prio in network.get("priorities") or []:
            self._optional("net_prio", "net_prio.ifpriomap", f"{prio['name']} {prio['priority']}", "network")
        if devices and "devices" in self.dirs:
            spec = self.container.spec
            linux_devices = (spec.section("linux.devices", list) if spec else None) or []
            for name, text in devrules.rules(r.get("devices") or [], linux_devices):
                self._write(self.dirs["devices"], name, text)

    def _memory(self, m: dict[str, Any] | None) -> None:
        if not m:
            return
        limit, swap = _set(m, "limit"), _set(m, "swap")
        if limit is not None and swap is not None:
            # memsw must stay >= limit at every step: raise the one that makes room first.
            current = _read_int(self.dirs["memory"], "memory.memsw.limit_in_bytes")
            if swap == -1 or (current is not None and swap > current):
                self._optional("memory", "memory.memsw.limit_in_bytes", swap, "memory.swap")
                self._optional("memory", "memory.limit_in_bytes", limit, "memory.limit")
            else:
                self._optional("memory", "memory.limit_in_bytes", limit, "memory.limit")
                self._optional("memory", "memory.memsw.limit_in_bytes", swap, "memory.swap")
        elif limit is not None:
            self._optional("memory", "memory.limit_in_bytes", limit, "memory.limit")
        elif swap is not None:
            self._optional("memory", "memory.memsw.limit_in_bytes", swap, "memory.swap")
        for key, name in (
            ("reservation", "memory.soft_limit_in_bytes"),
            ("kernel", "memory.kmem.limit_in_bytes"),
            ("kernelTCP", "memory.kmem.tcp.limit_in_bytes"),
        ):
            if _set(m, key) is not None:
                self._optional("memory", name, m[key], f"memory.{key}")
        if m.get("swappiness") is not None and 0 <= m["swappiness"] <= 100:
            self._optional("memory", "memory.swappiness", m["swappiness"], "memory.swappiness")
        if m.get("disableOOMKiller"):
            self._optional("memory", "memory.oom_control", 1, "memory.disableOOMKiller")
        if m.get("useHierarchy") is not None:
            self._optional(
                "memory", "memory.use_hierarchy", int(bool(m["useHierarchy"])), "memory.useHierarchy"
            )

    def _cpu(self, c: dict[str, Any] | None) -> None:
        if not c:
            return
        for key, name in (
            ("shares", "cpu.shares"),
            ("period", "cpu.cfs_period_us"),  # before the quota: the kernel checks quota against it
            ("quota", "cpu.cfs_quota_us"),
            ("burst", "cpu.cfs_burst_us"),
            ("realtimePeriod", "cpu.rt_period_us"),
            ("realtimeRuntime", "cpu.rt_runtime_us"),
        ):
            if _set(c, key) is not None:
                self._optional("cpu", name, c[key], f"cpu.{key}")
        if c.get("idle") is not None:
            self._optional("cpu", "cpu.idle", c["idle"], "cpu.idle")
        for key, name in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
            if _set(c, key) is not None:
                self._optional("cpuset", name, c[key], f"cpu.{key}")

    def _blkio(self, b: dict[str, Any] | None) -> None:
        if not b:
            return
        for key, name in (("weight", "blkio.weight"), ("leafWeight", "blkio.leaf_weight")):
            if _set(b, key) is not None:
                self._optional("blkio", name, b[key], f"blockIO.{key}")
        for entry in b.get("weightDevice") or []:
            device = f"{entry['major']}:{entry['minor']}"
            if entry.get("weight") is not None:
                self._optional(
                    "blkio", "blkio.weight_device", f"{device} {entry['weight']}", "blockIO.weightDevice"
                )
            if entry.get("leafWeight") is not None:
                self._optional(
                    "blkio",
                    "blkio.leaf_weight_device",
                    f"{device} {entry['leafWeight']}",
                    "blockIO.weightDevice",
                )
        for key, name in (
            ("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
            ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
            ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
            ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device"),
        ):
            for entry in b.get(key) or []:
                self._optional(
                    "blkio", name, f"{entry['major']}:{entry['minor']} {entry['rate']}", f"blockIO.{key}"
                )

    # -- live container ---------------------------------------------------
    def freeze(self) -> None:
        self._freezer("FROZEN")

    def thaw(self) -> None:
        self._freezer("THAWED")

    def _freezer(self, target: str) -> None:
        directory = self.dirs.get("freezer")
        if directory is None:
            raise OcirtError("the freezer cgroup controller is not mounted on this host")
        deadline = time.monotonic() + FREEZE_TIMEOUT
        while True:
            self._write(directory, "freezer.state", target)
            if _read(directory, "freezer.state").strip() == target:
                return
            if time.monotonic() > deadline:
                raise OcirtError(f"cgroup {directory}: freezer.state did not become {target}")
            time.sleep(0.01)

    def freeze_file(self) -> tuple[str, str] | None:
        if not self.dirs:
            self.locate()  # asked at validate: where create will make the cgroup
        directory = self.dirs.get("freezer")
        return (os.path.join(directory, "freezer.state"), "THAWED") if directory else None

    def pids(self) -> list[int]:
        for controller in ("pids", "freezer", "memory", *self.dirs):
            if controller in self.dirs:
                try:
                    return sorted(int(p) for p in _read(self.dirs[controller], "cgroup.procs").split())
                except FileNotFoundError:
                    return []
        return []

    def kill_all(self, signal: int) -> None:
        """Freeze, signal, thaw: nothing forks between the listing and the signal.

        A paused container stays paused, unless the signal is SIGKILL, which a
        frozen v1 task only acts on once thawed.
        """
        freezer = "freezer" in self.dirs and os.path.isdir(self.dirs["freezer"])
        was_frozen = freezer and self.frozen()
        if freezer and not was_frozen:
            self.freeze()
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, signal)
                except ProcessLookupError:
                    pass
        finally:
            if freezer and (not was_frozen or signal == SIGKILL):
                self.thaw()

    def oom_kills(self) -> int:
        directory = self.dirs.get("memory")
        if directory is None:
            return 0
        for line in _read(directory, "memory.oom_control").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def stats(self) -> dict[str, Any]:
        from ocirt.plugins.cgroups import v1stats

        return v1stats.collect(self.dirs)


def _read(directory: str, name: str) -> str:
    return fileio.read_bytes(os.path.join(directory, name)).decode()


def _read_int(directory: str, name: str) -> int | None:
    try:
        return int(_read(directory, name))
    except (OSError, ValueError):
        return None
