#!/usr/bin/env bash
# The whole test suite, from a fresh machine: virtualenv, services, lint, then pytest.
#   bash ops/test.sh [pytest arguments]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash ops/bootstrap.sh
bash ops/services.sh up
bash ops/tools.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest "$@"
