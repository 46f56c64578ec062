#!/usr/bin/env bash
# Issue 22 item 1's weeks target, a retrain judged again once live (model_state/offline/rollback.py,
# `python -m model_state.evaluate --rollback`): the champion a retrain replaced keeps scoring the
# same payments beside it, and once those payments' final labels hold 100 frauds the retrain is
# rolled back if it ranked them worse by one standard error of the paired AP difference.
# Run from the repository (at most two evaluations at once on the shared machine):
#   bash evaluations/rollback.sh size500 [step ...]   the twelve size-500 runs of
#       evaluations/online-judge-next.sh (steps frauds-STREAM, every-STREAM, targets, pooled) with
#       --rollback -> evaluations/rollback-{every,frauds}-size500-<stream>.txt and folders,
#       ...-targets-k10.txt, ...-pooled-k10.txt; the "before" is evaluations/judge-daily-*
#   bash evaluations/rollback.sh size500-shadow [step ...]   the same with --shadow-first (the
#       alternative: an accepted retrain shadows until judged so, then goes live or not)
#       -> evaluations/shadow-first-*
#   bash evaluations/rollback.sh size500-hold [step ...]   the same with --rollback --rollback-hold
#       (model_state/offline/retrain_hold.py: a retrain due while the live retrain's verdict is
#       pending waits for it) -> evaluations/rollback-hold-*
#   bash evaluations/rollback.sh full NAME [evaluate arguments ...]   the handbook's seed 2 at full
#       scale (5,000 customers, every payment labelled; the seed on which an accepted retrain cost
#       weeks 2 and 3, evaluations/harmless-today-handbook) -> evaluations/NAME-handbook-seed2.txt:
#         bash evaluations/rollback.sh full rollback --rollback
#         bash evaluations/rollback.sh full shadow-first --shadow-first
#         bash evaluations/rollback.sh full rollback-hold --rollback --rollback-hold
#         bash evaluations/rollback.sh full rollback-off            (the same code without either)
#       (no forest fitted, as evaluations/harmless.sh: its weeks are in the .txt's weekly table)
# --legit-sample-rate 1: every label learned, the flow's default when these runs were made (0.1
# since: README, *Issue 23's allowed output changes*), so that they print their kept outputs.
set -u
py=.venv/bin/python
what=$1
shift
case $what in
size500 | size500-shadow | size500-hold)
    name=rollback option=--rollback
    [ "$what" = size500-shadow ] && name=shadow-first option=--shadow-first
    [ "$what" = size500-hold ] && name=rollback-hold option="--rollback --rollback-hold"
    ev="$py -m model_state.evaluate --streams evaluations/handbook-streams.json --size 500 --legit-sample-rate 1 $option"
    step() {
        case $1 in
        frauds-* | every-*)
            labels=${1%%-*}
            stream=${1#*-}
            evaluations/run.sh "$name-$labels-size500-$stream" $ev --only "$stream" \
                --labels "$labels" --out "evaluations/$name-$labels-size500-$stream" ;;
        targets | pooled)
            extra=()
            [ "$1" = pooled ] && extra=(--pooled)
            for labels in every frauds; do
                folders=$(ls -d evaluations/$name-$labels-size500-*/ 2>/dev/null | sed 's:/$::')
                [ -n "$folders" ] || continue
                # shellcheck disable=SC2086
                evaluations/run.sh "$name-$labels-size500-$1-k10" $py \
                    benchmarks/evaluation_targets.py $folders --top-k 10 "${extra[@]}"
            done ;;
        *) echo "unknown step $1" >&2; return 2 ;;
        esac
    }
    if [ $# -eq 0 ]; then
        set -- every-drawn-2 frauds-drawn-3 every-defaults every-drawn-1 every-drawn-3 every-drawn-4 \
            every-drawn-5 frauds-defaults frauds-drawn-1 frauds-drawn-2 frauds-drawn-4 frauds-drawn-5 \
            targets pooled
    fi
    for s in "$@"; do step "$s"; done ;;
full)
    name=$1
    shift
    exec evaluations/run.sh "$name-handbook-seed2" $py -m model_state.evaluate --stream handbook \
        --seeds 2 --no-references --cache "${CACHE:-reports/cache}" --legit-sample-rate 1 \
        --out "evaluations/$name-handbook-seed2" "$@" ;;
*) echo "unknown: $what (size500, size500-shadow, size500-hold or full)" >&2; exit 2 ;;
esac
