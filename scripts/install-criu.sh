#!/usr/bin/env bash
# Install a criu that works on this host for `ocirt checkpoint` / `ocirt restore`.
#
# Usage: scripts/install-criu.sh [DEST]     (root; DEST defaults to /opt/ocirt-criu)
# Prints the path of the criu to use (DEST/bin/criu) on its last line.
#
# Why: Debian 12 ships criu 3.17.1, which fails on kernels >= 6.13 while
# dumping ("vdso: Unexpected rt vDSO area bounds"). Debian 13 (trixie) ships
# criu 4.1.1, which works except for internet sockets on kernels >= 6.16 (it
# asks for SO_PASSCRED, which they refuse: `--tcp-established` cannot work;
# fixed in criu 4.2, checkpoint-restore/criu#2705). So criu comes from Debian
# unstable (sid, 4.2 or later) when it passes `criu check` there, else from
# trixie. Those packages need a newer glibc, and the host's libc must never be
# upgraded for one tool, so criu and its libraries are unpacked (dpkg-deb -x,
# nothing installed) into DEST and started through their own dynamic loader.
# ocirt looks for DEST/bin/criu before `criu` on PATH.
#
# Idempotent: an install that answers `criu --version` with 4.2 or later is kept.
set -euo pipefail

dest=${1:-/opt/ocirt-criu}
wrapper="$dest/bin/criu"
if [[ -x "$wrapper" ]] && "$wrapper" --version 2>/dev/null | grep -Eq 'Version: (4\.([2-9]|[1-9][0-9])|[5-9])'; then
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

# Unpack criu and its dependency closure from one Debian suite into $dest.new.
unpack() {
  local suite=$1 packages deb
  rm -rf "$work/apt" "$dest.new"
  mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/apt/debs"
  echo "deb $mirror $suite main" >"$work/apt/sources.list"
  # A private apt: its own lists and cache, and an empty dpkg status, so apt
  # resolves criu's whole dependency closure (the suite's libc included)
  # without looking at, or touching, what the host has installed.
  cat >"$work/apt/apt.conf" <<CONF
Dir::Etc::SourceList "$work/apt/sources.list";
Dir::Etc::SourceParts "-";
Dir::State::Lists "$work/apt/lists";
Dir::State::status "/dev/null";
Dir::Cache "$work/apt/cache";
APT::Sandbox::User "root";
CONF
  export APT_CONFIG="$work/apt/apt.conf"
  apt-get update -qq >&2 || return 1
  packages=$(apt-get -s install --no-install-recommends criu | awk '/^Inst /{print $2}')
  [[ -n "$packages" ]] || { echo "install-criu: $suite has no criu package" >&2; return 1; }
  # shellcheck disable=SC2086 # one word per package
  (cd "$work/apt/debs" && apt-get download -qq $packages >&2) || return 1
  mkdir -p "$dest.new/bin"
  for deb in "$work"/apt/debs/*.deb; do dpkg-deb -x "$deb" "$dest.new"; done
  unset APT_CONFIG
  local lib="$dest/usr/lib/x86_64-linux-gnu"
  # The loader is given the library path on its command line, not through
  # LD_LIBRARY_PATH: programs criu itself starts (iptables, action scripts)
  # keep the host's libraries.
  cat >"$dest.new/bin/criu" <<WRAP
#!/bin/sh
# criu from Debian $suite with its own glibc (installed by ocirt's scripts/install-criu.sh)
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$dest/usr/sbin/criu" "\$@"
WRAP
  chmod 755 "$dest.new/bin/criu"
}

for suite in sid trixie; do
  unpack "$suite" || continue
  rm -rf "$dest.old"
  [[ -e "$dest" ]] && mv "$dest" "$dest.old"
  mv "$dest.new" "$dest"
  if "$wrapper" check >/dev/null 2>&1; then
    rm -rf "$dest.old"
    "$wrapper" --version >&2
    echo "$wrapper"
    exit 0
  fi
  echo "install-criu: criu from $suite fails \`criu check\` here" >&2
  rm -rf "$dest"
  [[ -e "$dest.old" ]] && mv "$dest.old" "$dest"
done
echo "install-criu: no working criu found (tried sid, trixie)" >&2
exit 1
