#!/usr/bin/env bash
# Runs the scoring flow as PROCESSES cooperating processes of WORKERS worker threads each:
#   bash ops/run_flow.sh [PROCESSES] [WORKERS] [extra bytewax.run arguments...]
# Each process is `python -m bytewax.run dataflows.scoring:flow -w WORKERS -i ID -a ADDRESSES`.
# With PAYSCORE_TAIL=false the flow stops at the end of its topics and this script returns the
# first non-zero exit code of the processes. Ports come from FLOW_BASE_PORT (default 2101).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROCESSES=${1:-2}
WORKERS=${2:-2}
shift $(( $# < 2 ? $# : 2 ))
PY=${FLOW_PYTHON:-$ROOT/.venv/bin/python}
BASE=${FLOW_BASE_PORT:-2101}
addresses=""
for ((i = 0; i < PROCESSES; i++)); do
  addresses+="${addresses:+;}127.0.0.1:$((BASE + i))"
done
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
for ((i = 0; i < PROCESSES; i++)); do
  if ((PROCESSES == 1)); then
    (cd "$ROOT" && exec "$PY" -m bytewax.run dataflows.scoring:flow -w "$WORKERS" "$@") &
  else
    (cd "$ROOT" && exec "$PY" -m bytewax.run dataflows.scoring:flow -w "$WORKERS" -i "$i" -a "$addresses" "$@") &
  fi
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || { rc=$?; ((status == 0)) && status=$rc; kill "${pids[@]}" 2>/dev/null || true; }
done
exit $status
