#!/usr/bin/env bash
# One checkout's flow run in turns under different PAYSCORE_* settings, on the quiet machine:
# each RUN is NAME or NAME:VAR=VALUE[,VAR=VALUE...], run in the order given (give an A B B A
# order to even out a drift of the load), each `bench_throughput.py --processes P` of the flow
# alone (with `--loop` as the first argument, the hand-written loop too).
#   bash benchmarks/setting_turns.sh [--loop] PROCESSES OUT RUN [RUN ...]
# e.g. the README's negative-downsampling rows (*Throughput*):
#   bash benchmarks/setting_turns.sh 2 reports/sample-turns A1 P1:PAYSCORE_PUBLISH_EVERY_LABELS=1000000 \
#       S1:PAYSCORE_PUBLISH_EVERY_LABELS=1000000,PAYSCORE_LEGIT_SAMPLE_RATE=0.1 ...
# prints each run's settings, the load average at its end and its wall and steady rates.
set -u
loop=--skip-loop
if [ "${1:-}" = --loop ]; then
    loop=
    shift
fi
processes=$1 out=$2
shift 2
mkdir -p "$out"
for run in "$@"; do
    name=${run%%:*}
    settings=()
    if [ "$run" != "$name" ]; then
        IFS=, read -r -a settings <<<"${run#*:}"
    fi
    # shellcheck disable=SC2086
    env "${settings[@]}" .venv/bin/python benchmarks/bench_throughput.py --processes "$processes" \
        --skip-shadow --skip-rules $loop --skip-raw --skip-latency --skip-profile --skip-state \
        --out "$out/$name" >"$out/$name.log" 2>&1
    echo "$name [${settings[*]:-defaults}] load average $(cut -d' ' -f1 /proc/loadavg) at its end:"
    grep -h "flow-${processes}p:.*wall\|^loop:.*wall\|^flow(1)/loop" "$out/$name.log"
done
