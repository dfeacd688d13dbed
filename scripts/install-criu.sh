#!/usr/bin/env bash
# Install a criu that works on this host for `ocirt checkpoint` / `ocirt restore`.
#
# Usage: scripts/install-criu.sh [DEST]     (root; DEST defaults to /opt/ocirt-criu)
# Prints the path of the criu to use (DEST/bin/criu) on its last line.
#
# Why: Debian 12 ships criu 3.17.1, which fails on kernels >= 6.13 while
# dumping ("vdso: Unexpected rt vDSO area bounds"); Debian 13 (trixie) ships
# criu 4.1.1, which works. Its packages need trixie's glibc, and the host's
# libc must never be upgraded for one tool, so criu and its libraries are
# unpacked (dpkg-deb -x, nothing installed) into DEST and started through
# their own dynamic loader. ocirt looks for DEST/bin/criu before `criu` on PATH.
#
# Idempotent: an install that already answers `criu --version` with 4.x is kept.
set -euo pipefail

dest=${1:-/opt/ocirt-criu}
wrapper="$dest/bin/criu"
if [[ -x "$wrapper" ]] && "$wrapper" --version 2>/dev/null | grep -q 'Version: 4'; then
  echo "$wrapper"
  exit 0
fi
[[ $(id -u) -eq 0 ]] || { echo "install-criu: run as root" >&2; exit 1; }

# The Debian mirror this host already uses (deb822 sources first, then sources.list).
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[[ -n "$mirror" ]] || mirror=$(awk '$1=="deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[[ -n "$mirror" ]] || { echo "install-criu: no Debian mirror found in /etc/apt" >&2; exit 1; }

work=$(mktemp -d /tmp/ocirt-criu.XXXXXX)
trap 'rm -rf "$work" "$dest.new"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
echo "deb $mirror trixie main" >"$work/sources.list"
# A private apt: its own lists and cache, and an empty dpkg status, so apt
# resolves criu's whole dependency closure (trixie's libc included) without
# looking at, or touching, what the host has installed.
cat >"$work/apt.conf" <<CONF
Dir::Etc::SourceList "$work/sources.list";
Dir::Etc::SourceParts "-";
Dir::State::Lists "$work/lists";
Dir::State::status "/dev/null";
Dir::Cache "$work/cache";
APT::Sandbox::User "root";
CONF
export APT_CONFIG="$work/apt.conf"
apt-get update -qq >&2
packages=$(apt-get -s install --no-install-recommends criu | awk '/^Inst /{print $2}')
[[ -n "$packages" ]] || { echo "install-criu: trixie has no criu package" >&2; exit 1; }
# shellcheck disable=SC2086 # one word per package
(cd "$work/debs" && apt-get download -qq $packages >&2)

rm -rf "$dest.new"
mkdir -p "$dest.new/bin"
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$dest.new"; done
lib="$dest/usr/lib/x86_64-linux-gnu"
# The loader is given the library path on its command line, not through
# LD_LIBRARY_PATH: programs criu itself starts (iptables, action scripts) keep
# the host's libraries.
cat >"$dest.new/bin/criu" <<WRAP
#!/bin/sh
# criu from Debian trixie with its own glibc (installed by ocirt's scripts/install-criu.sh)
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$dest/usr/sbin/criu" "\$@"
WRAP
chmod 755 "$dest.new/bin/criu"
rm -rf "$dest"
mv "$dest.new" "$dest"
"$wrapper" --version >&2
echo "$wrapper"
