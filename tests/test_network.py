"""The network plugin: netDevices, bridge mode (IPAM, ports, NAT), CNI, errors.

Real containers as root. Every address used belongs to a bridge, dummy device
or namespace a test creates: bridges ``ocirtt<n>`` on ``10.231.<n>.0/24``
(``run --network bridge`` uses ocirt's defaults, ``ocirt0`` on 10.213.0.0/24).
The devices lent through ``netDevices`` are veth ends: this kernel has no
``dummy`` driver. An autouse fixture compares the host's links, addresses, routes, nftables
tables and ocirt's lease files before and after each test; bridges a test (or
a CNI plugin) made are removed by the test's teardown first. Bridges ocirt
made itself go with their last container.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BUSYBOX, REPO, Bundle, Ocirt, unique_id, wait_for

LEASES = Path("/run/ocirt-net")
NET_CAPS = ["CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_AUDIT_WRITE"]


def _json(*cmd: str) -> Any:
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


def host_snapshot() -> dict[str, Any]:
    """What a network test may change on the host, in a comparable form."""
    links = sorted((link["ifname"], link.get("mtu")) for link in _json("ip", "-j", "link"))
    addrs = sorted(
        (a["ifname"], i["local"], i["prefixlen"]) for a in _json("ip", "-j", "addr") for i in a["addr_info"]
    )
    routes = sorted(json.dumps(r, sort_keys=True) for r in _json("ip", "-j", "route"))
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.split("\n")
    leases = sorted(p.name for p in LEASES.glob("*.json")) if LEASES.exists() else []
    return {"links": links, "addrs": addrs, "routes": routes, "tables": sorted(tables), "leases": leases}


class HostNet:
    """Links a test made on purpose, removed at teardown before the comparison."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def link(self, name: str, *spec: str) -> str:
        subprocess.run(["ip", "link", "add", name, *spec], check=True)
        self.made.append(name)
        return name

    def expect(self, name: str) -> str:
        """A link something else (a CNI plugin) will create; removed at teardown."""
        self.made.append(name)
        return name


@pytest.fixture(autouse=True)
def host() -> Iterator[HostNet]:
    """Autouse, so it is set up first and torn down last (after ``ocirt`` deleted containers)."""
    before = host_snapshot()
    net = HostNet()
    yield net
    for name in net.made:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    assert host_snapshot() == before, "the host's network was left changed"


def net_bundle(bundle: Bundle, args: list[str], **annotations: str) -> Bundle:
    bundle.config["process"]["capabilities"] = {k: NET_CAPS for k in ("bounding", "effective", "permitted")}
    bundle.config["annotations"] = {
        ("org.ocirt.network" if k == "mode" else "org.ocirt.network." + k.replace("_", "-")): v
        for k, v in annotations.items()
    }
    return bundle.write(args=args)


def bridge(n: int, **more: str) -> dict[str, str]:
    return {"mode": "bridge", "bridge": f"ocirtt{n}", "subnet": f"10.231.{n}.0/24", **more}


def saved(ocirt: Ocirt, cid: str) -> dict[str, Any]:
    """The network plugin's record in a container's state."""
    data = json.loads((ocirt.root / cid / "state.json").read_text())
    return data["plugin_data"]["network"]


def run(ocirt: Ocirt, bundle: Bundle, cid: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return ocirt("run", "--bundle", str(bundle.path), *flags, cid, timeout=60)


# --------------------------------------------------------------------- bridge


def test_two_bridge_containers_reach_each_other(ocirt: Ocirt, bundle: Bundle, tmp_path: Path) -> None:
    net_bundle(bundle, ["sleep", "60"], **bridge(11))
    first = unique_id("br")
    assert ocirt.detached("run", "-d", "--bundle", str(bundle.path), first).returncode == 0
    address = saved(ocirt, first)["bridge"]["address"]
    assert address == "10.231.11.2"
    subprocess.run(
        [BUSYBOX, "ping", "-c1", "-W2", address], check=True, capture_output=True
    )  # host -> container
    other = tmp_path / "other"
    other.mkdir()
    os.symlink(bundle.rootfs, other / "rootfs")
    config = dict(bundle.config, process=dict(bundle.config["process"]))
    config["root"] = {"path": str(other / "rootfs")}
    config["process"]["args"] = ["sh", "-c", f"ping -c1 -W2 {address} && ping -c1 -W2 10.231.11.1"]
    (other / "config.json").write_text(json.dumps(config))
    result = ocirt("run", "--bundle", str(other), unique_id("br"), timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "10.231.11.3" not in LEASES.joinpath("ocirtt11.json").read_text()  # released at delete
    ocirt("delete", "--force", first, check=True)
    assert not Path("/sys/class/net/ocirtt11").exists(), "ocirt's bridge outlived its last container"


def test_published_port_reaches_a_listener(ocirt: Ocirt, bundle: Bundle) -> None:
    net_bundle(bundle, ["sh", "-c", "echo hello-from-nc | nc -l -p 80"], **bridge(12, ports="18080:80/tcp"))
    cid = unique_id("port")
    assert ocirt.detached("run", "-d", "--bundle", str(bundle.path), cid).returncode == 0
    assert (
        "table inet ocirt" in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    )
    received = b""

    def connect() -> bool:
        nonlocal received
        try:
            with socket.create_connection(("10.231.12.1", 18080), timeout=2) as s:
                received = s.recv(100)
        except OSError:
            return False
        return bool(received)

    assert wait_for(connect, 10), "no answer on the published port"
    assert received.strip() == b"hello-from-nc"
    ocirt("delete", "--force", cid, check=True)  # the rules and the (empty) table go


def test_nat_rule_added_and_removed(ocirt: Ocirt, bundle: Bundle) -> None:
    net_bundle(bundle, ["sleep", "60"], **bridge(13, nat="true"))
    cid = unique_id("nat")
    assert ocirt.detached("run", "-d", "--bundle", str(bundle.path), cid).returncode == 0
    table = subprocess.run(["nft", "list", "table", "inet", "ocirt"], capture_output=True, text=True).stdout
    assert 'ip saddr 10.231.13.2 oifname != "ocirtt13" masquerade' in table
    ocirt("delete", "--force", cid, check=True)


def test_concurrent_creates_get_distinct_addresses(ocirt: Ocirt, bundle: Bundle) -> None:
    net_bundle(bundle, ["sleep", "60"], **bridge(14))
    ids = [unique_id("cc") for _ in range(6)]
    results: dict[str, int] = {}

    def create(cid: str) -> None:
        results[cid] = ocirt.detached("run", "-d", "--bundle", str(bundle.path), cid).returncode

    threads = [threading.Thread(target=create, args=(cid,)) for cid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == dict.fromkeys(ids, 0)
    addresses = [saved(ocirt, cid)["bridge"]["address"] for cid in ids]
    assert sorted(addresses) == [f"10.231.14.{i}" for i in range(2, 8)]
    leases = json.loads(LEASES.joinpath("ocirtt14.json").read_text())["leases"]
    assert sorted(leases) == sorted(addresses)


def test_run_network_bridge_flag(ocirt: Ocirt, bundle: Bundle) -> None:
    """``run --network bridge`` with ocirt's defaults: ocirt0 on 10.213.0.0/24."""
    if Path("/sys/class/net/ocirt0").exists():
        pytest.skip("ocirt0 exists already on this host")
    net_bundle(bundle, ["sh", "-c", "ip -4 addr show eth0 && ping -c1 -W2 10.213.0.1"])
    result = run(ocirt, bundle, unique_id("flag"), "--network", "bridge")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "inet 10.213.0.2/24" in result.stdout


def test_init_killed_abruptly_still_cleans_up(ocirt: Ocirt, bundle: Bundle, host: HostNet) -> None:
    """SIGKILL to the init: the pinned namespace still lets delete bring the device back."""
    dummy = host.link("ocdt16", "type", "veth", "peer", "name", "ocdt16p")
    subprocess.run(["ip", "addr", "add", "10.231.16.1/24", "dev", dummy], check=True)
    net_bundle(bundle, ["sleep", "60"], **bridge(15))
    bundle.config["linux"]["netDevices"] = {dummy: {"name": "net1"}}
    bundle.write()
    cid = unique_id("kill")
    assert ocirt.detached("run", "-d", "--bundle", str(bundle.path), cid).returncode == 0
    os.kill(ocirt.state(cid)["pid"], 9)
    assert wait_for(lambda: ocirt.state(cid)["status"] == "stopped")
    ocirt("delete", cid, check=True)
    shown = subprocess.run(["ip", "-4", "addr", "show", dummy], capture_output=True, text=True).stdout
    assert "10.231.16.1/24" in shown


# ----------------------------------------------------------------- netDevices


def test_net_device_moved_in_renamed_and_back(ocirt: Ocirt, bundle: Bundle, host: HostNet) -> None:
    dummy = host.link("ocdt20", "mtu", "1400", "type", "veth", "peer", "name", "ocdt20p")
    subprocess.run(["ip", "addr", "add", "10.231.20.1/24", "dev", dummy], check=True)
    subprocess.run(["ip", "link", "set", dummy, "up"], check=True)
    bundle.config["linux"]["netDevices"] = {dummy: {"name": "net1"}}
    bundle.write(args=["ip", "addr", "show", "net1"])
    result = run(ocirt, bundle, unique_id("dev"))
    assert result.returncode == 0, result.stderr
    assert "mtu 1400" in result.stdout
    assert "inet 10.231.20.1/24" in result.stdout
    assert ",UP" in result.stdout
    link = _json("ip", "-j", "addr", "show", dummy)[0]
    assert link["mtu"] == 1400
    assert [(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"] == [
        ("10.231.20.1", 24)
    ]


# ------------------------------------------------------------------------ CNI


@pytest.fixture
def cni_dir(tmp_path: Path, host: HostNet) -> Path:
    directory = tmp_path / "net.d"
    directory.mkdir()
    conflist = {
        "cniVersion": "1.0.0",
        "name": "ocirt-test",
        "plugins": [
            {
                "type": "bridge",
                "bridge": host.expect("ocirtc30"),
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "subnet": "10.231.30.0/24",
                    "dataDir": str(tmp_path / "host-local"),
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }
        ],
    }
    (directory / "10-test.conflist").write_text(json.dumps(conflist))
    return directory


def test_cni_bridge_host_local(ocirt: Ocirt, bundle: Bundle, cni_dir: Path, tmp_path: Path) -> None:
    net_bundle(bundle, ["sleep", "60"], mode="cni:ocirt-test", cni_dir=str(cni_dir))
    cid = unique_id("cni")
    result = ocirt.detached("run", "-d", "--bundle", str(bundle.path), cid)
    assert result.returncode == 0, result.stderr
    record = saved(ocirt, cid)["cni"]
    ips = [ip["address"] for ip in record["result"]["ips"]]
    assert ips == ["10.231.30.2/24"]
    pid = str(ocirt.state(cid)["pid"])
    inside = subprocess.run(
        ["nsenter", "-t", pid, "-n", "ip", "-4", "addr", "show", "eth0"], capture_output=True, text=True
    )
    assert "10.231.30.2/24" in inside.stdout
    subprocess.run([BUSYBOX, "ping", "-c1", "-W2", "10.231.30.2"], check=True, capture_output=True)
    leases = tmp_path / "host-local" / "ocirt-test"
    assert (leases / "10.231.30.2").exists()
    # CHECK, through the plugin's ocirt_command (no CLI command: a test-only path).
    check = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-c", CHECK, str(ocirt.root), cid],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    ocirt("delete", "--force", cid, check=True)
    assert not (leases / "10.231.30.2").exists(), "DEL did not release host-local's lease"


CHECK = """
import sys
from ocirt.cli import commands
from ocirt.cli.globals import Globals
sys.exit(commands._command(Globals(root=sys.argv[1]), sys.argv[2], "network-check", {}))
"""


# ------------------------------------------------------------------ bad input


BAD = {
    "unknown mode": ({"mode": "overlay"}, "annotations.org.ocirt.network: unknown network mode 'overlay'"),
    "bad subnet": (bridge(40, subnet="10.231.40.7/24"), "annotations.org.ocirt.network.subnet"),
    "port syntax": (bridge(41, ports="80-81/tcp"), "annotations.org.ocirt.network.ports"),
    "missing conflist": ({"mode": "cni:nope", "cni_dir": "/nonexistent"}, "no CNI network 'nope'"),
    "unknown option": ({"mode": "bridge", "colour": "red"}, "annotations.org.ocirt.network.colour"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_leaves_nothing(ocirt: Ocirt, bundle: Bundle, case: str) -> None:
    annotations, message = BAD[case]
    net_bundle(bundle, ["true"], **annotations)
    result = run(ocirt, bundle, unique_id("bad"))
    assert result.returncode != 0
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert ocirt.ids() == []


def test_missing_net_device(ocirt: Ocirt, bundle: Bundle) -> None:
    bundle.config["linux"]["netDevices"] = {"ocdt-missing": {}}
    bundle.write()
    result = run(ocirt, bundle, unique_id("bad"))
    assert result.returncode != 0
    assert "linux.netDevices.ocdt-missing: no network interface" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_network_flag(ocirt: Ocirt, bundle: Bundle) -> None:
    result = run(ocirt, bundle, unique_id("bad"), "--network", "weird")
    assert result.returncode != 0
    assert "run --network: unknown network mode 'weird'" in result.stderr


def test_failure_after_setup_rolls_back(ocirt: Ocirt, bundle: Bundle) -> None:
    """A create failing after the bridge was wired (missing executable) leaves nothing."""
    net_bundle(bundle, ["/no/such/program"], **bridge(42, ports="18081:80/tcp"))
    result = run(ocirt, bundle, unique_id("rb"))
    assert result.returncode != 0
    assert "no such file or directory" in result.stderr
    assert not Path("/sys/class/net/ocirtt42").exists()


def test_plain_container_gets_nothing(ocirt: Ocirt, bundle: Bundle) -> None:
    """No annotation, no flag: only lo, and no state of ours (engines bring their own networks)."""
    bundle.write(args=["ip", "-o", "link"])
    cid = unique_id("plain")
    result = ocirt.detached("create", "--bundle", str(bundle.path), cid)
    assert result.returncode == 0, result.stderr
    data = json.loads((ocirt.root / cid / "state.json").read_text())
    assert "network" not in data["plugin_data"]
    assert ["ocirt_cleanup", "network"] in data["skip"]
    ocirt("delete", "--force", cid, check=True)
