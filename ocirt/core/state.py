"""Container state on disk: one directory per container under the state root.

``<root>/<id>/state.json`` is written to a temporary file and renamed, so a
reader never sees half a file; the directory ``<root>/<id>`` itself is flock'ed
by every command that changes the container, so two commands on one id are
serialised; ``<root>/<id>/exec.fifo`` exists while the container is ``created``.
A directory without state.json is a create that has not forked yet, or one that
crashed before it did.
"""

from __future__ import annotations

import fcntl
import os
import time

from ocirt.core import fileio, jsonio
from ocirt.core.errors import ContainerNotFound, OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

DEFAULT_ROOT = "/run/ocirt"
STATE_FILE = "state.json"
FIFO_NAME = "exec.fifo"

# Container ids, as runc allows them (ASCII \w, '+', '-', '.'): no '/', no '..',
# nothing unprintable.
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")

CREATING, CREATED, RUNNING, STOPPED, PAUSED = "creating", "created", "running", "stopped", "paused"


def default_root() -> str:
    """The state root without ``--root``: /run/ocirt for root, else the user's runtime dir.

    An unprivileged user cannot write /run/ocirt; runc uses $XDG_RUNTIME_DIR/runc.
    """
    euid = os.geteuid()
    if euid == 0:
        return DEFAULT_ROOT
    return os.path.join(os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{euid}", "ocirt")


def check_id(container_id: str) -> None:
    if not container_id or not _ID_CHARS.issuperset(container_id) or container_id in (".", ".."):
        raise OcirtError(f"invalid container id {container_id!r}: use letters, digits, '_', '+', '-' and '.'")


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in ticks), or None if the pid is gone or a zombie.

    Paired with the pid it identifies a process across pid reuse.
    """
    try:
        raw = fileio.read_bytes(f"/proc/{pid}/stat")
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return fields[19].decode()


class ContainerState:
    """What ocirt remembers about one container (a superset of the OCI state)."""

    def __init__(self, data: dict[str, Any], directory: str) -> None:
        self.data = data
        self.dir = directory

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def pid(self) -> int:
        return int(self.data.get("pid") or 0)

    @property
    def bundle(self) -> str:
        return str(self.data["bundle"])

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, FIFO_NAME)

    @property
    def plugins(self) -> list[dict[str, str]]:
        """The plugin set the container was created with: ``[{"name", "module"}]``."""
        return list(self.data.get("plugins") or [])

    @property
    def plugin_data(self) -> dict[str, Any]:
        """Per-plugin scratch space persisted with the state (e.g. a cgroup path)."""
        return self.data.setdefault("plugin_data", {})

    def init_alive(self) -> bool:
        pid = self.pid
        return pid > 0 and process_start_time(pid) == self.data.get("init_start")

    def status(self) -> str:
        """The live status: the stored one, corrected by whether init still exists.

        ``start`` does not store "running": a created container whose exec.fifo is
        gone and whose init lives is running."""
        stored = self.data.get("status", CREATING)
        if stored == CREATING:
            return CREATING
        if not self.init_alive():
            return STOPPED
        if os.path.exists(self.fifo):
            return CREATED
        return RUNNING if stored in (CREATED, STOPPED) else stored

    def shown_status(self) -> str:
        """The status as ``state`` and ``list`` show it: a live container's status
        files (``Container.show_status``) may name another, such as ``paused``."""
        status = self.status()
        if status in (CREATED, RUNNING):
            for shown, path, unless in self.data.get("status_files", ()):
                if fileio.holds_other_than(path, unless):
                    return str(shown)
        return status

    def oci_state(self, status: str | None = None) -> dict[str, Any]:
        """The state as the runtime spec (and runc's ``state`` output) shows it."""
        status = status or self.shown_status()
        out: dict[str, Any] = {
            "ociVersion": self.data["ociVersion"],
            "id": self.id,
            "pid": self.pid if status != STOPPED else 0,
            "status": status,
            "bundle": self.bundle,
            "rootfs": self.data.get("rootfs", ""),
            "created": self.data.get("created", ""),
            "owner": self.data.get("owner", ""),
        }
        if self.data.get("annotations"):
            out["annotations"] = self.data["annotations"]
        return out


class StateStore:
    """The directory holding every container's state (``--root``)."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = os.path.abspath(root)

    def dir(self, container_id: str) -> str:
        check_id(container_id)
        return os.path.join(self.root, container_id)

    def exists(self, container_id: str) -> bool:
        return os.path.exists(os.path.join(self.dir(container_id), STATE_FILE))

    def reserve(self, container_id: str) -> str:
        """Make the container's directory; fail if the id is taken."""
        directory = self.dir(container_id)
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(directory, 0o711)
        except FileExistsError:
            raise OcirtError(f"container {container_id!r} already exists") from None
        return directory

    def load(self, container_id: str) -> ContainerState:
        directory = self.dir(container_id)
        try:
            data = jsonio.loads(fileio.read_bytes(os.path.join(directory, STATE_FILE)))
        except FileNotFoundError:
            raise ContainerNotFound(f"container {container_id!r} does not exist") from None
        except ValueError as e:
            raise OcirtError(f"container {container_id!r}: corrupt state file: {e}") from None
        return ContainerState(data, directory)

    def save(self, state: ContainerState) -> None:
        """Write state.json atomically (temporary file, fsync-free rename)."""
        path = os.path.join(state.dir, STATE_FILE)
        tmp = f"{path}.{os.getpid()}.tmp"
        fileio.write_bytes(tmp, jsonio.dumps(state.data).encode(), create=0o666)
        os.rename(tmp, path)

    def remove(self, container_id: str) -> None:
        """Remove the container's directory (flat; plugins' subdirectories too)."""
        directory = self.dir(container_id)
        try:
            for name in os.listdir(directory):
                os.unlink(os.path.join(directory, name))
            os.rmdir(directory)
        except FileNotFoundError:
            pass
        except OSError:
            import shutil

            shutil.rmtree(directory, ignore_errors=True)

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if os.path.exists(os.path.join(self.root, n, STATE_FILE)))

    def lock(self, container_id: str) -> Lock:
        return Lock(self.dir(container_id))

    def remove_unsaved(self, container_id: str) -> bool:
        """Remove a directory that has no state.json once its create is over (a crashed
        one's at once); False if the create saved a state meanwhile."""
        try:
            with self.lock(container_id):
                if self.exists(container_id):
                    return False
                self.remove(container_id)
        except ContainerNotFound:
            pass
        return True


class Lock:
    """An exclusive flock on a container's state directory, as a context manager.

    The directory itself rather than a lock file in it: one file fewer to make
    and remove per container, each a metadata write on the state root's disk.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> Lock:
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ContainerNotFound(f"container {os.path.basename(self.path)!r} does not exist") from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
        self.fd = -1


def now_rfc3339() -> str:
    """The current time as runc writes it: RFC 3339 with nanoseconds, UTC."""
    ns = time.time_ns()
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"
    )


def wait_gone(pid: int, start: str | None, timeout: float) -> bool:
    """Poll until the process (pid + start time) has exited; True if it did.

    With ``start`` None (not known, or the process was already a zombie), until
    no live process has that pid.
    """

    def gone() -> bool:
        current = process_start_time(pid)
        return current is None or (start is not None and current != start)

    deadline = time.monotonic() + timeout
    delay = 0.001
    while time.monotonic() < deadline:
        if gone():
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return gone()


def iter_states(store: StateStore) -> Iterator[ContainerState]:
    for container_id in store.ids():
        try:
            yield store.load(container_id)
        except OcirtError:
            continue


__all__ = ["DEFAULT_ROOT", "ContainerState", "StateStore", "check_id"]
