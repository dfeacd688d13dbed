"""The ``ocirt`` command cannot be steered by the caller's Python environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import OCIRT, Bundle, Ocirt


def _fake_package(tmp_path: Path) -> Path:
    """A directory whose ``ocirt`` package would take over if it were importable."""
    fake = tmp_path / "evil" / "ocirt"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise SystemExit('hijacked by PYTHONPATH')\n")
    (tmp_path / "evil" / "sitecustomize.py").write_text("raise SystemExit('hijacked by sitecustomize')\n")
    return fake.parent


def test_pythonpath_cannot_replace_the_runtime(tmp_path: Path) -> None:
    evil = _fake_package(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(evil), "PYTHONHOME": "/nonexistent"}
    result = subprocess.run([OCIRT, "--version"], capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ocirt version ")
    assert "hijacked" not in result.stdout + result.stderr


def test_pythonpath_does_not_reach_a_container(ocirt: Ocirt, bundle: Bundle, tmp_path: Path) -> None:
    evil = _fake_package(tmp_path)
    bundle.write(args=["sh", "-c", "echo ok"])
    result = ocirt("run", "--bundle", str(bundle.path), "lp1", env={"PYTHONPATH": str(evil)})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


def test_launcher_through_a_symlink(tmp_path: Path) -> None:
    link = tmp_path / "ocirt"
    link.symlink_to(OCIRT)
    result = subprocess.run([str(link), "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ocirt version ")
