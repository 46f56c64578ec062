#!/usr/bin/env bash
# Run one kept command and keep what it printed: evaluations/run.sh NAME COMMAND [ARGS...]
# writes evaluations/NAME.txt: the command, the time it started and the commit, its whole output
# (stdout and stderr, progress bars left out), the time it ended and its exit status.
set -u
name=$1
shift
out="evaluations/$name.txt"
{
    echo "\$ OMP_NUM_THREADS=1 $*"
    echo "# started $(date -u +%H:%M:%S) UTC at commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo ' (with uncommitted changes)')"
} >"$out"
OMP_NUM_THREADS=1 "$@" 2>&1 | grep -a --line-buffered -v $'\r' >>"$out"
status=${PIPESTATUS[0]}
echo "# ended $(date -u +%H:%M:%S) UTC, exit status $status" >>"$out"
exit "$status"
