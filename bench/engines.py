#!/usr/bin/env python3
"""Engine start-to-exit time with ocirt in runc's place: podman, containerd, docker.

For each engine, the time of one whole ``run --rm IMAGE true`` as a user sees
it (the engine's client command, from its start to its exit), with ocirt and
with runc, interleaved: each round runs both runtimes, and which goes first
alternates, so both see the same machine. The engines run as the tests drive
them (``tests/engines/*_session.py``): private configuration and storage, the
local busybox image, daemons started here and stopped by pid at the end.

    .venv/bin/python bench/engines.py --runs 20
    .venv/bin/python bench/engines.py --engines podman,docker --runs 40

Prints the median and p90 per engine and runtime, the ocirt/runc ratio of the
medians, and whether it meets the target (at most 1.2). Needs root and the
engines (``scripts/setup.sh`` installs them).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests" / "engines"), str(REPO / "tests")]

import harness  # noqa: E402

TARGET_RATIO = 1.2
RUNTIMES = ("ocirt", "runc")

#: An engine's ``run --rm IMAGE true`` for one runtime (round number given).
RunOnce = Callable[[str, int], "subprocess.CompletedProcess[str]"]


@contextlib.contextmanager
def podman(image: dict[str, Path]) -> Iterator[RunOnce]:
    from podman_session import PodmanSession

    with PodmanSession(image["tar"]) as session:

        def once(runtime: str, n: int) -> int:
            return session.podman("run", "--rm", harness.IMAGE, "true", runtime=runtime)

        yield once


@contextlib.contextmanager
def containerd(image: dict[str, Path]) -> Iterator[RunOnce]:
    from containerd_session import ContainerdSession

    with ContainerdSession(image["oci"]) as session:

        def once(runtime: str, n: int) -> int:
            return session.run(runtime, f"bench-{runtime}-{n + 1}", "true", options=("--rm",))

        yield once


@contextlib.contextmanager
def docker(image: dict[str, Path]) -> Iterator[RunOnce]:
    from docker_session import DockerSession

    with DockerSession(image["tar"]) as session:

        def once(runtime: str, n: int) -> int:
            return session.docker("run", "--rm", harness.IMAGE, "true", runtime=runtime)

        yield once


ENGINES = {"podman": podman, "containerd": containerd, "docker": docker}


def measure(once: RunOnce, runs: int) -> dict[str, list[float]]:
    """Seconds per ``run --rm``, per runtime; one untimed warm-up each first."""
    for runtime in RUNTIMES:
        check(once(runtime, -1), runtime)
    times: dict[str, list[float]] = {r: [] for r in RUNTIMES}
    for n in range(runs):
        order = RUNTIMES if n % 2 == 0 else RUNTIMES[::-1]
        for runtime in order:
            t0 = time.perf_counter()
            result = once(runtime, n)
            times[runtime].append(time.perf_counter() - t0)
            check(result, runtime)
    return times


def check(result: subprocess.CompletedProcess[str], runtime: str) -> None:
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(result.args)} ({runtime}) exited {result.returncode}: {result.stderr}")


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="timed rounds per engine (default 20)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated (default: all)")
    args = parser.parse_args()
    chosen = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in chosen if e not in ENGINES]
    if unknown:
        parser.error(f"unknown engine(s): {', '.join(unknown)} (known: {', '.join(ENGINES)})")

    with tempfile.TemporaryDirectory(prefix="ocirt-bench-image-") as tmp:
        base = Path(tmp)
        rootfs = harness.busybox_rootfs(base / "bundle")
        image = {
            "tar": harness.rootfs_tar(rootfs, base / "rootfs.tar"),
            "oci": harness.oci_archive(rootfs, base / "oci.tar"),
        }
        results = {}
        for engine in chosen:
            print(f"{engine}: {args.runs} rounds...", file=sys.stderr, flush=True)
            with ENGINES[engine](image) as once:
                results[engine] = measure(once, args.runs)

    print(f"{'engine':<11} {'runtime':<6} {'median ms':>9} {'p90 ms':>7}")
    verdicts = []
    for engine, times in results.items():
        for runtime in RUNTIMES:
            ms = [t * 1000 for t in times[runtime]]
            print(f"{engine:<11} {runtime:<6} {statistics.median(ms):>9.1f} {p90(ms):>7.1f}")
        ratio = statistics.median(times["ocirt"]) / statistics.median(times["runc"])
        verdicts.append((engine, ratio))
    print()
    for engine, ratio in verdicts:
        mark = "met" if ratio <= TARGET_RATIO else "NOT met"
        print(f"{engine} run --rm: ocirt/runc median ratio {ratio:.2f} (target <= {TARGET_RATIO}: {mark})")
    return 0 if all(ratio <= TARGET_RATIO for _, ratio in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
