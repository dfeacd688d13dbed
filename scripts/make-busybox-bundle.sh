#!/usr/bin/env bash
# Build an OCI bundle whose rootfs is Debian's statically linked busybox.
# Usage: scripts/make-busybox-bundle.sh DIR [--no-config]
#   DIR/rootfs      busybox, one symlink per applet, minimal /etc
#   DIR/config.json from `ocirt spec` (process.terminal=false), unless --no-config
# Rerunning overwrites the rootfs and config.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() { echo "usage: $0 DIR [--no-config]" >&2; exit 2; }

dir="" config=1
for arg in "$@"; do
  case "$arg" in
    --no-config) config=0 ;;
    -*) usage ;;
    *) [[ -z "$dir" ]] || usage; dir="$arg" ;;
  esac
done
[[ -n "$dir" ]] || usage
if ((config)) && [[ ! -x "$repo/.venv/bin/ocirt" ]]; then
  echo "$0: $repo/.venv/bin/ocirt missing: run scripts/setup.sh first (or use --no-config)" >&2
  exit 1
fi

# Only the static build works inside an empty rootfs (no libc there); the
# dynamic `busybox` package also ships /bin/busybox, so check the package.
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq busybox-static >/dev/null
fi

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
rootfs="$dir/rootfs"
# --one-file-system: never follow into something mounted under an old rootfs.
rm -rf --one-file-system "$rootfs"
mkdir -p "$rootfs"/{bin,proc,sys,dev,tmp,etc,root,var/run}
chmod 1777 "$rootfs/tmp"
chmod 700 "$rootfs/root"

cp /bin/busybox "$rootfs/bin/busybox"
# Relative links keep the rootfs valid wherever it is mounted.
# (A plain loop, not process substitution: the test VM has no /dev/fd.)
for applet in $(/bin/busybox --list); do
  [[ "$applet" == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
done

cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
GROUP
echo busybox >"$rootfs/etc/hostname"

if ((config)); then
  # spec refuses to overwrite an existing config (as runc does).
  rm -f "$dir/config.json"
  "$repo/.venv/bin/ocirt" spec --bundle "$dir"
  # spec defaults to a terminal; scripts and CI have none.
  "$repo/.venv/bin/python" - "$dir/config.json" <<'PY'
import json, sys

path = sys.argv[1]
with open(path) as f:
    cfg = json.load(f)
cfg["process"]["terminal"] = False
with open(path, "w") as f:
    json.dump(cfg, f, indent=2)
    f.write("\n")
PY
fi
echo "bundle ready: $dir"
