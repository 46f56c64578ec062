#!/usr/bin/env bash
# Issue 22 item 1, the online step's versions judged (model_state/online_judge.py): every command
# whose output the README quotes, in the order they ran (each one's output in
# evaluations/NAME.txt, its report in evaluations/NAME/). Each evaluation runs the online model
# judged (the flow's, "online") and, in the same run, its versions not judged ("online, versions
# not judged": the code before the judge), on one drawn handbook stream at 500 customers.
# Run from the repository: bash evaluations/online-judge.sh [step ...]
# steps: frauds-NAME, every-NAME (NAME one of evaluations/handbook-streams.json's streams),
# targets (the targets of every run made so far, as judged and not judged).
set -u
py=.venv/bin/python
ev="$py -m model_state.evaluate --streams evaluations/handbook-streams.json --size 500"
judge="--ablation --ablation-parts judge"
step() {
    case $1 in
    frauds-* | every-*)
        labels=${1%%-*}
        stream=${1#*-}
        evaluations/run.sh "judge-$labels-size500-$stream" $ev --only "$stream" \
            --labels "$labels" $judge --out "evaluations/judge-$labels-size500-$stream" ;;
    targets)
        for labels in every frauds; do
            folders=$(ls -d evaluations/judge-$labels-size500-*/ 2>/dev/null | sed 's:/$::')
            [ -n "$folders" ] || continue
            # shellcheck disable=SC2086
            evaluations/run.sh "judge-$labels-size500-targets-k10" $py \
                benchmarks/evaluation_targets.py $folders --top-k 10
            # shellcheck disable=SC2086
            evaluations/run.sh "judge-$labels-size500-not-judged-targets-k10" $py \
                benchmarks/evaluation_targets.py $folders --top-k 10 \
                --online "online, versions not judged"
        done ;;
    *) echo "unknown step $1" >&2; return 2 ;;
    esac
}
if [ $# -eq 0 ]; then
    set -- frauds-drawn-5 frauds-drawn-3 frauds-defaults frauds-drawn-2 every-drawn-3 \
        frauds-drawn-1 frauds-drawn-4 every-drawn-2 every-defaults every-drawn-1 every-drawn-4 \
        every-drawn-5 targets
fi
for s in "$@"; do step "$s"; done
