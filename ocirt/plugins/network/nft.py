"""Published ports and outbound NAT for bridge mode, in nftables' ``table inet ocirt``.

Through the ``nft`` command (Debian's ``nftables``): its grammar is stable and
readable in a bug report, and only containers that publish ports or ask for
NAT pay for the call. Each container's rules are added with ``--echo
--handle``; their handles are kept in the container's state and the rules are
deleted by handle at delete. The table (with its three base chains) is made on
first use and deleted once it holds no rule. Callers hold ``ipam.locked``.

Rules, per container with address C on bridge B::

    prerouting  fib daddr type local tcp dport H dnat ip to C:P   (from outside)
    output      fib daddr type local tcp dport H dnat ip to C:P   (from the host itself)
    postrouting ip saddr C oifname != "B" masquerade               (nat=true)
"""

from __future__ import annotations

import subprocess

from ocirt.core.errors import OcirtError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NFT = "nft"
TABLE = "inet ocirt"
CHAINS = {
    "prerouting": "type nat hook prerouting priority dstnat;",
    "output": "type nat hook output priority -100;",
    "postrouting": "type nat hook postrouting priority srcnat;",
}


def _nft(script: str, *flags: str) -> str:
    try:
        done = subprocess.run(
            [NFT, *flags, "-f", "-"], input=script, capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError:
        raise OcirtError("publishing ports or NAT needs the nft command (Debian package nftables)") from None
    if done.returncode != 0:
        raise OcirtError(f"nft: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'failed'}")
    return done.stdout


def rules_for(address: str, bridge: str, ports: list[list[Any]], nat: bool) -> list[tuple[str, str]]:
    """``(chain, rule)`` pairs for one container."""
    rules = []
    for host, inside, proto in ports:
        action = f"fib daddr type local {proto} dport {host} dnat ip to {address}:{inside}"
        rules += [("prerouting", action), ("output", action)]
    if nat:
        rules.append(("postrouting", f'ip saddr {address} oifname != "{bridge}" masquerade'))
    return rules


def add(rules: list[tuple[str, str]]) -> list[list[Any]]:
    """Add the rules (and the table if missing); return ``[[chain, handle], ...]``."""
    if not rules:
        return []
    script = [f"add table {TABLE}"]
    script += [f"add chain {TABLE} {name} {{ {hook} }}" for name, hook in CHAINS.items()]
    script += [f"add rule {TABLE} {chain} {rule}" for chain, rule in rules]
    out = _nft("\n".join(script) + "\n", "--echo", "--handle")
    handles = []
    for line in out.splitlines():
        if line.startswith("add rule ") and "# handle " in line:
            chain = line.split()[4]
            handles.append([chain, int(line.rsplit("# handle ", 1)[1])])
    if len(handles) != len(rules):
        raise OcirtError(f"nft: expected {len(rules)} rule handles, got {len(handles)}")
    return handles


def delete(handles: list[list[Any]]) -> None:
    """Delete rules by handle (those already gone are skipped), then the table if empty."""
    if not handles:
        return
    listing = _listing()
    if listing is None:
        return
    present = {(chain, handle) for chain, handle in _rule_handles(listing)}
    gone = [
        f"delete rule {TABLE} {chain} handle {handle}"
        for chain, handle in handles
        if (chain, handle) in present
    ]
    if gone:
        _nft("\n".join(gone) + "\n")
    listing = _listing()
    if listing is not None and not _rule_handles(listing):
        _nft(f"delete table {TABLE}\n")


def _listing() -> str | None:
    try:
        done = subprocess.run(
            [NFT, "-a", "list", "table", *TABLE.split()],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except FileNotFoundError:
        return None
    return done.stdout if done.returncode == 0 else None


def _rule_handles(listing: str) -> list[tuple[str, int]]:
    """``(chain, handle)`` of every rule in ``nft -a list table`` output."""
    found: list[tuple[str, int]] = []
    chain = ""
    for line in listing.splitlines():
        words = line.split()
        if words[:1] == ["chain"]:
            chain = words[1]
        elif chain and "# handle " in line and words[0] not in ("type", "chain", "table"):
            found.append((chain, int(line.rsplit("# handle ", 1)[1])))
    return found
