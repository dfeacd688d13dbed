"""Run the cgroup v2 tests on a pure v2 kernel, in the QEMU guest of tests/vm/v2vm.py.

This host mounts cgroups hybrid, so without the guest the v2 driver's limits
and device filter would go untested. The guest's kernel also has the soft-dirty
memory tracking criu's pre-dump needs, which this host's lacks: the pre-dump
test runs there too. Skipped (with the reason) only when the guest cannot be
had: no qemu, or no kernel package to download.
"""

from __future__ import annotations

import os
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "tests" / "vm"))
import v2vm

pytestmark = pytest.mark.slow


def _in_guest(tests: str, timeout: float) -> None:
    """Run ``tests`` (pytest arguments) in the guest: all must pass, none skip."""
    try:
        v2vm.build()
    except v2vm.Unavailable as e:
        print(f"v2 VM unavailable: {e}")
        pytest.skip(f"v2 VM unavailable: {e}")
    command = f".venv/bin/python -m pytest -q -ra -p no:cacheprovider {tests}"
    result = v2vm.run(command, timeout=timeout, cwd=str(REPO))
    print(result.output)
    print(f"v2 VM: status {result.returncode} in {result.seconds:.0f}s")
    assert result.returncode == 0, result.output[-4000:]
    assert " passed" in result.output and "skipped" not in result.output, result.output[-4000:]


@pytest.mark.skipif(os.environ.get(v2vm.GUEST_ENV) == "1", reason="already inside the guest")
def test_cgroup_v2_suite_in_vm() -> None:
    _in_guest("tests/test_cgroups_v2.py", timeout=240)


@pytest.mark.skipif(os.environ.get(v2vm.GUEST_ENV) == "1", reason="already inside the guest")
def test_pre_dump_in_vm() -> None:
    """The guest's Debian kernel has the soft-dirty tracking this host lacks: pre-dump, then a
    dump on top of it, then a restore, for real (criu needs the modules v2vm.MODULES loads)."""
    _in_guest("tests/test_checkpoint.py::test_pre_dump_then_dump_continues_the_counter", timeout=180)
