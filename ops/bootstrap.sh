#!/usr/bin/env bash
# Creates .venv with Python 3.11 and installs payscore with its test and evaluation extras.
# Idempotent: a second run only re-checks the install.
set -euo pipefail
# It takes no argument: one was ignored (`bash ops/bootstrap.sh --help` ran it whole).
if (($#)); then
  printf '[bootstrap] refused: %s takes no argument; got %q\nusage: bash ops/bootstrap.sh\n' "bash ops/bootstrap.sh" "${1:0:40}" >&2
  exit 2
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=${BOOTSTRAP_PYTHON:-}
if [ -z "$PY" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY=$candidate; break
    fi
  done
fi
[ -n "$PY" ] || { echo "[bootstrap] error: Python 3.11 not found (bytewax 0.21.1 is pinned to it); set BOOTSTRAP_PYTHON" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv with $PY" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.payscore-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[bootstrap] installing payscore and its dependencies into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test,eval]'
  touch "$stamp"
fi
