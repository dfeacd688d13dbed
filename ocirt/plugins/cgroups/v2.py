"""The cgroup v2 (unified hierarchy) driver.

One directory per container. Limits are translated from ``linux.resources``
the way runc's ``fs2`` package translates them, so a config means the same
under both runtimes; ``linux.resources.unified`` is written verbatim after
them. Devices go through an eBPF program (:mod:`.bpf`), imported only when a
spec has device rules: most commands on a v2 host never need it.
"""

from __future__ import annotations

import errno
import os
import signal as signals
import time

from ocirt.core.errors import OcirtError, SpecError
from ocirt.plugins.cgroups.driver import CgroupDriver

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirt.core.context import Container

MOUNTPOINT = "/sys/fs/cgroup"
#: How long freeze/thaw and the emptying of a cgroup may take.
WAIT_SECONDS = 10.0


class CgroupError(OcirtError):
    """A cgroup file the kernel refused to take, or a directory it would not make."""


def own_cgroup(proc_file: str = "/proc/self/cgroup") -> str:
    """The calling process's cgroup v2 path (the ``0::`` line)."""
    with open(proc_file) as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip() or "/"
    return "/"


def resolve_path(cgroups_path: str | None, container_id: str, own: str | None = None) -> str:
    """The cgroup path (relative to the mountpoint, starting with ``/``) runc would use.

    Absolute ``cgroupsPath``: as is. Relative, or absent (then the container
    id): below the *parent* of the runtime's own cgroup, as runc does, since
    the runtime's cgroup has processes and so cannot delegate controllers.
    """
    inner = os.path.normpath("/" + (cgroups_path or container_id)).lstrip("/")
    if not inner:  # the hierarchy's root is every process's, never a container's own
        raise SpecError(f"linux.cgroupsPath: {cgroups_path!r} does not name a cgroup of its own")
    if cgroups_path and cgroups_path.startswith("/"):
        return "/" + inner
    base = os.path.dirname(own if own is not None else own_cgroup())
    return os.path.normpath(os.path.join("/", base.lstrip("/"), inner))


def _controller_of(key: str) -> str:
    return key.split(".", 1)[0]


def needed_controllers(resources: dict[str, Any]) -> dict[str, str]:
    """Controller -> the ``linux.resources`` field that needs it."""
    need: dict[str, str] = {}
    cpu = resources.get("cpu") or {}
    if resources.get("memory"):
        need["memory"] = "linux.resources.memory"
    if any(cpu.get(k) is not None for k in ("shares", "quota", "period", "burst", "idle")):
        need["cpu"] = "linux.resources.cpu"
    if cpu.get("cpus") or cpu.get("mems"):
        need["cpuset"] = "linux.resources.cpu"
    if resources.get("pids"):
        need["pids"] = "linux.resources.pids"
    if resources.get("blockIO"):
        need["io"] = "linux.resources.blockIO"
    if resources.get("hugepageLimits"):
        need["hugetlb"] = "linux.resources.hugepageLimits"
    if resources.get("rdma"):
        need["rdma"] = "linux.resources.rdma"
    for key in resources.get("unified") or {}:
        if _controller_of(key) != "cgroup":
            need.setdefault(_controller_of(key), f"linux.resources.unified.{key}")
    return need


def swap_max(swap: int | None, limit: int | None) -> int | None:
    """runc's memory.swap.max from the spec's memory+swap total (None: leave alone)."""
    swap, limit = swap or 0, limit or 0
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap or None
    if limit in (0, -1):
        raise SpecError("linux.resources.memory.swap: a swap limit needs a memory limit")
    if swap < limit:
        raise SpecError("linux.resources.memory.swap: must be at least memory.limit (it counts both)")
    return swap - limit


def cpu_weight(shares: int) -> int:
    """runc's cpu.shares (2..262144) -> cpu.weight (1..10000)."""
    return 1 + ((shares - 2) * 9999) // 262142


def io_weight(weight: int) -> int:
    """runc's blkio weight (10..1000) -> io.weight (1..10000)."""
    return 1 + ((weight - 10) * 9999) // 990


def _limit(value: int) -> str:
    return "max" if value < 0 else str(value)


def translate(resources: dict[str, Any], has_file: Any = lambda name: True) -> list[tuple[str, str]]:
    """(file, value) writes for ``resources``, in the order runc makes them.

    ``has_file(name)`` tells whether the cgroup offers a file (io.bfq.weight,
    memory.swap.max), where runc's choice depends on it.
    """
    writes: list[tuple[str, str]] = []
    mem = resources.get("memory") or {}
    if mem:
        swap = swap_max(mem.get("swap"), mem.get("limit"))
        if swap is not None:
            if not has_file("memory.swap.max"):
                raise SpecError("linux.resources.memory.swap: this kernel does not account swap")
            writes.append(("memory.swap.max", _limit(swap)))
        if mem.get("limit"):
            writes.append(("memory.max", _limit(mem["limit"])))
        if mem.get("reservation"):
            writes.append(("memory.low", _limit(mem["reservation"])))
    cpu = resources.get("cpu") or {}
    if cpu.get("shares"):
        writes.append(("cpu.weight", str(cpu_weight(cpu["shares"]))))
    if cpu.get("idle") is not None:
        writes.append(("cpu.idle", str(cpu["idle"])))
    if cpu.get("quota") or cpu.get("period"):
        quota = cpu.get("quota") or 0
        writes.append(("cpu.max", f"{quota if quota > 0 else 'max'} {cpu.get('period') or 100000}"))
    if cpu.get("burst") is not None:
        writes.append(("cpu.max.burst", str(cpu["burst"])))
    if cpu.get("cpus"):
        writes.append(("cpuset.cpus", cpu["cpus"]))
    if cpu.get("mems"):
        writes.append(("cpuset.mems", cpu["mems"]))
    pids = resources.get("pids") or {}
    if pids.get("limit"):
        writes.append(("pids.max", _limit(pids["limit"]) if pids["limit"] > 0 else "max"))
    writes += _io_writes(resources.get("blockIO") or {}, has_file)
    for page in resources.get("hugepageLimits") or []:
        writes.append((f"hugetlb.{page['pageSize']}.max", str(page["limit"])))
    for device, rdma in (resources.get("rdma") or {}).items():
        pairs = (("hca_handle", "hcaHandles"), ("hca_object", "hcaObjects"))
        parts = [f"{key}={rdma[field]}" for key, field in pairs if rdma.get(field) is not None]
        writes.append(("rdma.max", " ".join([device, *parts])))
    for key, value in (resources.get("unified") or {}).items():
        writes.append((key, str(value)))
    return writes


def _io_writes(blkio: dict[str, Any], has_file: Any) -> list[tuple[str, str]]:
    writes: list[tuple[str, str]] = []
    if blkio.get("weight"):
        if has_file("io.bfq.weight"):
            writes.append(("io.bfq.weight", str(blkio["weight"])))
        else:
            writes.append(("io.weight", str(io_weight(blkio["weight"]))))
    for dev in blkio.get("weightDevice") or []:
        if dev.get("weight"):
            writes.append(("io.bfq.weight", f"{dev['major']}:{dev['minor']} {dev['weight']}"))
    for field, key in (
        ("throttleReadBpsDevice", "rbps"),
        ("throttleWriteBpsDevice", "wbps"),
        ("throttleReadIOPSDevice", "riops"),
        ("throttleWriteIOPSDevice", "wiops"),
    ):
        for dev in blkio.get(field) or []:
            writes.append(("io.max", f"{dev['major']}:{dev['minor']} {key}={_limit(dev['rate'] or -1)}"))
    return writes


class CgroupV2(CgroupDriver):
    """A container's cgroup on the unified hierarchy at :attr:`mountpoint`."""

    name = "v2"
    mountpoint = MOUNTPOINT

    def __init__(self, container: Container, path: str | None = None) -> None:
        super().__init__(container)
        if path is None:
            from ocirt.plugins.cgroups import paths

            path = resolve_path(paths.requested(container), container.id)
        #: The cgroup path below the mountpoint.
        self.path = path
        #: Directories create() made, parents first.
        self.made: list[str] = []
        self.bpf_ids: list[int] = []

    @classmethod
    def available(cls) -> bool:
        return os.path.exists(os.path.join(cls.mountpoint, "cgroup.controllers"))

    @property
    def dir(self) -> str:
        return os.path.join(self.mountpoint, self.path.lstrip("/"))

    # -- kept between commands ---------------------------------------------
    def record(self) -> dict[str, Any]:
        return {"path": self.path, "made": list(self.made), "bpf": list(self.bpf_ids)}

    def restore(self, data: dict[str, Any]) -> None:
        self.path = data.get("path") or self.path
        self.made = list(data.get("made") or [])
        self.bpf_ids = list(data.get("bpf") or [])

    # -- files ---------------------------------------------------------------
    def _file(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def read(self, name: str) -> str:
        with open(self._file(name)) as f:
            return f.read()

    def write(self, name: str, value: str, directory: str | None = None) -> None:
        """Write one control file; the kernel's refusal names the file and the value."""
        path = os.path.join(directory or self.dir, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as e:
            raise CgroupError(f"cgroup: cannot open {path}: {e.strerror}") from None
        try:
            os.write(fd, value.encode())
        except OSError as e:
            raise CgroupError(f"cgroup: {path}: the kernel refused {value!r}: {e.strerror}") from None
        finally:
            os.close(fd)

    def _available_controllers(self) -> set[str]:
        with open(os.path.join(self.mountpoint, "cgroup.controllers")) as f:
            return set(f.read().split())

    # -- create / delete -----------------------------------------------------
    def validate(self, resources: dict[str, Any]) -> None:
        available = self._available_controllers()
        for key in resources.get("unified") or {}:
            field = f"linux.resources.unified.{key}"
            if not key or "/" in key or ".." in key or "." not in key:
                raise SpecError(f"{field}: not a cgroup file name")
            if _controller_of(key) != "cgroup" and _controller_of(key) not in available:
                raise SpecError(f"{field}: controller {_controller_of(key)!r} is not available on this host")
        for controller, field in needed_controllers(resources).items():
            if controller not in available:
                raise SpecError(f"{field}: the {controller} controller is not available on this host")
        translate(resources)
        if resources.get("devices") is not None:
            from ocirt.plugins.cgroups import bpf

            try:
                bpf.clean_rules(resources["devices"])
            except bpf.DeviceRuleError as e:
                raise SpecError(str(e)) from None

    def create(self, resources: dict[str, Any]) -> None:
        parts = [p for p in self.path.split("/") if p]
        if not parts:
            raise CgroupError("cgroup: refusing to use the root cgroup for a container")
        current = self.mountpoint
        for part in parts:
            current = os.path.join(current, part)
            try:
                os.mkdir(current, 0o755)
            except FileExistsError:
                continue
            except OSError as e:
                raise CgroupError(f"cgroup: cannot make {current}: {e.strerror}") from None
            self.made.append(current)
        self._enable(resources)
        self.update(resources)

    def _enable(self, resources: dict[str, Any]) -> None:
        """Enable the needed controllers in cgroup.subtree_control from the root down."""
        want = set(needed_controllers(resources)) & self._available_controllers()
        if not want:
            return
        current = self.mountpoint
        for part in [p for p in self.path.split("/") if p]:
            with open(os.path.join(current, "cgroup.subtree_control")) as f:
                missing = want - set(f.read().split())
            if missing:
                self.write("cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(missing)), current)
            current = os.path.join(current, part)

    def join(self, pid: int) -> None:
        self.write("cgroup.procs", str(pid))

    def destroy(self) -> None:
        if os.path.isdir(self.dir):
            self._empty()
            for root, dirs, _files in os.walk(self.dir, topdown=False):
                for d in dirs:
                    self._rmdir(os.path.join(root, d))
        for directory in reversed(self.made):
            self._rmdir(directory)
        self.made = []
        self.bpf_ids = []

    def _empty(self) -> None:
        """Kill what is left in the cgroup (rmdir fails on a populated one)."""
        if not self.pids():
            return
        self.kill_all(signals.SIGKILL)
        deadline = time.monotonic() + WAIT_SECONDS
        while self._populated() and time.monotonic() < deadline:
            time.sleep(0.01)

    def _populated(self) -> bool:
        return self._events().get("populated") == "1"

    def _rmdir(self, path: str) -> None:
        for _ in range(100):
            try:
                os.rmdir(path)
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise CgroupError(f"cgroup: cannot remove {path}: {e.strerror}") from None
                time.sleep(0.02)
        raise CgroupError(f"cgroup: cannot remove {path}: still busy")

    # -- live container ------------------------------------------------------
    def update(self, resources: dict[str, Any]) -> None:
        for name, value in translate(resources, lambda n: os.path.exists(self._file(n))):
            self.write(name, value)
        if resources.get("devices") is not None:
            from ocirt.plugins.cgroups import bpf, devrules

            # The same rules as v1: deny-all, runc's default devices and
            # linux.devices, then the spec's list (devrules says why).
            spec = self.container.spec
            linux_devices = (spec.section("linux.devices", list) if spec else None) or []
            rules = devrules.effective(resources["devices"], linux_devices)
            try:
                self.bpf_ids = bpf.apply(self.dir, rules)
            except OSError as e:
                raise CgroupError(f"cgroup: device filter on {self.dir}: {e.strerror}") from None

    def _events(self) -> dict[str, str]:
        try:
            text = self.read("cgroup.events")
        except FileNotFoundError:
            return {}
        return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)

    def _set_frozen(self, value: str) -> None:
        self.write("cgroup.freeze", value)
        deadline = time.monotonic() + WAIT_SECONDS
        while self._events().get("frozen", value) != value:
            if time.monotonic() > deadline:
                raise CgroupError(f"cgroup: {self.dir} did not reach frozen {value}")
            time.sleep(0.005)

    def freeze(self) -> None:
        self._set_frozen("1")

    def thaw(self) -> None:
        self._set_frozen("0")

    def freeze_file(self) -> tuple[str, str] | None:
        return (self._file("cgroup.freeze"), "0")

    def pids(self) -> list[int]:
        found: list[int] = []
        for root, _dirs, files in os.walk(self.dir):
            if "cgroup.procs" in files:
                try:
                    with open(os.path.join(root, "cgroup.procs")) as f:
                        found += [int(p) for p in f.read().split()]
                except FileNotFoundError:
                    pass
        return found

    def kill_all(self, signal: int) -> None:
        if signal == signals.SIGKILL and os.path.exists(self._file("cgroup.kill")):
            self.write("cgroup.kill", "1")
            return
        for pid in self.pids():
            try:
                os.kill(pid, signal)
            except ProcessLookupError:
                pass

    def stats(self) -> dict[str, Any]:
        from ocirt.plugins.cgroups.v2stats import collect

        return collect(self.dir)

    def oom_kills(self) -> int:
        try:
            text = self.read("memory.events")
        except FileNotFoundError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0
