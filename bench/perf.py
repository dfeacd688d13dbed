#!/usr/bin/env python3
"""Every performance figure of ocirt against runc, in one run, on the same bundle.

The bundle is busybox with ``ocirt spec``'s config (a terminal-less ``/bin/true``)
and a ``linux.cgroupsPath`` of its own per container, so both runtimes do the
cgroup work an engine asks for. Runs are interleaved, one figure at a time:
each round runs every runtime, the one that goes first alternates, and each
timed command follows the other runtime's same command.

Figures (medians over ``--runs`` rounds; ratios are ocirt/runc):

  run        ``RT run --bundle B ID`` of /bin/true                  target <= 0.75
  sequence   ``create`` + ``start`` + ``state`` + ``kill`` + ``delete``, as an
             engine calls them (the wait for the exit is not timed)  target <= 1.0
  state      ``RT state ID`` of a running container alone            target <= 1.0
  kill       ``RT kill ID CONT`` of a running container alone        target <= 1.0
  rss        the resident memory of a created, not started init     target < 15 MiB
  scale      N containers created and started concurrently in
             batches (as a shim would), then deleted; total time for
             10 and for ``--scale`` containers, and the per-container
             cost at each size (must not grow faster than linearly)

The ``floor`` column is the start-up of ocirt's interpreter alone (``python -I
-S -c 'import os; os._exit(0)'``, measured between the rounds of ``state``) times
the ocirt processes a figure starts, over runc's time: no ocirt written in Python
can go below it on this machine.

    .venv/bin/python bench/perf.py --runs 30
    .venv/bin/python bench/perf.py --runs 10 --scale 100 --batch 10

Needs root and runc (``scripts/setup.sh`` installs it). Containers, cgroups and
temporary files are removed at the end, also after Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CGROUP_PREFIX = "ocirt-bench"

TARGETS = {"run": 0.75, "sequence": 1.0, "state": 1.0, "kill": 1.0}
#: ocirt processes each figure starts: the interpreter's own start-up is paid this often.
PROCESSES = {"run": 1, "sequence": 5, "state": 1, "kill": 1}
RSS_LIMIT_KIB = 15 * 1024
FLOOR_CODE = "import os; os._exit(0)"


class Failed(Exception):
    pass


class Runtime:
    """A runtime binary with its own state root; remembers the containers it made."""

    def __init__(self, name: str, binary: str, root: Path, bundle: Path) -> None:
        self.name = name
        self.binary = binary
        self.root = root
        self.bundle = bundle
        self.live: set[str] = set()

    def call(self, *args: str) -> float:
        """Run one command (stdio to /dev/null); its wall time in seconds."""
        cmd = [self.binary, "--root", str(self.root), *args]
        # stderr to a file: a created container inherits it, and would hold a pipe open.
        with tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            elapsed = time.perf_counter() - t0
            if done.returncode != 0:
                err.seek(0)
                raise Failed(f"{' '.join(cmd)} exited {done.returncode}: {err.read().decode().strip()}")
        return elapsed

    def state(self, cid: str) -> dict[str, object]:
        out = subprocess.run([self.binary, "--root", str(self.root), "state", cid], capture_output=True)
        return json.loads(out.stdout) if out.returncode == 0 else {}

    def bundle_for(self, cid: str, args: list[str]) -> Path:
        """The shared rootfs with a config naming this container's own cgroup."""
        config = json.loads((self.bundle / "config.json").read_text())
        config["process"]["args"] = args
        config["linux"]["cgroupsPath"] = f"/{CGROUP_PREFIX}/{cid}"
        config["root"]["path"] = str(self.bundle / "rootfs")
        path = self.root.parent / "bundles" / cid
        path.mkdir(parents=True)
        (path / "config.json").write_text(json.dumps(config))
        return path

    def create(self, cid: str, args: list[str]) -> float:
        self.live.add(cid)
        return self.call("create", "--bundle", str(self.bundle_for(cid, args)), cid)

    def wait_stopped(self, cid: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.state(cid).get("status") != "stopped":
            if time.monotonic() > deadline:
                raise Failed(f"{self.name}: {cid} did not stop")
            time.sleep(0.002)

    def delete(self, cid: str) -> float:
        elapsed = self.call("delete", "--force", cid)
        self.live.discard(cid)
        shutil.rmtree(self.root.parent / "bundles" / cid, ignore_errors=True)
        return elapsed

    def cleanup(self) -> None:
        for cid in list(self.live):
            subprocess.run(
                [self.binary, "--root", str(self.root), "delete", "--force", cid], capture_output=True
            )
            shutil.rmtree(self.root.parent / "bundles" / cid, ignore_errors=True)


# ---------------------------------------------------------------- scenarios


def run_once(rt: Runtime, cid: str) -> float:
    rt.live.add(cid)
    elapsed = rt.call("run", "--bundle", str(rt.bundle_for(cid, ["/bin/true"])), cid)
    rt.live.discard(cid)
    shutil.rmtree(rt.root.parent / "bundles" / cid, ignore_errors=True)
    return elapsed


def sequence_once(rt: Runtime, cid: str) -> float:
    """The engine's calls around a container that sleeps until it is killed."""
    elapsed = rt.create(cid, ["sleep", "30"])
    elapsed += rt.call("start", cid)
    elapsed += rt.call("state", cid)
    elapsed += rt.call("kill", cid, "KILL")
    rt.wait_stopped(cid)
    return elapsed + rt.delete(cid)


def interpreter_start(python: str) -> float:
    """One start of ocirt's interpreter as the launcher starts it, with ``os`` (which
    every command needs) and nothing of ocirt, ended as ocirt's commands end (``os._exit``,
    no finalization): the floor under each ocirt command."""
    t0 = time.perf_counter()
    subprocess.run([python, "-I", "-S", "-c", FLOOR_CODE], check=True)
    return time.perf_counter() - t0


def waiting_init_rss_kib(rt: Runtime, cid: str) -> int:
    """VmRSS of the init of a created container (before start)."""
    rt.create(cid, ["/bin/true"])
    pid = int(str(rt.state(cid)["pid"]))
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
            break
    else:
        raise Failed(f"{rt.name}: no VmRSS for pid {pid}")
    rt.delete(cid)
    return rss


def scale(rt: Runtime, count: int, batch: int, tag: str) -> float:
    """Create and start ``count`` sleeping containers, ``batch`` at a time in parallel,
    then delete them all (also in parallel batches); total seconds."""
    ids = [f"{tag}-{rt.name}-{i}" for i in range(count)]

    def up(cid: str) -> None:
        rt.create(cid, ["sleep", "60"])
        rt.call("start", cid)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=batch) as pool:
        list(pool.map(up, ids))
        list(pool.map(rt.delete, ids))
    return time.perf_counter() - t0


# ---------------------------------------------------------------- report


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def make_bundle(path: Path, ocirt: str) -> None:
    subprocess.run(
        [str(REPO / "scripts" / "make-busybox-bundle.sh"), str(path), "--no-config"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run([ocirt, "spec"], cwd=path, check=True)
    config = json.loads((path / "config.json").read_text())
    config["process"]["terminal"] = False
    (path / "config.json").write_text(json.dumps(config))


def remove_cgroups() -> None:
    """Remove the bench's cgroups; one still in use (a container of someone else's
    under the same name) is reported and left, and the rest of the clean-up goes on."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / CGROUP_PREFIX
        if top.is_dir():
            for sub in [*sorted(top.rglob("*"), key=lambda p: -len(p.parts)), top]:
                try:
                    if sub.is_dir():
                        sub.rmdir()
                except OSError as e:
                    print(f"bench: cannot remove {sub}: {e.strerror}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="rounds for the timed scenarios (default 20)")
    parser.add_argument(
        "--scale", type=int, default=100, help="containers in the large scale run (default 100)"
    )
    parser.add_argument("--batch", type=int, default=10, help="containers handled in parallel (default 10)")
    parser.add_argument("--ocirt", default=str(REPO / ".venv" / "bin" / "ocirt"))
    parser.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("must run as root")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    tmp = Path(tempfile.mkdtemp(prefix="ocirt-perf-"))
    runtimes: list[Runtime] = []
    try:
        bundle = tmp / "bundle"
        make_bundle(bundle, args.ocirt)
        runtimes = [
            Runtime("ocirt", args.ocirt, tmp / "ocirt" / "root", bundle),
            Runtime("runc", args.runc, tmp / "runc" / "root", bundle),
        ]
        times: dict[str, dict[str, list[float]]] = {s: {r.name: [] for r in runtimes} for s in TARGETS}
        rss: dict[str, list[int]] = {r.name: [] for r in runtimes}
        python = str(Path(args.ocirt).parent / "python")
        for rt in runtimes:  # one untimed round: page cache, byte code, first cgroups
            run_once(rt, f"warm-{rt.name}")
        # Long-lived containers for `state` and `kill` alone.
        for rt in runtimes:
            rt.create(f"idle-{rt.name}", ["sleep", "3600"])
            rt.call("start", f"idle-{rt.name}")
        # One figure at a time, so that each timed command follows the other
        # runtime's same command: what runs just before warms or cools caches
        # (a Python process before runc, say), and must not favour either.
        scenarios = {
            "run": lambda rt, i: run_once(rt, f"r{i}-{rt.name}"),
            "sequence": lambda rt, i: sequence_once(rt, f"s{i}-{rt.name}"),
            "state": lambda rt, i: rt.call("state", f"idle-{rt.name}"),
            "kill": lambda rt, i: rt.call("kill", f"idle-{rt.name}", "CONT"),
        }
        floor: list[float] = []
        for figure, scenario in scenarios.items():
            for i in range(args.runs):
                for rt in runtimes if i % 2 == 0 else runtimes[::-1]:
                    times[figure][rt.name].append(scenario(rt, i))
                if figure == "state":  # in the same minutes as the shortest commands
                    floor.append(interpreter_start(python))
                if sys.stderr.isatty():
                    print(f"\r{figure} {i + 1}/{args.runs}", end="", file=sys.stderr, flush=True)
        for i in range(5):
            for rt in runtimes if i % 2 == 0 else runtimes[::-1]:
                rss[rt.name].append(waiting_init_rss_kib(rt, f"m{i}-{rt.name}"))
        for rt in runtimes:
            rt.delete(f"idle-{rt.name}")
        sizes = sorted({min(10, args.scale), args.scale})
        scaled: dict[str, dict[int, float]] = {r.name: {} for r in runtimes}
        for size in sizes:
            for rt in runtimes:
                scaled[rt.name][size] = scale(rt, size, args.batch, f"n{size}")
        if sys.stderr.isatty():
            print(file=sys.stderr)

        met = True
        print(f"{args.runs} rounds; medians in ms; ratio = ocirt/runc")
        print(f"{'figure':<10} {'ocirt':>8} {'runc':>8} {'ratio':>6} {'floor':>6}  target")
        start = median_ms(floor)
        for figure, target in TARGETS.items():
            o, r = median_ms(times[figure]["ocirt"]), median_ms(times[figure]["runc"])
            ok = o / r <= target
            met &= ok
            least = PROCESSES[figure] * start / r
            verdict = "met" if ok else "NOT met"
            print(f"{figure:<10} {o:>8.1f} {r:>8.1f} {o / r:>6.2f} {least:>6.2f}  <= {target} {verdict}")
        o_rss, r_rss = statistics.median(rss["ocirt"]), statistics.median(rss["runc"])
        rss_ok = o_rss < RSS_LIMIT_KIB
        met &= rss_ok
        verdict = "met" if rss_ok else "NOT met"
        mib = f"{o_rss / 1024:>8.1f} {r_rss / 1024:>8.1f}"
        print(f"{'rss MiB':<10} {mib} {o_rss / r_rss:>6.2f} {'':>6}  < 15 MiB {verdict}")
        print(
            f"floor: the least ratio any Python ocirt could reach, its interpreter starting\n"
            f"({python} -I -S -c '{FLOOR_CODE}': {start:.1f} ms) once per ocirt process"
        )
        print(f"\nscale (batches of {args.batch}): total s, and ms per container")
        for size in sizes:
            o, r = scaled["ocirt"][size], scaled["runc"][size]
            each = f"({o / size * 1000:6.1f} ms)  runc {r:6.2f} s ({r / size * 1000:6.1f} ms)"
            print(f"{size:>4} containers  ocirt {o:6.2f} s {each}  ratio {o / r:.2f}")
        if len(sizes) == 2:
            small, large = sizes
            growth = (scaled["ocirt"][large] / large) / (scaled["ocirt"][small] / small)
            linear = growth <= 1.25
            met &= linear
            shape = "linear or better" if linear else "grows faster than linearly"
            print(f"ocirt per-container cost from {small} to {large}: x{growth:.2f} ({shape})")
        return 0 if met else 1
    except Failed as e:
        print(f"\nbench failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for rt in runtimes:
            rt.cleanup()
        remove_cgroups()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
