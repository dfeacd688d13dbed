"""ocirt's compiled modules in one file, so that a command imports them without a search.

Every ocirt command is a new interpreter, and ``create`` imports about 45 of
ocirt's modules. Imported the usual way, each one costs a path search (several
``stat`` calls), an open, read and check of its ``.pyc`` and the import system's
Python code around them: about 1.5 ms of every ``run`` on the machine ocirt is
measured on. This cache holds the code of every module of the ``ocirt`` package
in one file that the launcher (``bin/ocirt``) reads once, with the few standard
modules on create's path that the interpreter does not freeze; a module is served from
it only while its source has the size and mtime recorded at build time (the
check a ``.pyc`` gets), so an edited, added or removed file is imported the usual
way. Without the file, or with one made by another Python, nothing changes.

Build it with ``python -m ocirt.codecache`` (``scripts/setup.sh`` does).
"""

import marshal
import os
import sys

# importlib.machinery's ModuleSpec; importing ``importlib`` itself costs about 1 ms
# (it imports ``warnings``), and the bootstrap module is always loaded.
from _frozen_importlib import ModuleSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

#: Where the launcher looks for the cache: beside the venv's other ocirt caches.
DEFAULT_PATH = os.path.join(sys.prefix, ".ocirt-code")

_MAGIC = b"ocirt-code-1\n"

#: Only code marshalled by this very interpreter version can be loaded.
_TAG = f"{sys.implementation.cache_tag} {sys.hexversion:x}"

#: name -> (source path, source mtime_ns, source size, is a package, offset, length)
Index = dict[str, tuple[str, int, int, bool, int, int]]


class CodeCache:
    """A meta path finder and loader serving modules from the cache file's code.

    The file stays open (close-on-exec) and each module's code is read with one
    ``pread`` when it is imported: reading the whole file at start-up would cost
    more than it saves for the short commands. Only the process that opened it
    uses it: a forked child (the container's setup child, which closes fds it
    does not need and may reuse their numbers) imports as usual.
    """

    def __init__(self, fd: int, index: Index, base: int) -> None:
        self.fd = fd
        self.pid = os.getpid()
        self.index = index
        self.base = base  # where the code of the first module starts
        self.code: dict[str, bytes] = {}

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        entry = self.index.get(name)
        if entry is None or os.getpid() != self.pid:
            return None
        source, mtime_ns, size, package, offset, length = entry
        try:
            st = os.stat(source)
            if st.st_mtime_ns != mtime_ns or st.st_size != size:
                return None  # edited since the build: the usual import compiles it
            code = os.pread(self.fd, length, self.base + offset)
        except OSError:
            return None
        if len(code) != length:
            return None
        self.code[name] = code
        spec = ModuleSpec(name, self, origin=source, is_package=package)  # type: ignore[arg-type]
        spec.has_location = True  # sets __file__, which tracebacks and plugins read
        if package:
            spec.submodule_search_locations = [os.path.dirname(source)]
        return spec

    def create_module(self, spec: ModuleSpec) -> None:
        return None  # the default module object

    def exec_module(self, module: "ModuleType") -> None:
        exec(marshal.loads(self.code.pop(module.__name__)), module.__dict__)


def install(path: str = DEFAULT_PATH) -> CodeCache | None:
    """Put the cache first on ``sys.meta_path``; None (and no change) if it is missing,
    damaged or made by another Python: ocirt then imports as usual."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        head = os.pread(fd, len(_MAGIC) + 4, 0)
        if not head.startswith(_MAGIC):
            raise ValueError(path)
        index_length = int.from_bytes(head[len(_MAGIC) :], "little")
        tag, index = marshal.loads(os.pread(fd, index_length, len(head)))
        if tag != _TAG:
            raise ValueError(tag)
    except (OSError, ValueError, TypeError, EOFError):
        os.close(fd)
        return None
    cache = CodeCache(fd, index, len(head) + index_length)
    sys.meta_path.insert(0, cache)
    return cache


#: Pure-Python standard modules that create imports and the interpreter does not
#: freeze (``__future__`` for every ``from __future__ import``, ctypes for syscalls).
STDLIB = ("__future__", "types", "struct", "ctypes", "ctypes._endian")


def build(path: str = DEFAULT_PATH, package_dir: str | None = None) -> int:
    """Compile every module of the ocirt package, and ``STDLIB``, into the cache at
    ``path``; the number of modules. Written to a temporary file and renamed into place."""
    root = package_dir or os.path.dirname(os.path.abspath(__file__))
    sources: list[tuple[str, str, bool]] = []  # (module name, source file, is a package)
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for file in sorted(files):
            if file.endswith(".py"):
                source = os.path.join(directory, file)
                parts = os.path.relpath(source, os.path.dirname(root))[: -len(".py")].split(os.sep)
                package = parts[-1] == "__init__"
                sources.append((".".join(parts[:-1] if package else parts), source, package))
    from importlib.util import find_spec

    for name in STDLIB:
        spec = find_spec(name)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            sources.append((name, spec.origin, spec.submodule_search_locations is not None))
    index: Index = {}
    chunks: list[bytes] = []
    offset = 0
    for name, source, package in sources:
        st = os.stat(source)
        with open(source, "rb") as f:
            code = compile(f.read(), source, "exec", dont_inherit=True)
        chunk = marshal.dumps(code)
        index[name] = (source, st.st_mtime_ns, st.st_size, package, offset, len(chunk))
        chunks.append(chunk)
        offset += len(chunk)
    header = marshal.dumps((_TAG, index))
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(_MAGIC + len(header).to_bytes(4, "little") + header)
        f.writelines(chunks)
    os.replace(tmp, path)
    return len(index)


if __name__ == "__main__":
    print(f"{build(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PATH)} modules cached")
