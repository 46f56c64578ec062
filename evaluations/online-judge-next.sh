#!/usr/bin/env bash
# Issue 22 item 1's weeks target, the online judge's next steps (README, "The online step's
# versions judged"): the same twelve size-500 evaluations as evaluations/online-judge.sh (whose
# judge-* outputs stay the "before"), one set per change, each under its own name:
#   judge-recent   step 1: only labels of payments made since the lineage's first label are
#                  judged, and nothing is adopted before a week of them has matured
#   judge-daily    step 2: scoring switches between own and root weights at most once a day
#   judge-holdout  step 3, an attempt (commit c92bffc, reverted by the next code commit): the
#                  gate judges only on hold-out payments made after the history's warm-up
# Run from the repository, one evaluation at a time (each in evaluations/NAME-LABELS-size500-STREAM.txt
# and its folder), then the targets (evaluations/NAME-LABELS-size500-targets-k10.txt):
#   bash evaluations/online-judge-next.sh NAME [step ...]
# steps: frauds-STREAM, every-STREAM (STREAM one of evaluations/handbook-streams.json's), targets.
# --legit-sample-rate 1: every label learned, the flow's default when these runs were made (0.1
# since: README, *Issue 23's allowed output changes*), so that they print their kept outputs.
set -u
name=$1
shift
py=.venv/bin/python
ev="$py -m model_state.evaluate --streams evaluations/handbook-streams.json --size 500 --legit-sample-rate 1"
step() {
    case $1 in
    frauds-* | every-*)
        labels=${1%%-*}
        stream=${1#*-}
        evaluations/run.sh "$name-$labels-size500-$stream" $ev --only "$stream" \
            --labels "$labels" --out "evaluations/$name-$labels-size500-$stream" ;;
    targets)
        for labels in every frauds; do
            folders=$(ls -d evaluations/$name-$labels-size500-*/ 2>/dev/null | sed 's:/$::')
            [ -n "$folders" ] || continue
            # shellcheck disable=SC2086
            evaluations/run.sh "$name-$labels-size500-targets-k10" $py \
                benchmarks/evaluation_targets.py $folders --top-k 10
        done ;;
    *) echo "unknown step $1" >&2; return 2 ;;
    esac
}
if [ $# -eq 0 ]; then
    set -- frauds-drawn-1 frauds-drawn-2 frauds-drawn-3 frauds-drawn-4 frauds-drawn-5 \
        frauds-defaults every-defaults every-drawn-1 every-drawn-2 every-drawn-3 every-drawn-4 \
        every-drawn-5 targets
fi
for s in "$@"; do step "$s"; done
