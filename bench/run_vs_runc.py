#!/usr/bin/env python3
"""Container start-up latency: ocirt vs runc on the same busybox bundle.

Scenarios, each timed with perf_counter around the runtime process(es):
  run                  `RT run --bundle B ID` (create, start, wait, delete in one)
  create+start+delete  `create --bundle B ID` + `start ID`, then `delete --force ID`;
                       the wait for the container to stop (polling `state`) is
                       not timed.

Runs are interleaved (ocirt and runc alternately, swapping who goes first each
round) so both see the same machine load.
Standard library only. Needs root.

    .venv/bin/python bench/run_vs_runc.py --runs 30
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.5
RUN = "run"
ENGINE = "create+start+delete"


class BenchError(Exception):
    pass


class Runtime:
    """One runtime binary with its own state root; remembers live containers."""

    def __init__(self, name: str, binary: str, root: Path, log: IO[str]) -> None:
        self.name = name
        self.binary = binary
        self.root = root
        self.log = log  # stderr sink: a file, since a pipe would be held open by the container
        self.live: set[str] = set()

    def cmd(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def timed(self, *args: str) -> float:
        """Run one command; return its wall time in seconds, raise on failure."""
        self.log.seek(0)
        self.log.truncate()
        cmd = self.cmd(*args)
        t0 = time.perf_counter()
        rc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log
        ).returncode
        elapsed = time.perf_counter() - t0
        if rc != 0:
            self.log.seek(0)
            raise BenchError(f"{' '.join(cmd)} exited {rc}: {self.log.read().strip()}")
        return elapsed

    def wait_stopped(self, cid: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(self.cmd("state", cid), capture_output=True, text=True)
            if out.returncode == 0 and json.loads(out.stdout).get("status") == "stopped":
                return
            time.sleep(0.002)
        raise BenchError(f"{self.name}: container {cid} did not stop within {timeout}s")

    def run(self, bundle: Path, cid: str) -> float:
        self.live.add(cid)  # in case we are interrupted mid-run
        elapsed = self.timed("run", "--bundle", str(bundle), cid)
        self.live.discard(cid)
        return elapsed

    def engine(self, bundle: Path, cid: str) -> float:
        self.live.add(cid)
        elapsed = self.timed("create", "--bundle", str(bundle), cid)
        elapsed += self.timed("start", cid)
        self.wait_stopped(cid)
        elapsed += self.timed("delete", "--force", cid)
        self.live.discard(cid)
        return elapsed

    def cleanup(self) -> None:
        for cid in self.live:
            subprocess.run(self.cmd("delete", "--force", cid), capture_output=True)


def make_bundle(bundle: Path, runc: str) -> None:
    script = REPO / "scripts" / "make-busybox-bundle.sh"
    subprocess.run([str(script), str(bundle), "--no-config"], check=True, stdout=subprocess.DEVNULL)
    # runc's own default spec, so the reference runtime gets a config it surely accepts.
    subprocess.run([runc, "spec"], cwd=bundle, check=True)
    path = bundle / "config.json"
    cfg = json.loads(path.read_text())
    cfg["process"]["args"] = ["/bin/true"]
    cfg["process"]["terminal"] = False
    cfg.get("linux", {}).pop("cgroupsPath", None)
    path.write_text(json.dumps(cfg, indent=2))


def p90(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]  # nearest rank


def report(results: dict[str, dict[str, list[float]]], runs: int) -> float:
    print(f"\n{runs} runs per scenario and runtime (ms)")
    print(f"{'scenario':<21} {'runtime':<8} {'median':>9} {'p90':>9} {'ocirt/runc':>11}")
    run_ratio = math.nan
    for scenario, by_rt in results.items():
        ratio = statistics.median(by_rt["ocirt"]) / statistics.median(by_rt["runc"])
        if scenario == RUN:
            run_ratio = ratio
        for rt, samples in by_rt.items():
            col = f"{ratio:.2f}" if rt == "ocirt" else ""
            med, high = statistics.median(samples) * 1e3, p90(samples) * 1e3
            print(f"{scenario:<21} {rt:<8} {med:>9.1f} {high:>9.1f} {col:>11}".rstrip())
    print(f"\nocirt run / runc run median ratio: {run_ratio:.2f} (target <= {TARGET_RATIO})")
    return run_ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30, help="timed runs per scenario")
    parser.add_argument("--ocirt", default=str(REPO / ".venv" / "bin" / "ocirt"), help="ocirt binary")
    parser.add_argument("--runc", default="runc", help="reference runtime binary")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if os.geteuid() != 0:
        parser.error("must run as root (both runtimes create namespaces and mounts)")
    for binary, hint in ((args.ocirt, "run scripts/setup.sh"), (args.runc, "apt-get install runc")):
        if not shutil.which(binary):
            parser.error(f"{binary} not found ({hint})")

    # SIGTERM takes the same cleanup path as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="ocirt-bench-"))
    runtimes: list[Runtime] = []
    try:
        bundle = tmp / "bundle"
        make_bundle(bundle, args.runc)
        for name, binary in (("ocirt", args.ocirt), ("runc", args.runc)):
            log = open(tmp / f"{name}.log", "w+")  # noqa: SIM115 - closed in finally
            runtimes.append(Runtime(name, binary, tmp / f"root-{name}", log))

        results: dict[str, dict[str, list[float]]] = {
            s: {rt.name: [] for rt in runtimes} for s in (RUN, ENGINE)
        }
        tag = f"b{os.getpid()}"
        # One untimed round first: page cache, .pyc files, runc's first cgroup setup.
        for i in range(-1, args.runs):
            # Swap who goes first each round: the first container after the previous
            # scenario's teardown is measurably slower (likely the kernel's deferred
            # namespace cleanup), which would otherwise always hit the same runtime.
            order = runtimes if i % 2 == 0 else runtimes[::-1]
            for scenario in (RUN, ENGINE):
                for rt in order:
                    measure = rt.run if scenario == RUN else rt.engine
                    elapsed = measure(bundle, f"{tag}-{rt.name}-{scenario[:3]}-{i + 1}")
                    if i >= 0:
                        results[scenario][rt.name].append(elapsed)
            if sys.stderr.isatty():
                print(f"\rround {i + 1}/{args.runs}", end="", file=sys.stderr, flush=True)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        report(results, args.runs)
        return 0
    except BenchError as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted, cleaning up", file=sys.stderr)
        return 130
    finally:
        # A second Ctrl-C must not leave containers or temp dirs behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for rt in runtimes:
            rt.cleanup()
            rt.log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
