#!/usr/bin/env bash
# Issue 23's harmlessness check: each allowed output change evaluated at full scale on the
# handbook's seeds 1 to 3 and the generator's seed 101 (every payment labelled, the issue's
# streams), beside today's; benchmarks/harmlessness.py compares them (online AP at most 0.005
# lower, card precision@100 not lower). Each run's output in evaluations/harmless-NAME-STREAM.txt,
# its report in evaluations/harmless-NAME-STREAM/. Run from the checkout being evaluated:
#   bash evaluations/harmless.sh NAME STREAM [evaluate arguments ...]     STREAM: handbook | generator
#   bash evaluations/harmless.sh compare BEFORE AFTER [AFTER ...]          (names, both streams)
# The runs below were made when every label was learned by default: add --legit-sample-rate 1
# to reproduce "today" and "forest15" (0.1 is the default since, as the "sample10" runs):
#   harmless.sh sample10 generator --legit-sample-rate 0.1; harmless.sh sample10 handbook ...
# As they ran (CACHE=/work/main/reports/cache: one replay cache for every checkout, so each
# stream was replayed once), the README's table (*Model size*, issue 23's harmlessness check):
#   at 948a610 (today's forest, 500 x 31):     harmless.sh today handbook; harmless.sh today generator
#   the same with "max_leaf_nodes": 15 added to model_state/boosted.py's FOREST (500 x 15; a
#   one-line change, not merged):              harmless.sh forest15 generator
#   at 948a610, legitimate labels sampled:     harmless.sh sample50 generator --legit-sample-rate 0.5
#                                              harmless.sh sample50 handbook --legit-sample-rate 0.5
#   bash evaluations/harmless.sh compare today forest15 sample50   (forest15 for the generator only:
#   it failed there, and its handbook runs were stopped)
set -u
py=.venv/bin/python
cache=${CACHE:-reports/cache}
if [ "${1:-}" = compare ]; then
    shift
    before=$1
    shift
    for stream in handbook generator; do
        afters=()
        for name in "$@"; do
            if [ -d "evaluations/harmless-$name-$stream" ]; then
                afters+=("evaluations/harmless-$name-$stream")
            else
                echo "($stream: no evaluations/harmless-$name-$stream, not run)"
            fi
        done
        $py benchmarks/harmlessness.py "evaluations/harmless-$before-$stream" "${afters[@]}"
    done
    exit
fi
name=$1 stream=$2
shift 2
case $stream in
handbook) seeds="1 2 3" ;;
generator) seeds="101" ;;
*) echo "unknown stream $stream (handbook or generator)" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086
exec evaluations/run.sh "harmless-$name-$stream" $py -m model_state.evaluate --stream "$stream" \
    --seeds $seeds --no-references --cache "$cache" --out "evaluations/harmless-$name-$stream" "$@"
