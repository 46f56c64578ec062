#!/usr/bin/env bash
# Runs the scoring flow as PROCESSES cooperating processes of WORKERS worker threads each:
#   bash ops/run_flow.sh [--supervise] [PROCESSES] [WORKERS] [extra bytewax.run arguments...]
# Each process is `python -m bytewax.run dataflows.scoring:flow -w WORKERS -i ID -a ADDRESSES`.
#
# Stop: SIGTERM or SIGINT (Ctrl-C) is passed on to every process, which finishes its epoch, takes
# its last snapshot and exits 0 (dataflows/stopping.py); the script then exits 0.
# Exit: with PAYSCORE_TAIL=false the flow stops at the end of its topics; the script returns the
# first non-zero exit code of the processes, after stopping the others.
# --supervise (or FLOW_SUPERVISE=1): a flow that exits non-zero (MySQL unavailable for longer than
# PAYSCORE_MYSQL_OUTAGE_SECONDS, a crash) is started again after a back-off (5 s, doubling to
# 60 s); a stop signal or a clean exit ends the loop. Use it with recovery (-r DIR), so that a
# restart resumes from the last snapshot instead of reading the topics from the beginning.
# Recovery: a -r DIR that does not exist yet is created (mode 0700) with one partition per worker.
# Ports come from FLOW_BASE_PORT (default 2101).
# Metrics: process i serves Prometheus metrics at
# http://$PAYSCORE_METRICS_HOST:$((PAYSCORE_METRICS_PORT + i))/metrics (127.0.0.1 and 3030 by
# default; PAYSCORE_METRICS_PORT=0 serves none), from the flow itself (dataflows/metrics_server.py).
# FLOW_METRICS=0 and FLOW_METRICS_BASE_PORT, the earlier names, still set PAYSCORE_METRICS_PORT.
# Bytewax's own API server (0.0.0.0, and a file it writes) is never turned on.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUPERVISE=${FLOW_SUPERVISE:-0}
if [ "${1:-}" = "--supervise" ]; then SUPERVISE=1; shift; fi
PROCESSES=${1:-2}
WORKERS=${2:-2}
shift $(( $# < 2 ? $# : 2 ))
# Both counts are whole numbers from 1: "0 2" started no process and exited 0 (a supervisor saw a
# clean end), "x 2" stopped at bash's "x: unbound variable".
for pair in "PROCESSES:$PROCESSES" "WORKERS:$WORKERS"; do
  if ! [[ ${pair#*:} =~ ^[1-9][0-9]{0,3}$ ]]; then
    printf '[run_flow] refused: %s is %q; expected a whole number from 1 to 9999 (usage: bash ops/run_flow.sh [--supervise] [PROCESSES] [WORKERS] [bytewax.run arguments...])\n' "${pair%%:*}" "${pair#*:}" >&2
    exit 2
  fi
done
PY=${FLOW_PYTHON:-$ROOT/.venv/bin/python}
BASE=${FLOW_BASE_PORT:-2101}
# The first of the processes' ports, one a process, all up to 65535: "abc" stopped at bash's
# "abc: unbound variable", "65535" with 2 processes gave the address 127.0.0.1:65536, and bash's
# arithmetic ran a command in it ('PROCESSES[$(...)]'). Checked before any arithmetic uses it.
if ! [[ $BASE =~ ^[1-9][0-9]{0,4}$ ]] || ((BASE + PROCESSES - 1 > 65535)); then
  printf '[run_flow] refused: FLOW_BASE_PORT is %q; expected a port from 1 to %d (one a process, up to 65535)\n' "$BASE" $((65536 - PROCESSES)) >&2
  exit 2
fi
if [ "${FLOW_METRICS:-1}" = 0 ]; then
  export PAYSCORE_METRICS_PORT=0
elif [ -n "${FLOW_METRICS_BASE_PORT:-}" ]; then
  export PAYSCORE_METRICS_PORT=$FLOW_METRICS_BASE_PORT
fi
unset BYTEWAX_DATAFLOW_API_ENABLED BYTEWAX_DATAFLOW_API_PORT BYTEWAX_DATAFLOW_API_CACHE_PATH

log() { printf '[run_flow] %s\n' "$*" >&2; }
# " (SIGABRT)" for an exit status of 134, and so on; nothing for a plain exit status.
signal_name() { (($1 > 128)) && printf ' (SIG%s)' "$(kill -l $(($1 - 128)) 2>/dev/null || echo $(($1 - 128)))"; }

addresses=""
for ((i = 0; i < PROCESSES; i++)); do
  addresses+="${addresses:+;}127.0.0.1:$((BASE + i))"
done

# A recovery folder named with -r that does not exist yet: create it, readable by us alone.
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [ "${args[$i]}" = "-r" ] || [ "${args[$i]}" = "--recovery-directory" ]; then
    dir=${args[$((i + 1))]:-}
    if [ -n "$dir" ] && [ ! -e "$dir" ]; then
      log "creating the recovery folder $dir with $((PROCESSES * WORKERS)) partitions"
      (umask 077 && mkdir -p "$dir" && "$PY" -m bytewax.recovery "$dir" $((PROCESSES * WORKERS))) || exit 1
    fi
  fi
done

stopping=0
declare -A live=()
on_signal() {
  stopping=1
  log "stop requested: passing it on to the flow (pids ${!live[*]})"
  ((${#live[@]})) && kill -TERM "${!live[@]}" 2>/dev/null
}
trap on_signal INT TERM

run_once() {  # starts the processes, waits for all; returns the first non-zero exit code
  live=()
  for ((i = 0; i < PROCESSES; i++)); do
    if ((PROCESSES == 1)); then
      (cd "$ROOT" && exec "$PY" -m bytewax.run dataflows.scoring:flow -w "$WORKERS" "$@") &
    else
      (cd "$ROOT" && exec "$PY" -m bytewax.run dataflows.scoring:flow -w "$WORKERS" -i "$i" -a "$addresses" "$@") &
    fi
    live[$!]=1
  done
  local status=0 rc done_pid pid collected
  while ((${#live[@]})); do
    done_pid=""
    wait -n -p done_pid "${!live[@]}" 2>/dev/null
    rc=$?
    if [ -n "${done_pid:-}" ]; then
      ended "$done_pid" "$rc"
      continue
    fi
    # A trapped signal interrupted the wait, or bash no longer knows an ended process as a job
    # (it filed the status away when it started another process; wait -n then answers "no such
    # job" at once, forever): collect each listed process that has ended by its own pid.
    collected=0
    for pid in "${!live[@]}"; do
      kill -0 "$pid" 2>/dev/null && continue
      wait "$pid" 2>/dev/null
      ended "$pid" $?
      collected=1
    done
    ((collected || rc != 127)) || sleep 0.1  # ended, not yet reaped: look again shortly
  done
  return $status
}

ended() {  # a process of run_once ended with status $2: forget it; the first failure stops the rest
  unset "live[$1]"
  if (($2 != 0 && status == 0)); then
    status=$2
    log "process $1 exited with status $2$(signal_name "$2"); stopping the others"
    ((${#live[@]})) && kill -TERM "${!live[@]}" 2>/dev/null
  elif (($2 != 0)); then
    log "process $1 exited with status $2$(signal_name "$2")"
  fi
}

delay=5
while :; do
  started=$SECONDS
  run_once "$@"
  status=$?
  if ((stopping)); then log "stopped (status $status)"; exit $status; fi
  if ((status == 0 || SUPERVISE == 0)); then exit $status; fi
  ((SECONDS - started > 60)) && delay=5
  log "the flow exited with status $status; restarting in $delay s (supervised)"
  sleep "$delay" & wait $!
  ((stopping)) && exit $status
  delay=$((delay * 2 > 60 ? 60 : delay * 2))
done
