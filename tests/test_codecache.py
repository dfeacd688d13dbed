"""The code cache: ocirt's modules served from one file, and never stale code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import OCIRT, REPO

PYTHON = str(REPO / ".venv" / "bin" / "python")


def _copy_package(tmp_path: Path) -> Path:
    """A private copy of the ocirt package, free to edit."""
    root = tmp_path / "src"
    shutil.copytree(REPO / "ocirt", root / "ocirt", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _python(root: Path, cache: Path, code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh isolated interpreter that imports ocirt from ``root`` with the cache."""
    prelude = (
        f"import sys; sys.path.insert(0, {str(root)!r}); sys.dont_write_bytecode = True\n"
        f"from ocirt import codecache\n"
        f"installed = codecache.install({str(cache)!r})\n"
    )
    return subprocess.run(
        [PYTHON, "-I", "-S", "-c", prelude + code], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path]:
    """(a private copy of the ocirt package, a code cache built from it)."""
    root = _copy_package(tmp_path)
    cache = tmp_path / "code"
    _build(root, cache)
    return root, cache


def _build(root: Path, cache: Path) -> None:
    code = f"from ocirt import codecache; codecache.build({str(cache)!r}, {str(root / 'ocirt')!r})"
    result = subprocess.run(
        [PYTHON, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {str(root)!r}); {code}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_modules_come_from_the_cache(built: tuple[Path, Path]) -> None:
    root, cache = built
    result = _python(
        root,
        cache,
        "import ocirt.core.state as s, ocirt.plugins.mounts.plugin as m, ctypes, __future__\n"
        "print(installed is not None, type(s.__spec__.loader).__name__, s.__file__)\n"
        "print(type(m.__spec__.loader).__name__, m.__package__)\n"
        "print(type(ctypes.__spec__.loader).__name__, ctypes.__file__, ctypes.sizeof(ctypes.c_int))\n"
        "print(type(__future__.__spec__.loader).__name__)\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"True CodeCache {root / 'ocirt' / 'core' / 'state.py'}",
        "CodeCache ocirt.plugins.mounts",
        f"CodeCache {sys.base_prefix}/lib/python3.11/ctypes/__init__.py 4",
        "CodeCache",
    ]


def test_an_edited_module_is_imported_from_its_source(built: tuple[Path, Path]) -> None:
    root, cache = built
    errors = root / "ocirt" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nEDITED = True\n")
    result = _python(
        root,
        cache,
        "import ocirt.core.errors as e, ocirt.core.state as s\n"
        "print(type(e.__spec__.loader).__name__, e.EDITED, type(s.__spec__.loader).__name__)\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["SourceFileLoader", "True", "CodeCache"]


def test_a_new_module_in_a_cached_package_is_found(built: tuple[Path, Path]) -> None:
    root, cache = built
    (root / "ocirt" / "core" / "added.py").write_text("VALUE = 7\n")
    result = _python(root, cache, "import ocirt.core.added as a\nprint(a.VALUE)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "7\n"


def test_a_damaged_or_foreign_cache_is_ignored(built: tuple[Path, Path]) -> None:
    root, cache = built
    good = cache.read_bytes()
    for damaged in (b"not a cache", good[:40], good.replace(b"cpython-", b"cpython_", 1), b""):
        cache.write_bytes(damaged)
        result = _python(
            root, cache, "import ocirt.core.state as s\nprint(installed, type(s.__spec__.loader).__name__)\n"
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["None", "SourceFileLoader"]
    cache.unlink()
    result = _python(root, cache, "print(installed)\n")
    assert result.stdout == "None\n"


def test_a_forked_child_imports_as_usual(built: tuple[Path, Path]) -> None:
    """Only the process that opened the cache reads it: a child (like the container's
    setup child, which closes fds and may reuse their numbers) imports as usual."""
    root, cache = built
    result = _python(
        root,
        cache,
        "import os\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    import ocirt.core.errors as e\n"
        "    os._exit(0 if type(e.__spec__.loader).__name__ == 'SourceFileLoader' else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "import ocirt.core.state as s\n"
        "print(os.waitstatus_to_exitcode(status), type(s.__spec__.loader).__name__)\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "CodeCache"]


def test_tracebacks_name_the_source(built: tuple[Path, Path]) -> None:
    root, cache = built
    result = _python(
        root,
        cache,
        "from ocirt.core import jsonio\njsonio.loads('{')\n",
    )
    assert result.returncode == 1
    jsonio = root / "ocirt" / "core" / "jsonio.py"
    assert f'File "{jsonio}", line ' in result.stderr
    assert "def loads" in jsonio.read_text()


def test_the_launcher_reads_no_pyc_of_ocirt() -> None:
    """scripts/setup.sh builds the cache and the launcher installs it: past the two
    modules that load the cache, no ocirt module is read from a .pyc."""
    assert os.path.exists(REPO / ".venv" / ".ocirt-code"), "scripts/setup.sh builds the cache"
    result = subprocess.run(
        [PYTHON, "-I", "-S", "-v", OCIRT, "--root", "/nonexistent-ocirt-root", "state", "none"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    loaded = [line for line in result.stderr.splitlines() if line.startswith("# code object from")]
    from_ocirt = [line for line in loaded if f"{REPO}/ocirt/" in line]
    assert len(from_ocirt) == 2, from_ocirt  # ocirt/__init__ and ocirt/codecache
    assert not [line for line in loaded if "__future__" in line]  # served from the cache too
    assert "container 'none' does not exist" in result.stderr
