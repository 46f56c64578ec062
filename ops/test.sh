#!/usr/bin/env bash
# The whole test suite, from a fresh machine: virtualenv, services, test tools (Chromium,
# promtool), lint, then pytest.
#   bash ops/test.sh [pytest arguments]
# Without arguments pytest runs twice: every test but the drills that stop and restart the
# services, in 2 processes (pytest-xdist, --dist loadfile: the tests of a file run in one
# process, in their order, so tests of one file that share a fixed port or a cache never
# overlap; every test makes its own databases and topics, so two tests at a time share the
# services as two suites of different worktrees do); then the drills (marker
# restarts_services), alone, since nothing may run while they restart a service. The last line
# gives both runs' time. With arguments: one pytest run with them, as given.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash ops/bootstrap.sh
bash ops/services.sh up
bash ops/tools.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
if (($#)); then
  exec .venv/bin/pytest "$@"
fi
started=$SECONDS
status=0
.venv/bin/pytest -n 2 --dist loadfile -m "not restarts_services" || status=$?
mapfile -t drills < <(grep -l "pytest.mark.restarts_services" tests/test_*.py)
.venv/bin/pytest -m restarts_services "${drills[@]}" || { rc=$?; ((status)) || status=$rc; }
echo "[test] pytest: $((SECONDS - started)) s, both runs (exit status $status)"
exit "$status"
