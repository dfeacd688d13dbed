#!/usr/bin/env bash
# Prepare a machine to develop and test ocirt: system packages, .venv with
# ocirt installed editable, and the busybox demo bundle (run unless --no-demo).
# Usage: scripts/setup.sh [--no-demo]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

demo=1
for arg in "$@"; do
  case "$arg" in
    --no-demo) demo=0 ;;
    *) echo "usage: $0 [--no-demo]" >&2; exit 2 ;;
  esac
done

# apt-get is slow even when there is nothing to do: only call it for
# packages that are not installed yet, so reruns (every test run) stay fast.
apt_install() {
  local pkg missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
}

# busybox-static: demo/test rootfs; runc: reference runtime for benchmarks;
# libseccomp2: seccomp filters; iproute2, util-linux: ip, nsenter, unshare...;
# qemu-system-x86: the pure cgroup v2 guest tests/vm/v2vm.py boots for tests/test_v2vm.py;
# nftables, containernetworking-plugins: the network plugin's ports/NAT and CNI mode;
# strace: tests that check which files a command reads
apt_install busybox-static runc libseccomp2 iproute2 util-linux qemu-system-x86 \
  nftables containernetworking-plugins strace

# The engines tests/engines drives ocirt with (their daemons are started by the
# tests, never by the packages): without systemd, a package's postinst would
# start its service through invoke-rc.d, so deny that while installing.
engines=(podman conmon catatonit uidmap containerd docker.io)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
for pkg in "${engines[@]}"; do
  installed "$pkg" && continue
  policy=/usr/sbin/policy-rc.d
  if [[ -e "$policy" ]]; then
    apt_install "${engines[@]}"
  else
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
    apt_install "${engines[@]}"
    rm -f "$policy"
    trap - EXIT
  fi
  break
done

# criu for `ocirt checkpoint`/`restore`: Debian 12's criu fails on recent
# kernels, so a newer one is unpacked privately into /opt/ocirt-criu (nothing
# of the host's is upgraded). Idempotent: a working install is kept.
scripts/install-criu.sh >/dev/null

# The venv is built from Debian's own Python 3.11 (python3-venv): it is built
# with PGO and LTO and starts in about 9 ms against 11-15 ms for a pyenv build,
# and every ocirt command is a new interpreter. `python3` on PATH may be a pyenv
# shim (a slow shell script): never that.
usable() { [[ -x "$1" ]] && "$1" -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null; }
find_python() {
  local cand
  for cand in /usr/bin/python3.11 /usr/bin/python3 /root/.pyenv/versions/3.11.7/bin/python3; do
    if usable "$cand"; then
      echo "$cand"
      return 0
    fi
  done
  return 1
}
usable /usr/bin/python3.11 || apt_install python3 python3-venv
python="$(find_python)" || { echo "setup: no Python >= 3.11 with venv" >&2; exit 1; }

# (Re)create .venv when it is missing, broken or built from another Python.
home="$(sed -n 's/^home = //p' .venv/pyvenv.cfg 2>/dev/null || true)"
if ! .venv/bin/python -c '' 2>/dev/null || [[ "$home" != "$(dirname "$python")" ]]; then
  echo "setup: creating .venv with $python"
  rm -rf .venv
  "$python" -m venv .venv
fi

# The install is editable, so source edits need no reinstall; only a changed
# pyproject.toml (dependencies, entry points) or launcher (bin/ocirt, copied at
# install) does. Skip pip otherwise.
stamp=.venv/.ocirt-installed
want="$(cat pyproject.toml bin/ocirt | sha256sum | cut -d' ' -f1)"
if [[ ! -x .venv/bin/ocirt || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "setup: installing ocirt[dev] into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$want" >"$stamp"
fi

# The installed launcher starts with `#!/bin/sh`, which then starts the venv's
# Python on it (bin/ocirt). Naming that Python on the #! line instead saves an
# exec of sh on every command; a path with blanks cannot be on a #! line.
launcher_python="$repo/.venv/bin/python"
if [[ "$launcher_python" != *[[:space:]]* ]]; then
  sed -i "1s|.*|#!$launcher_python -IS|" .venv/bin/ocirt
fi

# setuptools (put in every venv) installs a .pth hook that every interpreter
# start runs, ocirt's commands included; nothing here needs it (the build uses
# hatchling in an isolated environment).
if compgen -G ".venv/lib/python3*/site-packages/_distutils_hack" >/dev/null; then
  .venv/bin/pip uninstall -q -y setuptools >/dev/null 2>&1 || true
fi

# Byte-compile ocirt: every command is a new interpreter, and where
# PYTHONDONTWRITEBYTECODE is set nothing would ever be cached.
.venv/bin/python -m compileall -q ocirt >/dev/null
# ...and into one file the launcher loads at once (ocirt/codecache.py): about
# 1.5 ms of every `run`. Modules edited after this are imported the usual way.
.venv/bin/python -m ocirt.codecache >/dev/null

((demo)) || exit 0

scripts/make-busybox-bundle.sh demo/busybox
.venv/bin/python - demo/busybox/config.json <<'PY'
import json, sys

path = sys.argv[1]
with open(path) as f:
    cfg = json.load(f)
cfg["process"]["args"] = [
    "sh", "-c", "echo hello from $(hostname), pid $$ in a new pid namespace"
]
cfg["process"]["terminal"] = False
cfg["hostname"] = "ocirt-demo"
with open(path, "w") as f:
    json.dump(cfg, f, indent=2)
    f.write("\n")
PY

# A demo interrupted earlier may have left its container behind.
.venv/bin/ocirt --root "$repo/demo/state" delete --force ocirt-demo >/dev/null 2>&1 || true
.venv/bin/ocirt --root "$repo/demo/state" run --bundle demo/busybox ocirt-demo
