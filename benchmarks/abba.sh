#!/usr/bin/env bash
# Two checkouts' flows compared on the quiet machine, in turns that even out a drift of the load:
# A B B A A B (three pairs), each `bench_throughput.py --processes P` of the flow alone.
#   bash benchmarks/abba.sh BEFORE_CHECKOUT AFTER_CHECKOUT [PROCESSES] [OUT]
# prints each run's wall and steady rate (OUT/A1 ... OUT/B3 hold the runs' figures and logs).
set -u
before=$1 after=$2 processes=${3:-2} out=${4:-reports/abba}
run() {
    local name=$1 repo=$2
    .venv/bin/python benchmarks/bench_throughput.py --processes "$processes" --skip-shadow \
        --skip-rules --skip-loop --skip-raw --skip-latency --skip-profile --skip-state \
        --flow-repo "$repo" --out "$out/$name" >"$out/$name.log" 2>&1
    echo "$name ($repo) load average $(cut -d' ' -f1 /proc/loadavg) at its end:" \
        "$(grep -h "flow-${processes}p:.*wall" "$out/$name.log")"
}
mkdir -p "$out"
run A1 "$before"
run B1 "$after"
run B2 "$after"
run A2 "$before"
run A3 "$before"
run B3 "$after"
