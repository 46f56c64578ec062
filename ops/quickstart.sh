#!/usr/bin/env bash
# Quick start, end to end on a fresh Debian 12 machine with Java 17 and Maven:
# virtualenv, Kafka and MariaDB, topics, schema, a pre-trained model, the sample messages produced
# into Kafka, the scoring flow run to the end of its topics (2 processes x 2 workers), then what
# landed in MySQL. Idempotent: a second run reuses everything and changes no row.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=.venv/bin/python
bash ops/bootstrap.sh
bash ops/services.sh up
"$PY" -m storage.schema --create
"$PY" -m model_state.train --if-missing
"$PY" -m test_data.produce --file test_data/samples/payments.jsonl --topic payments --if-empty
"$PY" -m test_data.produce --file test_data/samples/labels.jsonl --topic labels --if-empty
PAYSCORE_TAIL=false bash ops/run_flow.sh 2 2
"$PY" -m storage.report
