#!/usr/bin/env bash
# The one test command: set up (idempotent), lint, type-check, run the tests.
# Extra arguments go to pytest, e.g. scripts/test.sh -k spec -x
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo" || exit 1

scripts/setup.sh --no-demo || { echo "test: setup failed" >&2; exit 1; }

# Run every check even after a failure so one run reports all problems.
failed=()
step() {
  echo "==> $*"
  "$@" || failed+=("$*")
}

step .venv/bin/ruff check ocirt tests bench
step .venv/bin/ruff format --check ocirt tests bench
step .venv/bin/mypy
# Any non-zero pytest status fails, including 5 ("no tests collected"):
# a suite that silently collects nothing must not pass.
step .venv/bin/python -m pytest -q -ra "$@"

if ((${#failed[@]})); then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "all checks passed"
