#!/usr/bin/env bash
# Quick start, end to end on a fresh Debian 12 machine with Java 17 and Maven:
# the virtualenv, Kafka and MariaDB, topics, tables, a pre-trained model, the sample payments
# produced into Kafka and scored by the flow (2 processes x 2 workers, to the end of the topics),
# then the sample labels, which the flow joins with the stored payments and learns from; last,
# what landed in MySQL. Re-runnable: a second run produces nothing new and changes no row.
set -euo pipefail
# It takes no argument: one was ignored (`bash ops/quickstart.sh --help` ran it whole).
if (($#)); then
  printf '[quickstart] refused: %s takes no argument; got %q\nusage: bash ops/quickstart.sh\n' "bash ops/quickstart.sh" "${1:0:40}" >&2
  exit 2
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=.venv/bin/python
step() { printf '\n== %s\n' "$*" >&2; }
step "virtualenv"; bash ops/bootstrap.sh
step "services";   bash ops/services.sh up
step "tables";     "$PY" -m storage.schema --create
step "model";      "$PY" -m model_state.train --if-missing
step "payments";   "$PY" -m test_data.produce --file test_data/samples/payments.jsonl --if-empty --no-progress
step "scoring";    PAYSCORE_TAIL=false bash ops/run_flow.sh 2 2
# Labels arrive days after their payments in production; here they follow the scoring run.
step "labels";     "$PY" -m test_data.produce --file test_data/samples/labels.jsonl --if-empty --no-progress
# Their payments were stored by the run above: a label still without one after 10 s has none.
step "learning";   PAYSCORE_TAIL=false PAYSCORE_LABEL_WAIT_SECONDS=10 bash ops/run_flow.sh 2 2
step "what landed in MySQL"; "$PY" -m storage.report
