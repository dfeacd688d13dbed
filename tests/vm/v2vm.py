"""Run one command on a pure cgroup v2 kernel, in a throw-away QEMU guest.

The development host mounts cgroups hybrid (v1 controllers, an empty cgroup2),
so the v2 driver's limits, freezer and eBPF device filter can only be checked
for real on another kernel. This harness boots Debian's stock kernel (its .deb
is downloaded and unpacked, never installed) under TCG with a busybox
initramfs; the guest sees the host's ``/`` read-only over 9p under a tmpfs
overlay, mounts cgroup2 alone at ``/sys/fs/cgroup`` (no controller enabled:
the driver must do that itself), runs the command as root in the same
directory with ``OCIRT_TEST_V2VM=1`` set, and powers off.

Everything built is cached under ``$OCIRT_V2VM_CACHE`` (default
``/var/tmp/ocirt-v2vm``). Usage: ``.venv/bin/python tests/vm/v2vm.py CMD...``.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("OCIRT_V2VM_CACHE", "/var/tmp/ocirt-v2vm"))
QEMU = "qemu-system-x86_64"
BUSYBOX = "/bin/busybox"
#: Modules the guest loads (with their dependencies, in this order; a name with no
#: module file is taken as built in). First what it needs to see the host (virtio
#: transport, 9p, overlay); then what criu needs to checkpoint a container there:
#: the socket diagnostics (packet's module is af_packet_diag), tun, veth, macvlan,
#: nftables for ``criu check``; xt_mark for the network lock's iptables(-nft) rule;
#: and nf_conntrack_netlink: criu dumps a network namespace's conntrack table through
#: ctnetlink, and once nf_tables has loaded nfnetlink without it the kernel answers
#: EINVAL and every dump fails ("-22 reported by netlink", "Dumping FAILED").
#: crc32c_generic comes before nf_tables, whose libcrc32c needs a crc32c.
MODULES = (
    "virtio_pci", "9pnet_virtio", "9p", "overlay",
    "unix_diag", "inet_diag", "tcp_diag", "udp_diag", "raw_diag", "netlink_diag", "af_packet_diag",
    "tun", "veth", "macvlan", "crc32c_generic", "nf_tables", "nft_compat", "xt_mark", "nf_conntrack_netlink",
)  # fmt: skip
#: Set in the guest so tests know they run on the v2 kernel.
GUEST_ENV = "OCIRT_TEST_V2VM"

INIT = r"""#!/bin/busybox sh
# In RAM: load the modules, build the root from the host's / and switch to it.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
run=; cwd=/
for a in $(cat /proc/cmdline); do
  case "$a" in ocirt.run=*) run=${a#*=};; ocirt.cwd=*) cwd=${a#*=};; esac
done
fail() { echo "ocirt-vm: $*" >/dev/console; poweroff -f; }
while read m; do insmod /mods/$m || fail "insmod $m"; done </mods/order
R=/newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose host /lower || fail "9p root"
mount -t tmpfs -o mode=755 tmpfs /upper && mkdir /upper/u /upper/w
mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w overlay $R || fail overlay
mount -t proc proc $R/proc; mount -t sysfs sysfs $R/sys; mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o ptmxmode=666 devpts $R/dev/pts; mount -t tmpfs tmpfs $R/dev/shm
# Fresh /tmp and /run, but a working directory under them (a checkout in /tmp)
# stays visible: it is set aside, then moved back on top.
case "$cwd" in /tmp/*|/run/*) mkdir -p /keep && mount --bind "$R$cwd" /keep || fail "keep $cwd";; esac
mount -t tmpfs -o mode=1777 tmpfs $R/tmp; mount -t tmpfs -o mode=755 tmpfs $R/run
case "$cwd" in /tmp/*|/run/*) mkdir -p "$R$cwd" && mount --move /keep "$R$cwd" || fail "cwd $cwd";; esac
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup || fail cgroup2
mkdir -p $R$run; mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 run $R$run || fail "run share"
hostname ocirt-v2vm; ip link set lo up
cat >$R/.ocirt-vm-stage2 <<EOF
#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 $GUEST_ENV=1
cd "$cwd" || cd /
sh $run/cmd </dev/null >$run/out 2>&1
echo \$? >$run/rc
sync
/bin/busybox poweroff -f
EOF
chmod 755 $R/.ocirt-vm-stage2
umount /proc /sys /dev
exec switch_root $R /.ocirt-vm-stage2
""".replace("$GUEST_ENV", GUEST_ENV)


class Unavailable(Exception):
    """The guest cannot run here (no qemu, no kernel package): a reason to skip."""


@dataclass
class Result:
    returncode: int
    output: str
    seconds: float


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


def _kernel_package() -> str:
    """The versioned package Debian's ``linux-image-amd64`` points at."""
    for attempt in range(2):
        out = _run(["apt-cache", "depends", "linux-image-amd64"]).stdout
        for line in out.splitlines():
            name = line.split(":", 1)[-1].strip()
            if "Depends:" in line and name.startswith("linux-image-") and name[12:13].isdigit():
                return name
        if attempt == 0:
            _run(["apt-get", "update", "-qq"])
    raise Unavailable("apt knows no linux-image-amd64 kernel")


def _modinfo_depends(path: Path) -> list[str]:
    """A module's ``depends=`` list, read from its .modinfo strings (no kmod needed)."""
    for chunk in path.read_bytes().split(b"\0"):
        if chunk.startswith(b"depends="):
            return [d for d in chunk[8:].decode().split(",") if d]
    return []


def _module_order(moddir: Path) -> list[Path]:
    """The module files for MODULES, dependencies first."""
    byname = {p.name.split(".ko")[0].replace("-", "_"): p for p in moddir.rglob("*.ko")}
    order: list[Path] = []

    def add(name: str) -> None:
        path = byname.get(name.replace("-", "_"))
        if path is None:
            return  # built into the kernel
        if path in order:
            return
        for dep in _modinfo_depends(path):
            add(dep)
        order.append(path)

    for name in MODULES:
        add(name)
    return order


def _cpio(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of (name, mode, data) entries: the initramfs format."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        raw = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + raw
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def build(cache: Path = CACHE) -> Path:
    """Download and prepare kernel + initramfs once; returns the cache directory."""
    # The stamp names the init script and modules it was built with: a change rebuilds.
    stamp = hashlib.sha256((INIT + " ".join(MODULES)).encode()).hexdigest()[:16]
    if (cache / "ready").exists() and stamp in (cache / "ready").read_text():
        return cache
    if shutil.which(QEMU) is None:
        raise Unavailable(f"{QEMU} is not installed (scripts/setup.sh installs qemu-system-x86)")
    if not os.path.exists(BUSYBOX):
        raise Unavailable(f"{BUSYBOX} is missing (busybox-static)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        work = Path(tmp)
        package = _kernel_package()
        got = _run(["apt-get", "download", "-qq", package], cwd=work)
        debs = list(work.glob(f"{package}_*.deb"))
        if not debs:
            raise Unavailable(f"cannot download {package}: {got.stderr.strip()[-300:]}")
        tree = work / "k"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tree)], check=True)
        version = package.removeprefix("linux-image-")
        vmlinuz = (tree / "boot" / f"vmlinuz-{version}").read_bytes()
        # The uncompressed ELF boots through its PVH entry: no real mode, no
        # in-guest decompression (seconds under TCG).
        start = vmlinuz.find(b"\xfd7zXZ\x00")
        kernel = lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(vmlinuz[start:]) if start >= 0 else vmlinuz
        modules = _module_order(tree / "lib" / "modules" / version)
        entries: list[tuple[str, int, bytes]] = [
            (d, stat.S_IFDIR | 0o755, b"") for d in ("bin", "proc", "sys", "dev", "lower", "upper", "newroot")
        ]
        entries.append(("mods", stat.S_IFDIR | 0o755, b""))
        names = [f"{i:02d}-{p.name}" for i, p in enumerate(modules)]
        entries += [
            (f"mods/{n}", stat.S_IFREG | 0o644, p.read_bytes()) for n, p in zip(names, modules, strict=True)
        ]
        entries.append(("mods/order", stat.S_IFREG | 0o644, "".join(n + "\n" for n in names).encode()))
        entries.append(("bin/busybox", stat.S_IFREG | 0o755, Path(BUSYBOX).read_bytes()))
        entries.append(("init", stat.S_IFREG | 0o755, INIT.encode()))
        (cache / "kernel").write_bytes(kernel)
        (cache / "initrd").write_bytes(_cpio(entries))
        (cache / "ready").write_text(f"{version} {stamp}\n")
    return cache


def run(command: str, timeout: float = 300, memory_mb: int = 1024, cpus: int = 2, cwd: str = "") -> Result:
    """Boot, run ``command`` (a shell line) in ``cwd`` (default: the current directory), power off."""
    cache = build()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ocirt-v2vm-") as rundir:
        run_dir = Path(rundir)
        (run_dir / "cmd").write_text(command + "\n")
        cwd = cwd or os.getcwd()
        qemu = [
            QEMU, "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", str(cpus), "-m", str(memory_mb),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-nic", "none",
            "-kernel", str(cache / "kernel"), "-initrd", str(cache / "initrd"),
            "-serial", f"file:{run_dir / 'console'}",
            "-virtfs", "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={run_dir},mount_tag=run,security_model=none",
            "-append", f"console=ttyS0 quiet panic=-1 mitigations=off ocirt.run={run_dir} ocirt.cwd={cwd}",
        ]  # fmt: skip
        try:
            subprocess.run(qemu, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return Result(124, _read(run_dir / "out") + "\n[guest timed out]", time.monotonic() - began)
        output = _read(run_dir / "out")
        rc = _read(run_dir / "rc").strip()
        if not rc:
            console = _read(run_dir / "console")[-3000:]
            return Result(
                125, f"{output}\n[guest gave no status; console:]\n{console}", time.monotonic() - began
            )
        return Result(int(rc), output, time.monotonic() - began)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        result = run(" ".join(argv))
    except Unavailable as e:
        print(f"v2vm: unavailable: {e}", file=sys.stderr)
        return 125
    sys.stdout.write(result.output)
    print(f"[v2vm: status {result.returncode} in {result.seconds:.1f}s]", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
