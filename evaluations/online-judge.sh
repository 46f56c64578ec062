#!/usr/bin/env bash
# Issue 22 item 1, the online step's versions judged (model_state/online_judge.py): every command
# whose output the README quotes, in the order they ran (each one's output in
# evaluations/NAME.txt, its report in evaluations/NAME/). Each evaluation runs the online model
# as the flow does (its versions judged) on one drawn handbook stream at 500 customers. The code
# before the judge is `--no-judge`: its figures are evaluations/drawn-*-size500-gate-root*.txt
# (the same fits from the cache; the sign-judge run below ran it beside the judge, as "online,
# versions not judged", and reproduced drawn-5's gate-root weekly AP to five decimals).
# Run from the repository: bash evaluations/online-judge.sh [step ...]
# steps: frauds-NAME, every-NAME (NAME one of evaluations/handbook-streams.json's streams),
# sign-frauds-drawn-5 (the first judge, adopting on the advantage's sign: ran at commit b321037),
# targets (the targets of every run made so far).
# --legit-sample-rate 1: every label learned, the flow's default when these runs were made (0.1
# since: README, *Issue 23's allowed output changes*), so that they print their kept outputs.
set -u
py=.venv/bin/python
ev="$py -m model_state.evaluate --streams evaluations/handbook-streams.json --size 500 --legit-sample-rate 1"
step() {
    case $1 in
    sign-frauds-drawn-5) evaluations/run.sh judge-sign-frauds-size500-drawn-5 $ev \
        --only drawn-5 --labels frauds --ablation --ablation-parts judge \
        --out evaluations/judge-sign-frauds-size500-drawn-5 ;;
    frauds-* | every-*)
        labels=${1%%-*}
        stream=${1#*-}
        evaluations/run.sh "judge-$labels-size500-$stream" $ev --only "$stream" \
            --labels "$labels" --out "evaluations/judge-$labels-size500-$stream" ;;
    targets)
        for labels in every frauds; do
            folders=$(ls -d evaluations/judge-$labels-size500-*/ 2>/dev/null | sed 's:/$::')
            [ -n "$folders" ] || continue
            # shellcheck disable=SC2086
            evaluations/run.sh "judge-$labels-size500-targets-k10" $py \
                benchmarks/evaluation_targets.py $folders --top-k 10
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
